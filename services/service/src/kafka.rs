//! What every Kafka client of the project shares: where the brokers are and how to reach them
//! securely ([`KafkaCluster`]), and the client context that logs librdkafka's errors.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::Secret;

/// The context of a consumer that asks for end-of-partition events (`enable.partition.eof`):
/// librdkafka also reports them as client errors, which the default context logs at ERROR
/// level, so a restore reaching the end of its changelog looked like a failure in the logs.
/// Every other client error is still logged at ERROR, and the last one is kept, so that a
/// request that times out can say why (an authentication failure, a certificate refused).
#[derive(Debug, Clone, Default)]
pub struct QuietEof {
    last_error: Arc<Mutex<Option<ClientError>>>,
}

/// An error librdkafka reported: its code, and the error with its reason.
type ClientError = (Option<RDKafkaErrorCode>, String);

impl QuietEof {
    /// The last error librdkafka reported, with its reason.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .ok()
            .and_then(|last| last.as_ref().map(|(_, text)| text.clone()))
    }

    /// Whether the last error was an authentication or TLS failure: retrying does not help.
    fn last_was_fatal(&self) -> bool {
        self.last_error.lock().ok().is_some_and(|last| {
            last.as_ref().is_some_and(|(code, _)| {
                matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::Authentication
                            | RDKafkaErrorCode::SaslAuthenticationFailed
                            | RDKafkaErrorCode::SSL
                    )
                )
            })
        })
    }
}

/// A connection that dropped (a broker restarting, a client closed while its coordinator
/// connection was still authenticating): librdkafka reconnects by itself, so it is a warning.
fn transient(message: &str) -> bool {
    message.contains("Broker transport failure")
}

impl ClientContext for QuietEof {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
                if !transient(message) =>
            {
                tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            _ => tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka's "global error" path reports them as `Global(PartitionEOF)`.
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            if error.rdkafka_error_code() == Some(RDKafkaErrorCode::BrokerTransportFailure) {
                tracing::warn!(%error, reason, "librdkafka connection lost; reconnecting");
            } else {
                tracing::error!(%error, reason, "librdkafka error");
            }
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some((error.rdkafka_error_code(), format!("{error}: {reason}")));
            }
        }
    }
}

impl ConsumerContext for QuietEof {}

/// How clients reach the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// The SASL mechanisms managed Kafka services offer with a username and password (Confluent
/// Cloud and Aiven: PLAIN or SCRAM; MSK and Strimzi: SCRAM-SHA-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Whether a client checks that the broker's certificate names the host it dialled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointIdentification {
    #[default]
    Https,
    None,
}

/// How every Kafka client of a binary authenticates and encrypts: the `KAFKA_*` variables a
/// StreamJob's `kafka.securitySecretRef` Secret holds (named as Kafka's Java clients name the
/// settings). The one place they become librdkafka properties is [`KafkaCluster::client_config`].
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct KafkaSecurity {
    /// How clients reach the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value = "PLAINTEXT"
    )]
    pub protocol: SecurityProtocol,

    /// SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL username (with SASL_*).
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    /// SASL password (with SASL_*); never logged.
    #[arg(
        long = "kafka-sasl-password",
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<Secret>,

    /// PEM file of the CAs that sign the brokers' certificates (with SSL, SASL_SSL); the
    /// system's CAs when neither this nor KAFKA_SSL_CA_PEM is set.
    #[arg(long = "kafka-ssl-ca-location", env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<PathBuf>,

    /// The same CAs as PEM text, for a Secret key passed as an environment variable.
    #[arg(
        long = "kafka-ssl-ca-pem",
        env = "KAFKA_SSL_CA_PEM",
        hide_env_values = true,
        allow_hyphen_values = true,
        conflicts_with = "ssl_ca_location"
    )]
    pub ssl_ca_pem: Option<String>,

    /// PEM file of the client's certificate, for brokers that require mutual TLS.
    #[arg(
        long = "kafka-ssl-certificate-location",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        requires = "ssl_key_location"
    )]
    pub ssl_certificate_location: Option<PathBuf>,

    /// PEM file of the client certificate's private key.
    #[arg(
        long = "kafka-ssl-key-location",
        env = "KAFKA_SSL_KEY_LOCATION",
        requires = "ssl_certificate_location"
    )]
    pub ssl_key_location: Option<PathBuf>,

    /// Password of an encrypted private key; never logged.
    #[arg(
        long = "kafka-ssl-key-password",
        env = "KAFKA_SSL_KEY_PASSWORD",
        hide_env_values = true
    )]
    pub ssl_key_password: Option<Secret>,

    /// Whether the broker's certificate must name the host dialled: https (the default, as
    /// Kafka's Java clients) or none.
    #[arg(
        long = "kafka-ssl-endpoint-identification-algorithm",
        env = "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
        value_enum,
        ignore_case = true,
        default_value = "https"
    )]
    pub ssl_endpoint_identification: EndpointIdentification,
}

/// A Kafka security setting that can't work; named by its variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KafkaSecurityError {
    #[error("KAFKA_SECURITY_PROTOCOL={protocol} needs {missing}")]
    Missing {
        protocol: &'static str,
        missing: String,
    },
    #[error(
        "{setting} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use it (did you mean {hint}?)"
    )]
    Unused {
        setting: &'static str,
        protocol: &'static str,
        hint: &'static str,
    },
    #[error("{setting}={path}: {reason}")]
    File {
        setting: &'static str,
        path: String,
        reason: String,
    },
}

/// Parses [`KafkaSecurity`] alone, from variables that are not the process's environment.
#[derive(clap::Parser)]
struct SecurityOnly {
    #[command(flatten)]
    security: KafkaSecurity,
}

impl KafkaSecurity {
    /// The settings among `variables` (name, value), read as the binaries read their
    /// environment, unknown names ignored: for the operator, which connects as a job's pods do
    /// with the keys of the job's Secret. Errors name the variable, never a secret value.
    pub fn from_variables<'a>(
        variables: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        use clap::{CommandFactory, Parser};
        let command = SecurityOnly::command();
        let mut argv = vec!["kafka-security".to_owned()];
        for (name, value) in variables {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == name));
            if let Some(long) = arg.and_then(|arg| arg.get_long()) {
                argv.push(format!("--{long}={value}"));
            }
        }
        let security = SecurityOnly::try_parse_from(argv)
            .map_err(|err| {
                // clap's message quotes the value; only the setting is named.
                let setting = err
                    .get(clap::error::ContextKind::InvalidArg)
                    .map(|arg| arg.to_string())
                    .unwrap_or_default();
                format!("{} {setting}", err.kind())
            })?
            .security;
        security
            .validate_settings()
            .map_err(|err| err.to_string())?;
        Ok(security)
    }

    /// Checks that the settings fit together and the files exist, naming the variable at fault.
    pub fn validate(&self) -> Result<(), KafkaSecurityError> {
        self.validate_settings()?;
        self.validate_files()
    }

    /// Whether the settings fit together (what the protocol needs is there, nothing it would
    /// ignore is set).
    pub fn validate_settings(&self) -> Result<(), KafkaSecurityError> {
        let protocol = self.protocol.as_str();
        if self.protocol.uses_sasl() {
            let missing: Vec<&str> = [
                ("KAFKA_SASL_MECHANISM", self.sasl_mechanism.is_none()),
                (
                    "KAFKA_SASL_USERNAME",
                    self.sasl_username.as_deref().is_none_or(str::is_empty),
                ),
                (
                    "KAFKA_SASL_PASSWORD",
                    self.sasl_password
                        .as_ref()
                        .is_none_or(|p| p.expose().is_empty()),
                ),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            if !missing.is_empty() {
                return Err(KafkaSecurityError::Missing {
                    protocol,
                    missing: missing.join(", "),
                });
            }
        } else if let Some(setting) = [
            ("KAFKA_SASL_MECHANISM", self.sasl_mechanism.is_some()),
            ("KAFKA_SASL_USERNAME", self.sasl_username.is_some()),
            ("KAFKA_SASL_PASSWORD", self.sasl_password.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
        {
            let hint = if self.protocol.uses_tls() {
                "SASL_SSL"
            } else {
                "SASL_PLAINTEXT or SASL_SSL"
            };
            return Err(KafkaSecurityError::Unused {
                setting,
                protocol,
                hint,
            });
        }
        let files = self.files();
        let tls_set = files.iter().any(|(_, path)| path.is_some())
            || self.ssl_ca_pem.is_some()
            || self.ssl_key_password.is_some();
        if tls_set && !self.protocol.uses_tls() {
            let setting = files
                .iter()
                .find_map(|(name, path)| path.is_some().then_some(*name))
                .unwrap_or(if self.ssl_ca_pem.is_some() {
                    "KAFKA_SSL_CA_PEM"
                } else {
                    "KAFKA_SSL_KEY_PASSWORD"
                });
            let hint = if self.protocol.uses_sasl() {
                "SASL_SSL"
            } else {
                "SSL or SASL_SSL"
            };
            return Err(KafkaSecurityError::Unused {
                setting,
                protocol,
                hint,
            });
        }
        Ok(())
    }

    /// Whether the certificate and key files can be read.
    pub fn validate_files(&self) -> Result<(), KafkaSecurityError> {
        for (setting, path) in self.files() {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|e| KafkaSecurityError::File {
                    setting,
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// The settings that name files, with their variables.
    fn files(&self) -> [(&'static str, &Option<PathBuf>); 3] {
        [
            ("KAFKA_SSL_CA_LOCATION", &self.ssl_ca_location),
            (
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                &self.ssl_certificate_location,
            ),
            ("KAFKA_SSL_KEY_LOCATION", &self.ssl_key_location),
        ]
    }

    /// How a client connects, for messages: `SASL_SSL (SCRAM-SHA-512 as user alice)`.
    pub fn describe(&self) -> String {
        match (self.sasl_mechanism, &self.sasl_username) {
            (Some(mechanism), Some(user)) if self.protocol.uses_sasl() => {
                format!(
                    "{} ({} as user {user})",
                    self.protocol.as_str(),
                    mechanism.as_str()
                )
            }
            _ => self.protocol.as_str().to_owned(),
        }
    }

    fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_sasl() {
            if let Some(mechanism) = self.sasl_mechanism {
                config.set("sasl.mechanism", mechanism.as_str());
            }
            if let Some(user) = &self.sasl_username {
                config.set("sasl.username", user);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password.expose());
            }
        }
        if self.protocol.uses_tls() {
            if let Some(path) = &self.ssl_ca_location {
                config.set("ssl.ca.location", path.display().to_string());
            }
            if let Some(pem) = &self.ssl_ca_pem {
                config.set("ssl.ca.pem", pem);
            }
            if let Some(path) = &self.ssl_certificate_location {
                config.set("ssl.certificate.location", path.display().to_string());
            }
            if let Some(path) = &self.ssl_key_location {
                config.set("ssl.key.location", path.display().to_string());
            }
            if let Some(password) = &self.ssl_key_password {
                config.set("ssl.key.password", password.expose());
            }
            let identification = match self.ssl_endpoint_identification {
                EndpointIdentification::Https => "https",
                EndpointIdentification::None => "none",
            };
            config.set("ssl.endpoint.identification.algorithm", identification);
        }
    }
}

/// The brokers a client talks to and how: what every Kafka client of the project is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaCluster {
    pub bootstrap: String,
    pub security: KafkaSecurity,
}

/// How long one metadata request of the start-up check may take before the client's errors
/// are looked at.
const PROBE_STEP: Duration = Duration::from_secs(2);

/// Reaching the brokers failed; the message names the listener and the client's last error
/// (an authentication or TLS failure reads as such, not as a timeout).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach Kafka at {cluster}: {reason}")]
pub struct KafkaUnreachable {
    pub cluster: String,
    pub reason: String,
}

impl KafkaCluster {
    pub fn new(bootstrap: impl Into<String>, security: KafkaSecurity) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            security,
        }
    }

    /// A client configuration with the bootstrap servers and the security settings set; the
    /// caller adds what its client needs.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        self.security.apply(&mut config);
        config
    }

    /// Asks the brokers for their metadata: at start, so that a wrong password, an unknown CA or
    /// a wrong address ends the process with the reason instead of clients retrying forever.
    pub fn check_reachable(&self, timeout: Duration) -> Result<(), KafkaUnreachable> {
        self.metadata_client(timeout).map(drop)
    }

    /// A client for metadata requests, returned once the brokers answered it (see
    /// [`Self::check_reachable`]).
    pub fn metadata_client(
        &self,
        timeout: Duration,
    ) -> Result<BaseConsumer<QuietEof>, KafkaUnreachable> {
        let context = QuietEof::default();
        let unreachable = |reason: String| KafkaUnreachable {
            cluster: self.to_string(),
            reason,
        };
        let probe: BaseConsumer<QuietEof> = self
            .client_config()
            .create_with_context(context.clone())
            .map_err(|e| unreachable(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let err = match probe.fetch_metadata(None, left.min(PROBE_STEP)) {
                Ok(_) => return Ok(probe),
                Err(err) => err,
            };
            // librdkafka hands its errors to the context when the client is polled.
            let _ = probe.poll(Duration::ZERO);
            // A refused password or certificate does not heal by waiting; a broker that is
            // down (restarting, not yet started) may.
            if context.last_was_fatal() || Instant::now() >= deadline {
                let reason = context.last_error().unwrap_or_else(|| err.to_string());
                return Err(unreachable(reason));
            }
        }
    }
}

impl std::fmt::Display for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} over {}", self.bootstrap, self.security.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        security: KafkaSecurity,
    }

    fn parse(args: &[&str]) -> KafkaSecurity {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("flags parse").security
    }

    fn property(security: &KafkaSecurity, key: &str) -> Option<String> {
        KafkaCluster::new("b:9092", security.clone())
            .client_config()
            .get(key)
            .map(str::to_owned)
    }

    #[test]
    fn plaintext_by_default_sets_nothing_but_the_protocol() {
        let security = parse(&[]);
        assert_eq!(security.validate(), Ok(()));
        assert_eq!(
            property(&security, "security.protocol").as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(
            property(&security, "bootstrap.servers").as_deref(),
            Some("b:9092")
        );
        assert_eq!(property(&security, "sasl.mechanism"), None);
        assert_eq!(
            property(&security, "ssl.endpoint.identification.algorithm"),
            None
        );
    }

    #[test]
    fn sasl_ssl_with_scram_maps_to_librdkafka_properties_and_hides_the_password() {
        let ca = std::env::temp_dir().join("trendstream-kafka-security-test-ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let security = parse(&[
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "scram-sha-512",
            "--kafka-sasl-username",
            "alice",
            "--kafka-sasl-password",
            "hunter2-secret",
            "--kafka-ssl-ca-location",
            ca.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(security.validate(), Ok(()));
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2-secret"),
            ("ssl.ca.location", ca.to_str().expect("utf-8 path")),
            ("ssl.endpoint.identification.algorithm", "https"),
        ] {
            assert_eq!(property(&security, key).as_deref(), Some(value), "{key}");
        }
        assert!(!format!("{security:?}").contains("hunter2"));
        let cluster = KafkaCluster::new("broker:9094", security);
        assert_eq!(
            cluster.to_string(),
            "broker:9094 over SASL_SSL (SCRAM-SHA-512 as user alice)"
        );
    }

    #[test]
    fn sasl_without_credentials_names_what_is_missing() {
        let security = parse(&[
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-username",
            "alice",
        ]);
        assert_eq!(
            security.validate().map_err(|e| e.to_string()),
            Err(
                "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_PASSWORD"
                    .into()
            )
        );
    }

    #[test]
    fn settings_the_protocol_would_ignore_are_refused() {
        let sasl_on_plaintext = parse(&["--kafka-sasl-username", "alice"]);
        assert_eq!(
            sasl_on_plaintext.validate().map_err(|e| e.to_string()),
            Err(
                "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use it \
                 (did you mean SASL_PLAINTEXT or SASL_SSL?)"
                    .into()
            )
        );
        let ca_on_sasl_plaintext = parse(&[
            "--kafka-security-protocol",
            "SASL_PLAINTEXT",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "alice",
            "--kafka-sasl-password",
            "pw",
            "--kafka-ssl-ca-pem",
            "-----BEGIN CERTIFICATE-----",
        ]);
        assert!(matches!(
            ca_on_sasl_plaintext.validate(),
            Err(KafkaSecurityError::Unused {
                setting: "KAFKA_SSL_CA_PEM",
                hint: "SASL_SSL",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let security = parse(&[
            "--kafka-security-protocol",
            "SSL",
            "--kafka-ssl-ca-location",
            "/nonexistent/ca.pem",
        ]);
        let err = security.validate().expect_err("missing file").to_string();
        assert!(
            err.starts_with("KAFKA_SSL_CA_LOCATION=/nonexistent/ca.pem: "),
            "{err}"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let mut argv = vec!["test", "--kafka-security-protocol", "SSL"];
        argv.extend(["--kafka-ssl-certificate-location", "/tmp/c.pem"]);
        assert!(Flags::try_parse_from(argv).is_err());
    }

    #[test]
    fn the_password_is_not_shown_in_help() {
        // clap prints an environment variable's value in --help unless told not to.
        let help = <Flags as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("KAFKA_SASL_PASSWORD"));
        for hidden in [
            "KAFKA_SASL_PASSWORD",
            "KAFKA_SSL_KEY_PASSWORD",
            "KAFKA_SSL_CA_PEM",
        ] {
            let arg = <Flags as clap::CommandFactory>::command()
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == hidden))
                .map(|a| a.is_hide_env_values_set());
            assert_eq!(arg, Some(true), "{hidden}");
        }
    }

    #[test]
    fn a_secrets_keys_read_as_the_environment_is() {
        let security = KafkaSecurity::from_variables([
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "alice"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("KAFKA_SSL_CA_PEM", "-----BEGIN CERTIFICATE-----\n"),
            ("SOMETHING_ELSE", "ignored"),
        ])
        .expect("valid settings");
        assert_eq!(security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(security.sasl_password, Some(Secret::new("hunter2-secret")));
        assert_eq!(
            security.ssl_ca_pem.as_deref(),
            Some("-----BEGIN CERTIFICATE-----\n")
        );
        let refused = KafkaSecurity::from_variables([("KAFKA_SECURITY_PROTOCOL", "hunter2")])
            .expect_err("not a protocol");
        assert!(refused.contains("--kafka-security-protocol"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!(KafkaSecurity::from_variables([("KAFKA_SASL_USERNAME", "alice")]).is_err());
    }
}
