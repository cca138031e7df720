//! The typed configuration, from flags or environment variables, validated before anything
//! starts (an invalid value fails with a message naming the flag and the variable).

use std::time::Duration;

use clap::Parser;
use trendstream_events::feature_store::{DEFAULT_PREFIX, parse_prefix};
use trendstream_service::config::{CommonOptions, Secret, ServiceConfig};
use trendstream_service::redis::RedisAuth;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "feature-api",
    version,
    about = "feature-api: REST over the Redis feature store, with a live dashboard."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonOptions,

    /// Redis URL of the feature store (redis://host:port/db).
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379",
        value_parser = parse_redis_url
    )]
    pub redis_url: String,

    #[command(flatten)]
    pub redis_auth: RedisAuth,

    /// Prefix of every feature-store key (see trendstream_events::feature_store).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub key_prefix: String,

    /// Longest a request may take before it is answered 503 (e.g. 2s, 500ms).
    #[arg(long, env = "FEATURE_API_REQUEST_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Longest one Redis command or connection attempt may take; at most the request timeout.
    #[arg(long, env = "FEATURE_API_REDIS_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Origins allowed by CORS, comma-separated (`*` for any); none by default.
    #[arg(long, env = "FEATURE_API_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// How often the dashboard's event stream polls the store (e.g. 1s).
    #[arg(long, env = "FEATURE_API_DASHBOARD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub dashboard_interval: Duration,

    /// Bearer token every request but the probes and /metrics must carry
    /// (`Authorization: Bearer <token>`; at least 16 characters). None: no authentication.
    /// The operator sets it from the job's `api.authSecretRef`.
    #[arg(long, env = "FEATURE_API_AUTH_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub auth_token: Option<Secret>,

    /// Requests handled at once; more are answered 503 `overloaded` at once instead of queueing
    /// (the probes are never refused).
    #[arg(
        long,
        env = "FEATURE_API_MAX_CONCURRENT_REQUESTS",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub max_concurrent_requests: u32,

    /// How long open requests and event streams get to finish on SIGTERM.
    #[arg(long, env = "FEATURE_API_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServiceConfig for Config {
    fn common(&self) -> &CommonOptions {
        &self.common
    }
}

/// Why a configuration is unusable although every value parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "--redis-timeout (FEATURE_API_REDIS_TIMEOUT) {redis:?} must not exceed --request-timeout (FEATURE_API_REQUEST_TIMEOUT) {request:?}"
    )]
    RedisTimeoutTooLong { redis: Duration, request: Duration },
}

impl Config {
    /// Rules across fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.redis_timeout > self.request_timeout {
            return Err(ConfigError::RedisTimeoutTooLong {
                redis: self.redis_timeout,
                request: self.request_timeout,
            });
        }
        Ok(())
    }
}

/// `250ms`, `2s`, `1m`, or a bare number of milliseconds; more than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    let duration = match unit {
        "" | "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

fn parse_token(text: &str) -> Result<Secret, String> {
    if text.len() < 16 {
        return Err("a token must have at least 16 characters".into());
    }
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err(
            "a token must be printable ASCII without spaces (it travels in a header)".into(),
        );
    }
    Ok(Secret::new(text))
}

fn parse_redis_url(text: &str) -> Result<String, String> {
    redis::Client::open(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("not a Redis URL: {e}"))
}

fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = text == "*"
        || ((text.starts_with("http://") || text.starts_with("https://"))
            && axum::http::HeaderValue::from_str(text).is_ok()
            && !text.ends_with('/'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an origin such as https://shop.example (scheme and host, no path) or *"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("feature-api").chain(args.iter().copied()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_millis(40)));
        for bad in ["", "s", "0", "2h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--request-timeout", "soon"], "--request-timeout"),
            (&["--redis-url", "http://x"], "--redis-url"),
            (&["--cors-origins", "shop.example"], "--cors-origins"),
            (&["--key-prefix", "a b"], "--key-prefix"),
        ];
        for (args, flag) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn defaults_and_cross_field_rule() {
        let config = parse(&["--cors-origins", "https://a.example,*"]).unwrap();
        assert_eq!(config.cors_origins, ["https://a.example", "*"]);
        assert_eq!(config.key_prefix, "ts");
        assert!(config.validate().is_ok());
        let config = parse(&["--request-timeout", "100ms", "--redis-timeout", "1s"]).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("FEATURE_API_REDIS_TIMEOUT"), "{err}");
    }
}
