//! Flags every service shares, read from the command line or the environment
//! (the operator sets environment variables).

use crate::telemetry::{LogFormat, init_tracing};
use clap::Args;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Options common to every TrendStream binary.
#[derive(Debug, Clone, Args)]
pub struct CommonOptions {
    /// Address of the HTTP server for /metrics and /health/*.
    #[arg(long, env = "TRENDSTREAM_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: SocketAddr,

    /// Log format: text for terminals, json for clusters.
    #[arg(
        long,
        env = "TRENDSTREAM_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Validate the configuration, print it and exit without starting.
    #[arg(long)]
    pub check_config: bool,
}

impl CommonOptions {
    /// Installs logging. Separate from parsing so `--help` never touches global state.
    pub fn init(&self) {
        init_tracing(self.log_format);
    }
}

/// A service configuration: clap-parsed, with the common options inside.
pub trait ServiceConfig: clap::Parser + std::fmt::Debug {
    fn common(&self) -> &CommonOptions;
}

/// Parses the configuration (clap exits with a message naming the bad flag or variable),
/// installs logging and logs what was read.
pub fn load_config<C: ServiceConfig>(service: &str) -> C {
    let config = C::parse();
    config.common().init();
    let config_text = redact_url_passwords(&format!("{config:?}"));
    tracing::info!(service, config = config_text, "configuration loaded");
    config
}

/// `text` with the password of every URL in it (`scheme://user:password@host`) replaced by
/// `***`: configurations hold URLs a user may have put a password in (`REDIS_URL`, `PG_URL`),
/// and are logged at start. (Passwords given on their own are redacted by their types.)
pub fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends where the path, the quoted string or the value does.
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '"' | '\'' | ',' | ')' | '}' | ']') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A secret setting (a token, a password): its `Debug` never shows it, so the configuration
/// logged at start does not either. Declare its argument with `hide_env_values = true` too.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// So clap can read a secret argument directly.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(text))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Every environment variable a configuration reads: the `env` of each of its arguments,
/// flattened ones included. The operator's contract test checks the pod environment against it.
pub fn env_names<C: clap::CommandFactory>() -> BTreeSet<String> {
    C::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Demo {
        #[command(flatten)]
        common: CommonOptions,
        /// Read from the environment.
        #[arg(long, env = "DEMO_SETTING")]
        setting: Option<String>,
        /// A flag only.
        #[arg(long)]
        flag_only: bool,
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn url_passwords_are_redacted() {
        let cases = [
            (
                r#"Config { pg_url: "postgres://capture:pa:ss@db:5432/shop?sslmode=require", x: 1 }"#,
                r#"Config { pg_url: "postgres://capture:***@db:5432/shop?sslmode=require", x: 1 }"#,
            ),
            (
                r#"Some("rediss://:s3cret@10.0.0.5:6378")"#,
                r#"Some("rediss://:***@10.0.0.5:6378")"#,
            ),
            (
                r#"Some("redis://user@host:6379")"#,
                r#"Some("redis://user@host:6379")"#,
            ),
            (
                "http://10.88.0.1:4443, https://h/x",
                "http://10.88.0.1:4443, https://h/x",
            ),
            ("no url at all", "no url at all"),
            ("a://b:c@d and e://f:g@h", "a://b:***@d and e://f:***@h"),
        ];
        for (text, expected) in cases {
            assert_eq!(redact_url_passwords(text), expected, "{text}");
        }
    }

    #[test]
    fn env_names_include_flattened_options_and_skip_flags_without_a_variable() {
        let names = env_names::<Demo>();
        let expected = [
            "DEMO_SETTING",
            "TRENDSTREAM_HTTP_ADDR",
            "TRENDSTREAM_LOG_FORMAT",
        ];
        assert_eq!(names, expected.map(str::to_owned).into());
    }
}
