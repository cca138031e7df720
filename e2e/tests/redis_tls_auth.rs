//! Redis as Memorystore runs it with AUTH and in-transit encryption: TLS only, a password, a
//! server certificate from a CA of its own. A redis-server of the test's own (TLS port only,
//! `requirepass`, certificates made with openssl, on 127.0.0.1, stopped by its PID) is reached by
//! feature-api (async client) and by a processor (the runtime's Redis writer) with
//! `REDIS_PASSWORD` and `REDIS_CA_CERT_FILE`; without either they are refused and say so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use trendstream_e2e::feature_api::{FeatureApi, apply, fixture_writes, fixtures, free_port};
use trendstream_e2e::kafka::{Outgoing, create_topic, produce_records};
use trendstream_e2e::process::{Running, workspace_binary};
use trendstream_e2e::processor::Deployment;
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::feature_store::KeySpace;

const PASSWORD: &str = "s3cret-from-a-secret";
/// A password a user left in `REDIS_URL`.
const URL_PASSWORD: &str = "url-s3cret";

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 signed by it; returns the CA certificate's path.
fn certificates(dir: &Path) -> anyhow::Result<PathBuf> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=trendstream-test-ca",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    )?;
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    Ok(dir.join("ca.crt"))
}

struct SecureRedis {
    _process: Running,
    port: u16,
    ca: PathBuf,
}

impl SecureRedis {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca = certificates(dir)?;
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command.current_dir(dir).args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let log = dir.join("redis.log");
        let mut process = Running::start(command, log.clone())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)?.contains("Ready to accept connections") {
            process.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server (TLS) did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            _process: process,
            port,
            ca,
        })
    }

    /// The URL a StreamJob would hold: no password in it.
    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let url = format!("rediss://:{PASSWORD}@127.0.0.1:{}", self.port);
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&self.ca)?),
        };
        let client = redis::Client::build_with_tls(url, certificates)?;
        Ok(client.get_multiplexed_async_connection().await?)
    }
}

async fn status(http: &reqwest::Client, url: &str) -> anyhow::Result<StatusCode> {
    Ok(http.get(url).send().await?.status())
}

#[tokio::test]
async fn feature_api_reaches_redis_with_auth_and_tls_and_is_refused_without() -> anyhow::Result<()>
{
    let dir = std::env::temp_dir()
        .join("trendstream-e2e")
        .join(unique_name("redis-tls-api"));
    let redis = SecureRedis::start(&dir).await?;
    let keys = KeySpace::new("tls");
    let data = fixtures();
    apply(
        &mut redis.connection().await?,
        &fixture_writes(&keys, &data)?,
    )
    .await?;

    let http = reqwest::Client::new();
    let ca = redis.ca.to_string_lossy().into_owned();
    let api = FeatureApi::start(
        &redis.url(),
        keys.prefix(),
        &["--redis-password", PASSWORD, "--redis-ca-cert-file", &ca],
    )
    .await?;
    assert_eq!(
        status(&http, &api.url("/api/v1/users/user-1/features")).await?,
        StatusCode::OK
    );
    assert_eq!(
        status(&http, &api.url("/health/ready")).await?,
        StatusCode::OK
    );

    // Without the password, or without the CA that signed the server: not ready, 503.
    for (what, extra) in [
        ("no password", vec!["--redis-ca-cert-file", ca.as_str()]),
        ("no CA", vec!["--redis-password", PASSWORD]),
    ] {
        let refused = FeatureApi::start(&redis.url(), keys.prefix(), &extra).await?;
        assert_eq!(
            status(&http, &refused.url("/api/v1/users/user-1/features")).await?,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}"
        );
        assert_eq!(
            status(&http, &refused.url("/health/ready")).await?,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}"
        );
    }

    // A CA file without a TLS URL is a configuration error at start, naming the variable.
    let output = Command::new(trendstream_e2e::process::workspace_binary("feature-api")?)
        .args([
            "--redis-url",
            "redis://127.0.0.1:1",
            "--redis-ca-cert-file",
            &ca,
        ])
        .env("TRENDSTREAM_HTTP_ADDR", "127.0.0.1:0")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with a CA and no TLS");
    assert!(stderr.contains("REDIS_CA_CERT_FILE"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_processor_writes_to_redis_with_auth_and_tls() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let name = unique_name("redis-tls");
    let dir = std::env::temp_dir().join("trendstream-e2e").join(&name);
    let redis = SecureRedis::start(&dir).await?;
    let input = format!("{name}-in");
    for topic in [&input, &format!("{name}-out"), &format!("{name}-dlq")] {
        create_topic(&bootstrap, topic, 2).await?;
    }
    let records: Vec<Outgoing> = (0..970)
        .map(|i| Outgoing {
            key: Some(format!("user-{}", i % 97)),
            value: format!("{{\"ts\":{}}}", 1_700_000_000_000_i64 + i).into_bytes(),
            partition: None,
        })
        .collect();
    produce_records(&bootstrap, &input, &records)?;
    // A password in the URL as well (REDIS_PASSWORD replaces it): neither may reach a log
    // line or `--help`.
    let url_with_password =
        redis
            .url()
            .replacen("rediss://", &format!("rediss://:{URL_PASSWORD}@"), 1);
    let deployment = Deployment::new("trendstream-example-counter", &name)?
        .with("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .with("KAFKA_INPUT_TOPICS", &input)
        .with("KAFKA_OUTPUT_TOPIC", format!("{name}-out"))
        .with("KAFKA_DLQ_TOPIC", format!("{name}-dlq"))
        .with("REDIS_URL", &url_with_password)
        .with("REDIS_PASSWORD", PASSWORD)
        .with("REDIS_CA_CERT_FILE", redis.ca.to_string_lossy());
    let help = Command::new(workspace_binary("trendstream-example-counter")?)
        .arg("--help")
        .env("REDIS_URL", &url_with_password)
        .env("REDIS_PASSWORD", PASSWORD)
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("REDIS_URL"), "{help}");
    let replica = deployment.start("redis-tls-0").await?;
    let no_secrets = |what: &str, text: &str| {
        for secret in [PASSWORD, URL_PASSWORD] {
            assert!(!text.contains(secret), "{what} shows a password: {text}");
        }
    };
    no_secrets("--help", &help);

    let mut connection = redis.connection().await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let keys: Vec<String> = (0..97).map(|k| format!("counter:user-{k}")).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await?;
        if values.iter().all(|v| v.as_deref() == Some("10")) {
            let log = std::fs::read_to_string(&replica.process.log)?;
            assert!(log.contains("configuration loaded"), "{log}");
            no_secrets("the log", &log);
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the counters did not all reach 10 over TLS within 90 s: {:?}",
            &values[..5]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
