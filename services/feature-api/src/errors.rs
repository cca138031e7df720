//! Errors as JSON responses: `{"error": {"code", "message", "parameter"?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path or query parameter is invalid; `parameter` names it.
    #[error("{parameter}: {message}")]
    BadRequest { parameter: String, message: String },
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Redis is down, slow, or the request ran out of time. The reason is logged, never
    /// returned: a client learns nothing of the store's address or errors.
    #[error("the feature store is unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not decode (a writer broke the layout). Logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// The API requires a bearer token and the request has none or another.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// More requests in flight than FEATURE_API_MAX_CONCURRENT_REQUESTS.
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
}

impl ApiError {
    pub fn bad_request(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            parameter: parameter.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
            Self::Unauthorized => "unauthorized",
            Self::Overloaded => "overloaded",
        }
    }

    /// What the client is told: the message, except the server-side detail of a failure.
    fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => "the feature store is unavailable; retry shortly".into(),
            Self::Internal(_) => "internal error; the server log has the detail".into(),
            _ => self.to_string(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.public_message(),
                parameter: match self {
                    Self::BadRequest { parameter, .. } => Some(parameter.clone()),
                    _ => None,
                },
            },
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `not_found`, `unauthorized`, `overloaded`, `unavailable` or `internal`.
    pub code: String,
    pub message: String,
    /// The offending path or query parameter (400 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Unavailable(reason) => tracing::warn!(%reason, "feature store unavailable"),
            Self::Internal(reason) => tracing::error!(%reason, "internal error"),
            _ => {}
        }
        (self.status(), Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_names_the_parameter() {
        let body = serde_json::to_value(ApiError::bad_request("limit", "too big").body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "bad_request", "message": "limit: too big", "parameter": "limit"}})
        );
        let body = serde_json::to_value(
            ApiError::Unavailable("redis 10.0.0.5:6379: connection refused".into()).body(),
        )
        .unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(!body.to_string().contains("10.0.0.5"), "{body}");
        assert!(body["error"].get("parameter").is_none());
        assert_eq!(
            ApiError::Unavailable(String::new()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
