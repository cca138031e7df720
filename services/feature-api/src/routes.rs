//! The router: versioned REST routes with their OpenAPI document, health, metrics and the
//! dashboard, wrapped in request ids, tracing, RED metrics, the request timeout and CORS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware;
use axum::response::Redirect;
use axum::routing::get;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{self, Access};
use crate::dashboard;
use crate::errors::ApiError;
use crate::handlers;
use crate::metrics::{self, Metrics};
use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Token, concurrency limit and request timeout of every route.
    pub access: Access,
    /// The dashboard's latest snapshot ([`dashboard::spawn_poller`]).
    pub snapshots: dashboard::Snapshots,
    /// Turns true on shutdown: event streams end so the server can drain.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TrendStream feature API",
        description = "Live user features, sessions, fraud alerts and revenue series computed by the TrendStream processors, read from the Redis feature store."
    ),
    tags(
        (name = "users", description = "Per-user live features and sessions"),
        (name = "alerts", description = "Fraud alerts"),
        (name = "revenue", description = "Revenue per one-minute window"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

/// The documented routes, and their OpenAPI document.
fn documented(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::user_features))
        .routes(routes!(handlers::user_sessions))
        .routes(routes!(handlers::user_alerts))
        .routes(routes!(handlers::recent_alerts))
        .routes(routes!(handlers::revenue))
        .with_state(state.clone())
        .split_for_parts();
    let (health, health_doc) = OpenApiRouter::new()
        .routes(routes!(handlers::live))
        .routes(routes!(handlers::ready))
        .with_state(state)
        .split_for_parts();
    let mut doc = doc;
    doc.merge(health_doc);
    (api.merge(health), doc)
}

/// The whole application.
pub fn app(state: AppState, cors_origins: &[String]) -> Router {
    let metrics = state.metrics.clone();
    let access = state.access.clone();
    let (documented, doc) = documented(state.clone());
    let doc = Arc::new(doc);
    let router = Router::new()
        .merge(documented)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/", get(|| async { Redirect::temporary("/dashboard") }))
        .merge(dashboard::router(state))
        .route("/metrics", get(metrics::serve).with_state(metrics.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(access, access::guard))
        .route_layer(middleware::from_fn_with_state(metrics, metrics::track));
    let router = match cors(cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(RequestCounter::default()))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request| {
                        let id = request
                            .extensions()
                            .get::<RequestId>()
                            .and_then(|id| id.header_value().to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!(
                            "request",
                            request_id = %id,
                            method = %request.method(),
                            path = %request.uri().path(),
                        )
                    })
                    .on_request(())
                    .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
            )
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_methods([Method::GET])
            .allow_origin(allow),
    )
}

/// Request ids `<process start in hex>-<counter>`: unique per process, cheap, sortable.
#[derive(Clone)]
struct RequestCounter {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Default for RequestCounter {
    fn default() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            prefix: format!("{start:x}").into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestCounter {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use std::time::Duration;
    use tower::ServiceExt;
    use trendstream_events::feature_store::KeySpace;
    use trendstream_service::config::Secret;

    /// An app whose Redis is a closed port: everything that needs no Redis must still work.
    fn app_without_redis() -> Router {
        app_with_access(Access::new(None, 8, Duration::from_secs(1)))
    }

    fn app_with_access(access: Access) -> Router {
        let store = Store::new(
            redis::Client::open("redis://127.0.0.1:1").expect("url"),
            KeySpace::default(),
            Duration::from_millis(200),
        )
        .expect("client");
        let (_stop, shutdown) = watch::channel(false);
        let state = AppState {
            store,
            metrics: Arc::new(Metrics::new()),
            access,
            snapshots: watch::channel(Arc::from("")).1,
            shutdown,
        };
        app(state, &[])
    }

    async fn get(path: &str) -> (StatusCode, serde_json::Value) {
        send(app_without_redis(), Request::get(path)).await
    }

    async fn send(
        app: Router,
        request: axum::http::request::Builder,
    ) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn validation_and_probes_answer_json_without_redis() {
        assert_eq!(get("/health/live").await.0, StatusCode::OK);
        let (status, body) = get("/api/v1/alerts?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["parameter"], "limit");
        let (status, body) = get("/api/v1/users/a%20b/features").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["parameter"], "user_id");
        let (status, body) = get("/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "unavailable");
        let (status, body) = get("/api/v1/users/u1/features").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }

    #[tokio::test]
    async fn the_openapi_document_lists_every_route() {
        let (status, doc) = get("/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        let paths: Vec<&String> = doc["paths"]
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            paths,
            [
                "/api/v1/alerts",
                "/api/v1/revenue",
                "/api/v1/users/{user_id}/alerts",
                "/api/v1/users/{user_id}/features",
                "/api/v1/users/{user_id}/sessions",
                "/health/live",
                "/health/ready",
            ]
        );
        let limit = &doc["paths"]["/api/v1/alerts"]["get"]["parameters"][1];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["schema"]["maximum"], 1000);
        assert!(doc["components"]["schemas"]["Severity"]["enum"].is_array());
    }

    #[tokio::test]
    async fn with_a_token_only_probes_and_metrics_are_open() {
        let token = "0123456789abcdef-token";
        let app = || {
            app_with_access(Access::new(
                Some(Secret::new(token)),
                8,
                Duration::from_secs(1),
            ))
        };
        let (status, body) = send(app(), Request::get("/api/v1/alerts?limit=0")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        for wrong in ["Bearer nope", "Basic abc", "Bearer 0123456789abcdef-toke"] {
            let request = Request::get("/api/v1/alerts?limit=0").header("authorization", wrong);
            assert_eq!(
                send(app(), request).await.0,
                StatusCode::UNAUTHORIZED,
                "{wrong}"
            );
        }
        for path in ["/dashboard", "/api/v1/openapi.json", "/no/such/route"] {
            assert_eq!(
                send(app(), Request::get(path)).await.0,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
        }
        let request = Request::get("/api/v1/alerts?limit=0")
            .header("authorization", format!("Bearer {token}"));
        assert_eq!(send(app(), request).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(
            send(app(), Request::get("/health/live")).await.0,
            StatusCode::OK
        );
        let response = app()
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn beyond_the_concurrency_limit_requests_are_shed_but_probes_answer() {
        // No permit at all: every request is beyond the limit.
        let app = || app_with_access(Access::new(None, 0, Duration::from_secs(1)));
        let (status, body) = send(app(), Request::get("/api/v1/alerts?limit=0")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "overloaded");
        assert_eq!(
            send(app(), Request::get("/health/live")).await.0,
            StatusCode::OK
        );
    }
}
