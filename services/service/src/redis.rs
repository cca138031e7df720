//! Connecting to Redis as a StreamJob describes it: the URL, the AUTH password from a Secret
//! (`REDIS_PASSWORD`, kept out of the URL so it never shows in a pod spec), and for TLS with a
//! private CA — Memorystore's in-transit encryption — the CA certificate (`REDIS_CA_CERT_FILE`).

use std::path::PathBuf;

use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};

/// Flags every Redis client shares; flatten into a binary's configuration beside its URL.
#[derive(clap::Args, Clone, Default)]
pub struct RedisAuth {
    /// Redis AUTH password; replaces one in the URL (the operator sets it from the job's Secret).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// PEM file of the CA that signed the server's certificate, for a rediss:// server whose
    /// certificate no public CA signed (e.g. Memorystore's server CA).
    #[arg(long, env = "REDIS_CA_CERT_FILE")]
    pub redis_ca_cert_file: Option<PathBuf>,
}

/// The configuration is logged at start: the password never is.
impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth")
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "<redacted>"),
            )
            .field("redis_ca_cert_file", &self.redis_ca_cert_file)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisClientError {
    #[error("REDIS_URL: not a Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("REDIS_CA_CERT_FILE is set but REDIS_URL is not a rediss:// (TLS) URL")]
    CaWithoutTls,
    #[error("REDIS_CA_CERT_FILE {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("REDIS_CA_CERT_FILE {path}: not a usable CA certificate: {source}")]
    CaInvalid {
        path: PathBuf,
        source: redis::RedisError,
    },
}

impl RedisAuth {
    /// A client for `url` with the password and CA applied; connects on first use.
    pub fn client(&self, url: &str) -> Result<redis::Client, RedisClientError> {
        let mut info = url.into_connection_info().map_err(RedisClientError::Url)?;
        if let Some(password) = &self.redis_password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let Some(path) = &self.redis_ca_cert_file else {
            return redis::Client::open(info).map_err(RedisClientError::Url);
        };
        if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            return Err(RedisClientError::CaWithoutTls);
        }
        let root_cert = std::fs::read(path).map_err(|source| RedisClientError::CaFile {
            path: path.clone(),
            source,
        })?;
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        };
        redis::Client::build_with_tls(info, certificates).map_err(|source| {
            RedisClientError::CaInvalid {
                path: path.clone(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(password: Option<&str>, ca: Option<PathBuf>) -> RedisAuth {
        RedisAuth {
            redis_password: password.map(str::to_owned),
            redis_ca_cert_file: ca,
        }
    }

    #[test]
    fn the_secret_password_replaces_the_urls() {
        let client = auth(Some("from-secret"), None)
            .client("redis://:in-url@127.0.0.1:6379/2")
            .expect("client");
        let info = client.get_connection_info();
        assert_eq!(info.redis_settings().password(), Some("from-secret"));
        assert_eq!(info.redis_settings().db(), 2);

        let client = auth(None, None)
            .client("redis://:in-url@127.0.0.1:6379")
            .expect("client");
        let info = client.get_connection_info();
        assert_eq!(info.redis_settings().password(), Some("in-url"));
    }

    #[test]
    fn the_password_is_never_printed() {
        let printed = format!("{:?}", auth(Some("hunter2"), None));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (auth(None, None), "not a url", "REDIS_URL"),
            (
                auth(None, Some("/nonexistent/ca.pem".into())),
                "redis://127.0.0.1:6379",
                "not a rediss://",
            ),
            (
                auth(None, Some("/nonexistent/ca.pem".into())),
                "rediss://127.0.0.1:6379",
                "/nonexistent/ca.pem",
            ),
        ];
        for (auth, url, expected) in cases {
            let err = auth.client(url).expect_err(url).to_string();
            assert!(
                err.contains(expected),
                "{url}: {err} should mention {expected}"
            );
        }
    }
}
