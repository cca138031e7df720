//! Path and query parameters: extractors whose rejections are JSON 400s naming the parameter,
//! and the range rules the OpenAPI document states.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use trendstream_events::feature_store::{ID_PATTERN, valid_id};
use utoipa::IntoParams;

use crate::errors::ApiError;

/// Most items one list request returns.
pub const MAX_LIMIT: u32 = 1000;
/// Items a list request returns without `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z in epoch milliseconds.
pub const MAX_TS: i64 = 253_402_300_799_999;
/// Widest revenue range one request may ask for: one day (1440 one-minute windows).
pub const MAX_REVENUE_RANGE_MS: i64 = 24 * 60 * 60 * 1000;
/// Revenue range when `from` is not given: the hour before `to`.
pub const DEFAULT_REVENUE_RANGE_MS: i64 = 60 * 60 * 1000;
/// Longest category name.
pub const MAX_CATEGORY_CHARS: usize = 64;

/// Query parameters deserialized with the offending parameter named on error.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parses a query string into `T`; errors name the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let parameter = if path == "." { "query".into() } else { path };
        ApiError::bad_request(parameter, err.into_inner().to_string())
    })
}

/// A user id from the path, checked against the key rule.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The user's id.
    #[param(
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    pub user_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(user_id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("user_id", e.body_text()))?;
        if !valid_id(&user_id) {
            return Err(ApiError::bad_request(
                "user_id",
                format!("must match {ID_PATTERN}"),
            ));
        }
        Ok(UserPath { user_id })
    }
}

/// `?limit=`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many items, newest first (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `?since=&limit=`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only alerts at or after this time (epoch milliseconds).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub since: Option<i64>,
    /// How many alerts, newest first (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl AlertsQuery {
    /// `since` (default 0) and `limit` (default [`DEFAULT_LIMIT`]), range-checked.
    pub fn resolve(&self) -> Result<(i64, usize), ApiError> {
        Ok((
            timestamp("since", self.since.unwrap_or(0))?,
            limit(self.limit)?,
        ))
    }
}

/// `?from=&to=&category=`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevenueQuery {
    /// Windows starting at or after this time (epoch ms); default `to` minus one hour. At most
    /// one day before `to`.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub from: Option<i64>,
    /// Windows starting before this time (epoch ms); default now.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub to: Option<i64>,
    /// One category's series instead of the totals.
    #[param(min_length = 1, max_length = 64)]
    pub category: Option<String>,
}

/// `limit` or its default, checked against 1..=[`MAX_LIMIT`].
pub fn limit(value: Option<u32>) -> Result<usize, ApiError> {
    let limit = value.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    usize::try_from(limit).map_err(|_| ApiError::bad_request("limit", "too large"))
}

/// A timestamp parameter within 0..=[`MAX_TS`].
pub fn timestamp(name: &str, value: i64) -> Result<i64, ApiError> {
    if !(0..=MAX_TS).contains(&value) {
        return Err(ApiError::bad_request(
            name,
            format!("must be epoch milliseconds between 0 and {MAX_TS}, got {value}"),
        ));
    }
    Ok(value)
}

/// A checked revenue range `[from, to)` and category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueRange {
    pub from: i64,
    pub to: i64,
    pub category: Option<String>,
}

impl RevenueQuery {
    /// Applies defaults (`to` = `now_ms`, `from` = an hour before `to`) and the rules.
    pub fn resolve(self, now_ms: i64) -> Result<RevenueRange, ApiError> {
        let to = timestamp("to", self.to.unwrap_or(now_ms.clamp(0, MAX_TS)))?;
        let from = match self.from {
            Some(from) => timestamp("from", from)?,
            None => (to - DEFAULT_REVENUE_RANGE_MS).max(0),
        };
        if from > to {
            return Err(ApiError::bad_request(
                "from",
                format!("must not be after to ({from} > {to})"),
            ));
        }
        if to - from > MAX_REVENUE_RANGE_MS {
            return Err(ApiError::bad_request(
                "from",
                format!("the range from..to must not exceed {MAX_REVENUE_RANGE_MS} ms (one day)"),
            ));
        }
        if let Some(category) = &self.category {
            let chars = category.chars().count();
            if !(1..=MAX_CATEGORY_CHARS).contains(&chars) {
                return Err(ApiError::bad_request(
                    "category",
                    format!("must be 1 to {MAX_CATEGORY_CHARS} characters"),
                ));
            }
        }
        Ok(RevenueRange {
            from,
            to,
            category: self.category,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(err: ApiError) -> String {
        match err {
            ApiError::BadRequest { parameter, .. } => parameter,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let q: AlertsQuery = parse_query("since=5&limit=10&other=x").unwrap();
        assert_eq!((q.since, q.limit), (Some(5), Some(10)));
        for (query, name) in [
            ("limit=abc", "limit"),
            ("limit=-1", "limit"),
            ("since=1.5", "since"),
            ("since=99999999999999999999", "since"),
            ("limit=", "limit"),
        ] {
            let err = parse_query::<AlertsQuery>(query).err().unwrap();
            assert_eq!(parameter(err), name, "{query}");
        }
    }

    #[test]
    fn limits_and_timestamps_are_range_checked() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(1000)).unwrap(), 1000);
        assert_eq!(parameter(limit(Some(0)).unwrap_err()), "limit");
        assert_eq!(parameter(limit(Some(1001)).unwrap_err()), "limit");
        assert_eq!(parameter(timestamp("since", -1).unwrap_err()), "since");
        assert_eq!(timestamp("since", MAX_TS).unwrap(), MAX_TS);
    }

    #[test]
    fn revenue_range_defaults_and_rules() {
        let now = 10 * DEFAULT_REVENUE_RANGE_MS;
        let r = RevenueQuery::default().resolve(now).unwrap();
        assert_eq!((r.from, r.to), (now - DEFAULT_REVENUE_RANGE_MS, now));
        let q = |from, to, category: Option<&str>| RevenueQuery {
            from,
            to,
            category: category.map(str::to_owned),
        };
        assert_eq!(
            q(Some(0), Some(10), Some("books")).resolve(now).unwrap(),
            RevenueRange {
                from: 0,
                to: 10,
                category: Some("books".into())
            }
        );
        assert_eq!(
            parameter(q(Some(11), Some(10), None).resolve(now).unwrap_err()),
            "from"
        );
        let too_wide = q(Some(0), Some(MAX_REVENUE_RANGE_MS + 1), None);
        assert_eq!(parameter(too_wide.resolve(now).unwrap_err()), "from");
        assert_eq!(
            parameter(q(None, Some(-5), None).resolve(now).unwrap_err()),
            "to"
        );
        assert_eq!(
            parameter(q(None, None, Some("")).resolve(now).unwrap_err()),
            "category"
        );
        let long = "ç".repeat(65);
        assert_eq!(
            parameter(q(None, None, Some(&long)).resolve(now).unwrap_err()),
            "category"
        );
    }
}
