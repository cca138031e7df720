//! The operations endpoint every service serves: `/metrics`, `/health/live`, `/health/ready`.

use crate::metrics_text::render;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Whether the service is stuck: work has been waiting longer than a limit for something that
/// should have finished it (a stream processor: a committed transaction). Being busy or
/// retrying is not being stuck; only waiting too long is. The clock is read by the probe, so a
/// worker blocked for good still fails it. Cloned handles share it.
#[derive(Clone, Debug)]
pub struct Liveness {
    waiting_since: Arc<Mutex<Option<Instant>>>,
    limit: Duration,
}

impl Liveness {
    /// Live until work waits longer than `limit`.
    pub fn new(limit: Duration) -> Self {
        Self {
            waiting_since: Arc::default(),
            limit,
        }
    }

    /// Work is waiting: starts the clock unless it already runs.
    pub fn waiting(&self) {
        self.lock().get_or_insert_with(Instant::now);
    }

    /// The waiting work is done (or nothing waits): stops the clock.
    pub fn done(&self) {
        *self.lock() = None;
    }

    /// `Err` with the reason once work has waited longer than the limit.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        match stuck_for(*self.lock(), now, self.limit) {
            None => Ok(()),
            Some(waited) => Err(format!(
                "work has waited {}s without completing (limit {}s)",
                waited.as_secs(),
                self.limit.as_secs()
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.waiting_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long work has waited when that is beyond `limit`.
fn stuck_for(since: Option<Instant>, now: Instant, limit: Duration) -> Option<Duration> {
    let waited = now.saturating_duration_since(since?);
    (waited > limit).then_some(waited)
}

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    readiness: Readiness,
    liveness: Option<Liveness>,
}

/// The router for the operations endpoints; services may merge their own routes into it.
/// `/health/live` always answers 200: the process serving it is alive.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    routes(OpsState {
        registry,
        readiness,
        liveness: None,
    })
}

/// Like [`router`], but `/health/live` fails (503) while `liveness` says the service is stuck.
pub fn router_with_liveness(
    registry: Arc<Registry>,
    readiness: Readiness,
    liveness: Liveness,
) -> Router {
    routes(OpsState {
        registry,
        readiness,
        liveness: Some(liveness),
    })
}

fn routes(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(state)
}

async fn live(State(state): State<OpsState>) -> Response {
    let verdict = state
        .liveness
        .as_ref()
        .map_or(Ok(()), |liveness| liveness.check(Instant::now()));
    match verdict {
        Ok(()) => json_status(StatusCode::OK, "live"),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "stuck", "reason": reason })),
        )
            .into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_once_waiting_beyond_the_limit() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(60);
        assert_eq!(stuck_for(None, t0 + limit * 10, limit), None, "idle");
        assert_eq!(stuck_for(Some(t0), t0 + limit, limit), None, "at the limit");
        assert_eq!(
            stuck_for(Some(t0), t0 + limit + Duration::from_secs(1), limit),
            Some(Duration::from_secs(61))
        );
    }

    #[test]
    fn the_clock_starts_once_and_stops_when_done() {
        let liveness = Liveness::new(Duration::ZERO);
        liveness.waiting();
        let first = *liveness.lock();
        liveness.waiting();
        assert_eq!(*liveness.lock(), first, "waiting again keeps the start");
        let later = Instant::now() + Duration::from_secs(1);
        assert!(
            liveness
                .check(later)
                .is_err_and(|r| r.contains("waited 1s"))
        );
        liveness.done();
        assert!(liveness.check(later).is_ok());
    }
}
