//! The REST handlers and their response types (the OpenAPI document is generated from both).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use trendstream_events::{FraudAlert, Money, RevenueWindow, SessionSummary, UserFeatures};
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorBody};
use crate::params::{
    AlertsQuery, ApiQuery, LimitQuery, RevenueQuery, RevenueRange, UserPath, limit,
};
use crate::routes::AppState;

/// A user's newest closed sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionsResponse {
    pub user_id: String,
    /// Newest first (by `end_ts`).
    pub sessions: Vec<SessionSummary>,
}

/// Fraud alerts, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertsResponse {
    pub alerts: Vec<FraudAlert>,
}

/// One point of a revenue series: a one-minute window's totals, or one category's share.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RevenuePoint {
    pub window_start: i64,
    pub window_end: i64,
    #[schema(value_type = String, example = "1250.00")]
    pub gmv: Money,
    pub orders: i64,
    #[schema(value_type = String, example = "250.00")]
    pub average_order_value: Money,
    #[schema(value_type = String, example = "TRY")]
    pub currency: trendstream_events::Currency,
}

/// Revenue windows starting in `[from, to)`, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueSeries {
    pub from: i64,
    pub to: i64,
    /// The category of the series; absent for the totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub points: Vec<RevenuePoint>,
}

/// Liveness and readiness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` (live) or `ready`.
    pub status: String,
}

/// The errors of the per-user routes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `ApiError`
pub enum UserErrors {
    /// Invalid user id or query parameter (named in `error.parameter`)
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Nothing is stored for this user
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The feature store is unavailable or did not answer in time
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The errors of the routes across users.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `ApiError`
pub enum QueryErrors {
    /// Invalid query parameter (named in `error.parameter`)
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The feature store is unavailable or did not answer in time
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// One window as a point of the totals, or of `category` (zero where the category sold nothing).
pub fn revenue_point(window: &RevenueWindow, category: Option<&str>) -> RevenuePoint {
    let (gmv, orders) = match category {
        None => (window.gmv, window.orders),
        Some(name) => window
            .per_category
            .get(name)
            .map_or((Money::ZERO, 0), |c| (c.gmv, c.orders)),
    };
    RevenuePoint {
        window_start: window.window_start,
        window_end: window.window_end,
        gmv,
        orders,
        average_order_value: RevenueWindow::average_order_value(gmv, orders),
        currency: window.currency,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unknown_user(user_id: &str) -> ApiError {
    ApiError::NotFound(format!("no data for user {user_id}"))
}

/// `items`, unless they are empty because nothing at all is stored for the user (404).
async fn known_user<T>(state: &AppState, user_id: &str, items: Vec<T>) -> Result<Vec<T>, ApiError> {
    if items.is_empty() && !state.store.user_known(user_id).await? {
        return Err(unknown_user(user_id));
    }
    Ok(items)
}

/// A user's live features (session-aggregator).
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/features",
    tag = "users",
    params(UserPath),
    responses(
        (status = 200, description = "The user's live features", body = UserFeatures),
        UserErrors,
    )
)]
pub async fn user_features(
    State(state): State<AppState>,
    user: UserPath,
) -> Result<Json<UserFeatures>, ApiError> {
    match state.store.user_features(&user.user_id).await? {
        Some(features) => Ok(Json(features)),
        None => Err(unknown_user(&user.user_id)),
    }
}

/// A user's newest closed sessions.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/sessions",
    tag = "users",
    params(UserPath, LimitQuery),
    responses(
        (status = 200, description = "Newest sessions first", body = SessionsResponse),
        UserErrors,
    )
)]
pub async fn user_sessions(
    State(state): State<AppState>,
    user: UserPath,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<Json<SessionsResponse>, ApiError> {
    let limit = limit(query.limit)?;
    let sessions = state.store.user_sessions(&user.user_id, limit).await?;
    let sessions = known_user(&state, &user.user_id, sessions).await?;
    Ok(Json(SessionsResponse {
        user_id: user.user_id,
        sessions,
    }))
}

/// A user's fraud alerts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}/alerts",
    tag = "alerts",
    params(UserPath, AlertsQuery),
    responses(
        (status = 200, description = "Newest alerts first", body = AlertsResponse),
        UserErrors,
    )
)]
pub async fn user_alerts(
    State(state): State<AppState>,
    user: UserPath,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let (since, limit) = query.resolve()?;
    let alerts = state.store.user_alerts(&user.user_id, since, limit).await?;
    let alerts = known_user(&state, &user.user_id, alerts).await?;
    Ok(Json(AlertsResponse { alerts }))
}

/// Every user's fraud alerts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Newest alerts first", body = AlertsResponse),
        QueryErrors,
    )
)]
pub async fn recent_alerts(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let (since, limit) = query.resolve()?;
    let alerts = state.store.recent_alerts(since, limit).await?;
    Ok(Json(AlertsResponse { alerts }))
}

/// Revenue per one-minute window, in total or for one category.
#[utoipa::path(
    get,
    path = "/api/v1/revenue",
    tag = "revenue",
    params(RevenueQuery),
    responses(
        (status = 200, description = "Windows starting in [from, to), oldest first", body = RevenueSeries),
        QueryErrors,
    )
)]
pub async fn revenue(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RevenueQuery>,
) -> Result<Json<RevenueSeries>, ApiError> {
    let RevenueRange { from, to, category } = query.resolve(now_ms())?;
    let windows = state.store.revenue(from, to).await?;
    let points = windows
        .iter()
        .map(|w| revenue_point(w, category.as_deref()))
        .collect();
    Ok(Json(RevenueSeries {
        from,
        to,
        category,
        points,
    }))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "Alive", body = HealthStatus))
)]
pub async fn live() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok".into(),
    })
}

/// Readiness: Redis answers PING within the Redis timeout.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Redis reachable", body = HealthStatus),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    state.store.ping().await?;
    Ok(Json(HealthStatus {
        status: "ready".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::str::FromStr;
    use trendstream_events::{CategoryRevenue, Currency};

    #[test]
    fn revenue_points_for_totals_and_categories() {
        let m = |s: &str| Money::from_str(s).unwrap();
        let mut per_category = BTreeMap::new();
        per_category.insert(
            "books".to_owned(),
            CategoryRevenue {
                gmv: m("30.00"),
                orders: 2,
            },
        );
        let w = RevenueWindow::new(0, 60_000, Currency::TRY, m("100.00"), 4, per_category);
        assert_eq!(revenue_point(&w, None).average_order_value, m("25.00"));
        let books = revenue_point(&w, Some("books"));
        assert_eq!((books.gmv, books.orders), (m("30.00"), 2));
        assert_eq!(books.average_order_value, m("15.00"));
        let none = revenue_point(&w, Some("toys"));
        assert_eq!((none.gmv, none.orders), (Money::ZERO, 0));
    }
}
