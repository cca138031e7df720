//! The operations endpoint every service serves: `/metrics`, `/health/live`, `/health/ready`.

use crate::metrics_text::render;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

/// Whether the service can do its work, with the reason when it cannot. Cloned handles share it.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Readiness {
    /// Starts not ready, for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(Some(reason.into()))))
    }

    pub fn set_ready(&self) {
        self.set(None);
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    fn set(&self, reason: Option<String>) {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *guard != reason {
            match &reason {
                None => tracing::info!("ready"),
                Some(why) => tracing::warn!(reason = %why, "not ready"),
            }
            *guard = reason;
        }
    }

    /// `None` when ready, else why not.
    pub fn reason(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The router for the operations endpoints; services may merge their own routes into it.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/health/live",
            get(|| async { json_status(StatusCode::OK, "live") }),
        )
        .route("/health/ready", get(ready))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

async fn metrics(State(state): State<OpsState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) = render(&state.registry, accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn ready(State(state): State<OpsState>) -> Response {
    match state.readiness.reason() {
        None => json_status(StatusCode::OK, "ready"),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not ready", "reason": reason })),
        )
            .into_response(),
    }
}

fn json_status(code: StatusCode, status: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "status": status }))).into_response()
}
