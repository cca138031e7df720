//! Connecting to PostgreSQL the way libpq users expect, over TLS when asked: one place for every
//! PostgreSQL client of the project (pg-capture, loadgen).
//!
//! The URL's `sslmode` and `sslrootcert` keep libpq's meaning (Cloud SQL, RDS and most managed
//! services document them):
//! - `disable`: plain TCP;
//! - `prefer` (the default): TLS when the server offers it, plain otherwise; the certificate is
//!   not checked;
//! - `require`: TLS or nothing; the certificate is not checked unless `sslrootcert` is given,
//!   then it must chain to that CA (as libpq does with a root certificate present);
//! - `verify-ca`: TLS, the certificate must chain to `sslrootcert` (or a system CA);
//! - `verify-full`: as `verify-ca`, and the certificate must name the host connected to.
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's CAs.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::redact_url_passwords;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = PgConnectError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            // libpq's `allow` tries plain first; TLS when offered is the safer reading.
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(PgConnectError::Setting(format!(
                    "sslmode={other}: expected disable, allow, prefer, require, verify-ca or verify-full"
                )));
            }
        })
    }
}

/// Which CAs a verifying mode trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=system`, or a verifying mode without `sslrootcert`.
    System,
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum PgConnectError {
    #[error("PostgreSQL URL: {0}")]
    Setting(String),
    #[error("PostgreSQL URL {url}: {source}")]
    Url {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// `detail` is the whole chain of causes (tokio-postgres's own message leaves out the TLS
    /// handshake's reason, e.g. which certificate check failed).
    #[error("connecting to PostgreSQL at {url} (sslmode={mode}): {detail}")]
    Connect {
        url: String,
        mode: &'static str,
        detail: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A PostgreSQL URL split into what tokio-postgres reads and the TLS settings it does not.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// The URL for messages, its password replaced by `***`.
    pub redacted: String,
    pub mode: TlsMode,
    pub root_certs: Option<RootCerts>,
    config: tokio_postgres::Config,
}

impl PgTarget {
    /// Reads a `postgres://` URL (or a libpq key=value string without TLS settings).
    pub fn parse(url: &str) -> Result<Self, PgConnectError> {
        let redacted = redact_url_passwords(url);
        let (rest, mode, root_certs) = split_tls_settings(url)?;
        let mut config =
            tokio_postgres::Config::from_str(&rest).map_err(|source| PgConnectError::Url {
                url: redacted.clone(),
                source,
            })?;
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        Ok(Self {
            redacted,
            mode,
            root_certs,
            config,
        })
    }

    /// Connects; the connection's task runs on the current Tokio runtime until the client goes.
    pub async fn connect(&self) -> Result<Client, PgConnectError> {
        let tls = MakeRustlsConnect::new(self.client_config()?);
        let (client, connection) =
            self.config
                .connect(tls)
                .await
                .map_err(|source| PgConnectError::Connect {
                    url: self.redacted.clone(),
                    mode: self.mode.name(),
                    detail: causes(&source),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(%err, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    fn client_config(&self) -> Result<rustls::ClientConfig, PgConnectError> {
        let provider = Arc::new(ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| PgConnectError::Tls(err.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.root_certs) {
            (TlsMode::Disable | TlsMode::Prefer, _) | (TlsMode::Require, None) => {
                Arc::new(AnyCertificate(provider.signature_verification_algorithms))
            }
            (TlsMode::VerifyFull, roots) => WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(roots.as_ref())?),
                provider,
            )
            .build()
            .map_err(|err| PgConnectError::Tls(err.to_string()))?,
            (_, roots) => Arc::new(ChainOnly {
                roots: Arc::new(root_store(roots.as_ref())?),
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }
}

impl TlsMode {
    fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// An error and its causes, `: `-separated.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Connects to `url` (see the module's documentation for its TLS settings).
pub async fn connect(url: &str) -> Result<Client, PgConnectError> {
    PgTarget::parse(url)?.connect().await
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query (tokio-postgres knows neither the
/// verifying modes nor `sslrootcert`); a key=value string is passed on as it is.
fn split_tls_settings(url: &str) -> Result<(String, TlsMode, Option<RootCerts>), PgConnectError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), TlsMode::Prefer, None));
    };
    let mut mode = TlsMode::Prefer;
    let mut root_certs = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "sslmode" => mode = value.parse()?,
            "sslrootcert" if value == "system" => root_certs = Some(RootCerts::System),
            "sslrootcert" => root_certs = Some(RootCerts::File(PathBuf::from(value))),
            _ => kept.push(pair),
        }
    }
    if mode == TlsMode::Disable && root_certs.is_some() {
        return Err(PgConnectError::Setting(
            "sslrootcert is set but sslmode=disable".into(),
        ));
    }
    if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && root_certs.is_none() {
        root_certs = Some(RootCerts::System);
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root_certs))
}

fn percent_decode(value: &str) -> String {
    form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn root_store(roots: Option<&RootCerts>) -> Result<RootCertStore, PgConnectError> {
    let mut store = RootCertStore::empty();
    match roots {
        None | Some(RootCerts::System) => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(PgConnectError::Tls(
                    "no system CA certificates found; set sslrootcert to the server's CA".into(),
                ));
            }
        }
        Some(RootCerts::File(path)) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| PgConnectError::RootCert {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(PgConnectError::RootCert {
                    path: path.clone(),
                    reason: "no CA certificate in it".into(),
                });
            }
        }
    }
    Ok(store)
}

/// `prefer`/`require` without a CA: encrypted, the server's identity unchecked (libpq's
/// behaviour). The handshake's signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the certificate must chain to a trusted CA; the host name is not compared.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_leave_the_url_and_keep_libpq_meaning() {
        let (rest, mode, roots) = split_tls_settings(
            "postgres://u:pw@db:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .expect("parses");
        assert_eq!(rest, "postgres://u:pw@db:5432/app?application_name=x");
        assert_eq!(mode, TlsMode::VerifyFull);
        assert_eq!(roots, Some(RootCerts::File("/etc/ca.pem".into())));

        let (rest, mode, roots) = split_tls_settings("postgres://db/app").expect("parses");
        assert_eq!(
            (rest.as_str(), mode, roots),
            ("postgres://db/app", TlsMode::Prefer, None)
        );

        let (_, mode, roots) =
            split_tls_settings("postgres://db/app?sslmode=verify-ca").expect("ok");
        assert_eq!((mode, roots), (TlsMode::VerifyCa, Some(RootCerts::System)));

        let (_, mode, roots) = split_tls_settings("postgres://db/app?sslmode=require").expect("ok");
        assert_eq!((mode, roots), (TlsMode::Require, None));
    }

    #[test]
    fn bad_tls_settings_are_named_and_the_password_never_shows() {
        let err = PgTarget::parse("postgres://u:hunter2@db/app?sslmode=verify").expect_err("bad");
        assert!(err.to_string().contains("sslmode=verify"), "{err}");
        let err = PgTarget::parse("postgres://u:hunter2@db/app?sslmode=disable&sslrootcert=/ca")
            .expect_err("contradiction");
        assert!(err.to_string().contains("sslmode=disable"), "{err}");
        let err = PgTarget::parse("postgres://u:hunter2@db/app?bogus=1").expect_err("unknown");
        let text = err.to_string();
        assert!(
            text.contains("bogus") && !text.contains("hunter2"),
            "{text}"
        );
        let target = PgTarget::parse("postgres://u:hunter2@db/app?sslmode=require").expect("ok");
        assert_eq!(target.redacted, "postgres://u:***@db/app?sslmode=require");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let target = PgTarget::parse(
            "postgres://db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .expect("parses");
        let err = target.client_config().expect_err("no file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

        let dir = std::env::temp_dir().join(format!("pg-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let url = format!(
            "postgres://db/app?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        );
        let err = PgTarget::parse(&url)
            .expect("parses")
            .client_config()
            .expect_err("empty");
        assert!(err.to_string().contains("no CA certificate"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
