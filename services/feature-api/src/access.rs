//! Who may ask and how much at once, on every route: the bearer token (when configured), a
//! limit on requests in flight (more are shed with 503 at once, not queued), and the request
//! timeout. Probes (`/health/*`) need no token and are never shed, so the kubelet and load
//! balancers keep seeing the truth under load; `/metrics` needs no token either (Prometheus
//! scrapes it; the job's NetworkPolicy limits who reaches the port).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use trendstream_service::config::Secret;

use crate::errors::ApiError;

/// The guard's settings, shared by every request.
#[derive(Clone)]
pub struct Access {
    token: Option<Arc<Secret>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Access {
    pub fn new(token: Option<Secret>, max_concurrent_requests: usize, timeout: Duration) -> Self {
        Self {
            token: token.map(Arc::new),
            permits: Arc::new(Semaphore::new(max_concurrent_requests)),
            timeout,
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(presented.as_bytes(), token.expose().as_bytes())
    }
}

/// The middleware: token, then a permit, then the handler within the timeout.
pub async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let probe = path.starts_with("/health/");
    if !probe && path != "/metrics" && !access.authorized(&request) {
        let mut response = ApiError::Unauthorized.into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let _permit = if probe {
        None
    } else {
        match access.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let mut response = ApiError::Overloaded.into_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        }
    };
    // A streaming body (the dashboard's events) is returned at once: neither the permit nor
    // the timeout covers the stream itself, only producing its response.
    match tokio::time::timeout(access.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "no answer within the request timeout {:?}",
            access.timeout
        ))
        .into_response(),
    }
}

/// Compares without returning early, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-toke", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token!", b"s3cret-token"));
        assert!(!constant_time_eq(b"", b"s3cret-token"));
        assert!(!constant_time_eq(b"S3cret-token", b"s3cret-token"));
    }
}
