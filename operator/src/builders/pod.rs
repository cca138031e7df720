//! The pod template every replica runs, with its configuration: the ServiceAccount (Workload
//! Identity), the ConfigMap of files, and the environment the runtime reads its typed config from.

use super::metadata::JobMeta;
use super::{BuildError, Defaults};
use crate::crd::{ApiSpec, ProcessorKind, RedisSpec, StreamJob, UpgradeMode};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvFromSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource,
    SecretKeySelector, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const HTTP_PORT: i32 = 9090;
pub const STATE_MOUNT: &str = "/var/lib/trendstream";
const CONFIG_MOUNT: &str = "/etc/trendstream";
/// Where the Redis CA Secret is mounted; its key `ca.crt` is the file the services read.
const REDIS_CA_MOUNT: &str = "/etc/trendstream-redis-ca";
const REDIS_CA_KEY: &str = "ca.crt";
const FRAUD_RULES_KEY: &str = "fraud-rules.yaml";
/// Pod-template annotation holding a hash of the ConfigMap, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "trendstream.io/config-hash";
const WORKLOAD_IDENTITY_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// Distroless "nonroot".
const NON_ROOT_ID: i64 = 65532;

pub(super) fn service_account(meta: &JobMeta, job: &StreamJob) -> ServiceAccount {
    let mut metadata = meta.child(meta.name.clone());
    if let Some(identity) = &job.spec.identity {
        metadata.annotations = Some(BTreeMap::from([(
            WORKLOAD_IDENTITY_ANNOTATION.to_owned(),
            identity.gcp_service_account.clone(),
        )]));
    }
    ServiceAccount {
        metadata,
        // Workload Identity works through the metadata server; no token needs mounting.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

pub(super) fn config_map(meta: &JobMeta, job: &StreamJob) -> ConfigMap {
    let mut data = BTreeMap::new();
    // Only fraud-detector reads the rules file.
    if job.spec.processor == ProcessorKind::FraudDetector
        && let Some(rules) = &job.spec.config.fraud_rules
    {
        data.insert(FRAUD_RULES_KEY.to_owned(), rules.clone());
    }
    ConfigMap {
        metadata: meta.child(meta.name.clone()),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The pod's environment. Every variable is one the processor's binary reads
/// (`operator/tests/env_contract.rs` checks it for every processor), so a setting is never
/// written where nothing acts on it.
fn environment(job: &StreamJob, namespace: &str, name: &str, partitions: i32) -> Vec<EnvVar> {
    let spec = &job.spec;
    let mut vars = vec![
        env("TRENDSTREAM_HTTP_ADDR", format!("0.0.0.0:{HTTP_PORT}")),
        env("TRENDSTREAM_LOG_FORMAT", "json"),
    ];
    if spec.processor.is_stateful() {
        vars.extend(runtime_environment(job, namespace, name));
    }
    match spec.processor {
        ProcessorKind::SessionAggregator => {
            vars.push(env("SESSION_GAP", spec.config.session_gap.clone()));
        }
        ProcessorKind::RevenueCalculator => vars.extend([
            env("WINDOW_SIZE", spec.config.window_size.clone()),
            env("KAFKA_PARTITIONS", partitions.to_string()),
        ]),
        ProcessorKind::FraudDetector if spec.config.fraud_rules.is_some() => vars.push(env(
            "FRAUD_RULES_FILE",
            format!("{CONFIG_MOUNT}/{FRAUD_RULES_KEY}"),
        )),
        _ => {}
    }
    if let Some(redis) = &spec.redis {
        vars.extend(redis_environment(redis, spec.processor));
    }
    if let (ProcessorKind::FeatureApi, Some(api)) = (spec.processor, &spec.api) {
        vars.extend(api_environment(api));
    }
    vars
}

/// feature-api's access settings; the token comes from its Secret, never from the spec.
fn api_environment(api: &ApiSpec) -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = [
        optional(
            "FEATURE_API_MAX_CONCURRENT_REQUESTS",
            api.max_concurrent_requests.map(|n| n.to_string()).as_ref(),
        ),
        optional("FEATURE_API_REQUEST_TIMEOUT", api.request_timeout.as_ref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(secret) = &api.auth_secret_ref {
        vars.push(secret_env(
            "FEATURE_API_AUTH_TOKEN",
            &secret.name,
            &secret.key,
        ));
    }
    vars
}

/// A variable whose value is a Secret's key (the pod does not start without it).
fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn optional(name: &str, value: Option<&String>) -> Option<EnvVar> {
    value.map(|value| env(name, value.clone()))
}

/// What `services/runtime` reads (its `RuntimeOptions`): the stream processors only.
fn runtime_environment(job: &StreamJob, namespace: &str, name: &str) -> Vec<EnvVar> {
    let spec = &job.spec;
    let kafka = &spec.kafka;
    let inputs: Vec<&str> = if kafka.input_topics.is_empty() {
        spec.processor.default_input_topics().to_vec()
    } else {
        kafka.input_topics.iter().map(String::as_str).collect()
    };
    let output = kafka
        .output_topic
        .as_deref()
        .or(spec.processor.default_output_topic())
        .unwrap_or_default();
    let group = kafka
        .consumer_group
        .clone()
        .unwrap_or_else(|| format!("{namespace}.{name}"));
    let mut vars = vec![
        env_from_field("POD_NAME", "metadata.name"),
        env(
            "KAFKA_BOOTSTRAP_SERVERS",
            kafka.bootstrap_servers.clone().unwrap_or_default(),
        ),
        env("KAFKA_INPUT_TOPICS", inputs.join(",")),
        env("KAFKA_OUTPUT_TOPIC", output),
        env("KAFKA_CONSUMER_GROUP", group),
        env("STATE_DIR", format!("{STATE_MOUNT}/state")),
        env("CHECKPOINT_INTERVAL", spec.checkpoint.interval.clone()),
        env("CHECKPOINT_RETAINED", spec.checkpoint.retained.to_string()),
        env(
            "MAX_OUT_OF_ORDERNESS",
            spec.config.max_out_of_orderness.clone(),
        ),
        env("ALLOWED_LATENESS", spec.config.allowed_lateness.clone()),
    ];
    vars.extend(upgrade_environment(spec.upgrade_mode));
    vars.extend(
        [
            optional("IDLE_TIMEOUT", spec.config.idle_timeout.as_ref()),
            optional("MAX_FUTURE_SKEW", spec.config.max_future_skew.as_ref()),
            optional("KAFKA_DLQ_TOPIC", kafka.dlq_topic.as_ref()),
            optional("KAFKA_LATE_TOPIC", kafka.late_topic.as_ref()),
        ]
        .into_iter()
        .flatten(),
    );
    if let Some(gcs) = spec.checkpoint.gcs.as_ref().filter(|g| g.enabled) {
        vars.push(env("GCS_BUCKET", gcs.bucket.clone().unwrap_or_default()));
        vars.push(env(
            "GCS_PREFIX",
            gcs.prefix
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{name}")),
        ));
        vars.extend(optional("GCS_ENDPOINT", gcs.endpoint.as_ref()));
    }
    vars
}

/// `UPGRADE_MODE`, and for `stateless` the epoch that tells a new pod template (state starts
/// empty) from a restart of the current one (state is kept): the StatefulSet controller's
/// revision of the template, which changes with the template and only with it.
fn upgrade_environment(mode: UpgradeMode) -> Vec<EnvVar> {
    match mode {
        UpgradeMode::LastState => vec![env("UPGRADE_MODE", "last-state")],
        UpgradeMode::Stateless => vec![
            env("UPGRADE_MODE", "stateless"),
            env_from_field(
                "UPGRADE_EPOCH",
                "metadata.labels['controller-revision-hash']",
            ),
        ],
    }
}

/// The Redis settings; the runtime and feature-api read the connection, every processor but
/// cdc-processor (which writes no Redis keys) the key prefix.
fn redis_environment(redis: &RedisSpec, processor: ProcessorKind) -> Vec<EnvVar> {
    let mut vars = vec![env("REDIS_URL", redis.url.clone())];
    if let Some(secret) = &redis.password_secret_ref {
        vars.push(secret_env("REDIS_PASSWORD", &secret.name, "password"));
    }
    if redis.ca_secret_ref.is_some() {
        vars.push(env(
            "REDIS_CA_CERT_FILE",
            format!("{REDIS_CA_MOUNT}/{REDIS_CA_KEY}"),
        ));
    }
    if processor != ProcessorKind::CdcProcessor {
        vars.extend(optional("REDIS_KEY_PREFIX", redis.key_prefix.as_ref()));
    }
    vars
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("250m".into())),
            ("memory".to_owned(), Quantity("256Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("1Gi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

pub(super) fn template(
    meta: &JobMeta,
    job: &StreamJob,
    partitions: i32,
    defaults: &Defaults,
    config_map: &ConfigMap,
) -> Result<PodTemplateSpec, BuildError> {
    let spec = &job.spec;
    let image = spec.image.clone().unwrap_or_else(|| {
        format!(
            "{}/{}:{}",
            defaults.image_registry,
            spec.processor.name(),
            defaults.image_tag
        )
    });
    if image.trim().is_empty() {
        return Err(BuildError::InvalidSpec {
            field: "image",
            message: "must not be empty".into(),
        });
    }
    let mut mounts = vec![
        mount("tmp", "/tmp", false),
        mount("config", CONFIG_MOUNT, true),
    ];
    if spec.processor.is_stateful() {
        mounts.push(mount("state", STATE_MOUNT, false));
    }
    let redis_ca = spec.redis.as_ref().and_then(|r| r.ca_secret_ref.as_ref());
    if redis_ca.is_some() {
        mounts.push(mount("redis-ca", REDIS_CA_MOUNT, true));
    }
    let container = Container {
        name: spec.processor.name().to_owned(),
        image: Some(image),
        env: Some(environment(job, &meta.namespace, &meta.name, partitions)),
        env_from: spec.kafka.security_secret_ref.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.name.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/health/live", 10, 3)),
        readiness_probe: Some(probe("/health/ready", 5, 3)),
        // Restoring a partition from GCS can take a while; don't kill the pod meanwhile.
        startup_probe: Some(probe("/health/live", 5, 60)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut volumes = vec![
        Volume {
            name: "tmp".into(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: meta.name.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    if let Some(secret) = redis_ca {
        volumes.push(Volume {
            name: "redis-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: REDIS_CA_KEY.into(),
                    path: REDIS_CA_KEY.into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(meta.labels.clone()),
            annotations: Some(BTreeMap::from([
                (CONFIG_HASH_ANNOTATION.to_owned(), config_hash(config_map)),
                ("prometheus.io/scrape".to_owned(), "true".to_owned()),
                ("prometheus.io/port".to_owned(), HTTP_PORT.to_string()),
                ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
            ])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(meta.name.clone()),
            automount_service_account_token: Some(false),
            // Finish the batch, commit and checkpoint (DESIGN.md "Graceful shutdown").
            termination_grace_period_seconds: Some(60),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(NON_ROOT_ID),
                run_as_group: Some(NON_ROOT_ID),
                fs_group: Some(NON_ROOT_ID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    })
}
