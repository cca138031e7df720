//! The `StreamJob` custom resource (trendstream.io/v1alpha1).
//!
//! The schema is generated from these types (schemars); cross-field rules are CEL validations
//! that the API server enforces, so an invalid job is rejected at `kubectl apply` with a message
//! naming the field, before the operator ever sees it. Defaults live in the schema too, so
//! `kubectl get -o yaml` shows what the operator will act on.

use crate::duration;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use trendstream_events::feature_store::ID_PATTERN;

/// A Kafka topic name: the broker's legal characters and length.
const TOPIC_PATTERN: &str = r"^[a-zA-Z0-9._-]{1,249}$";

/// A stream processing job: one processor kind, deployed as a fleet that scales with the
/// partitions of its input topics.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "trendstream.io",
    version = "v1alpha1",
    kind = "StreamJob",
    namespaced,
    status = "StreamJobStatus",
    shortname = "sj",
    category = "trendstream",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 52").message("metadata.name must be at most 52 characters: StatefulSet pods add a suffix and Kubernetes labels allow 63"),
    scale = r#"{"specReplicasPath":".spec.parallelism.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Processor","type":"string","jsonPath":".spec.processor"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Replicas","type":"string","jsonPath":".status.replicasSummary"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.consumerLag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.processor == oldSelf.processor")
        .message("processor is immutable: create a new StreamJob for another processor")
        .field_path(".processor"),
    validation = Rule::new("!has(self.autoscaling) || !has(self.autoscaling.maxReplicas) || !has(self.kafka.partitions) || self.autoscaling.maxReplicas <= self.kafka.partitions")
        .message("autoscaling.maxReplicas must not exceed kafka.partitions: a replica without a partition has nothing to do")
        .field_path(".autoscaling.maxReplicas"),
    validation = Rule::new("!has(self.parallelism.replicas) || !has(self.kafka.partitions) || self.processor == 'feature-api' || self.parallelism.replicas <= self.kafka.partitions")
        .message("parallelism.replicas must not exceed kafka.partitions")
        .field_path(".parallelism.replicas"),
    validation = Rule::new("self.processor == 'feature-api' || has(self.kafka.bootstrapServers)")
        .message("kafka.bootstrapServers is required for stream processors")
        .field_path(".kafka.bootstrapServers"),
    validation = Rule::new("self.processor == 'feature-api' || has(self.redis) || self.processor == 'cdc-processor'")
        .message("redis is required for processors that write features, alerts or revenue to Redis")
        .field_path(".redis"),
    validation = Rule::new("self.processor != 'feature-api' || has(self.redis)")
        .message("redis is required for feature-api")
        .field_path(".redis"),
    validation = Rule::new("self.processor == 'feature-api' || !has(self.api)")
        .message("api: only feature-api serves an API")
        .field_path(".api"),
    validation = Rule::new("self.processor != 'cdc-processor' || !has(self.redis) || !has(self.redis.keyPrefix)")
        .message("redis.keyPrefix: cdc-processor writes no Redis keys")
        .field_path(".redis.keyPrefix"),
    validation = Rule::new("self.processor != 'feature-api' || (!has(self.kafka.dlqTopic) && !has(self.kafka.lateTopic) && !has(self.config.idleTimeout))")
        .message("kafka.dlqTopic, kafka.lateTopic and config.idleTimeout are settings of the stream processors; feature-api reads no Kafka")
        .field_path(".processor")
)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSpec {
    /// Which TrendStream processor runs this job.
    pub processor: ProcessorKind,

    /// Container image; the operator's default for the processor when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Kafka connection, topics and consumer group.
    #[serde(default)]
    pub kafka: KafkaSpec,

    /// How many replicas run: derived from the partition count, or fixed.
    #[serde(default)]
    pub parallelism: ParallelismSpec,

    /// Horizontal autoscaling on consumer lag and CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Where and how often state is checkpointed.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,

    /// GCP identity for GKE Workload Identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,

    /// Redis feature store the processor writes to (or, for feature-api, reads from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,

    /// feature-api's HTTP API: who may call it, how much at once, how long a request may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSpec>,

    /// Who may reach the pods' HTTP port (metrics, probes and feature-api's API): the operator
    /// gives every job a NetworkPolicy admitting its own namespace and the ones listed here.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// CPU and memory requests and limits of each replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Processor-specific settings.
    #[serde(default)]
    pub config: ProcessorConfig,

    /// Scale to zero and keep state; set back to false to resume from the last checkpoint.
    #[serde(default)]
    pub suspend: bool,

    /// How a change of the pod template rolls out (`UPGRADE_MODE`): `last-state` keeps the
    /// state on the volumes (and in GCS) and resumes from the committed offsets; `stateless`
    /// starts the new version with empty state from the end of its input (docs/upgrades.md).
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,

    /// How a change of the pod template is watched as it rolls out, and undone when it fails
    /// (docs/upgrades.md "Stuck rollouts and rollback").
    #[serde(default)]
    pub rollout: RolloutSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// How long a rollout of a new pod template may go without a further pod of the new
    /// template becoming ready before it is reported stuck (phase Degraded, reason
    /// RolloutStuck).
    #[serde(default = "default_readiness_timeout")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub readiness_timeout: String,

    /// When a rollout is stuck, run the last spec that ran with every replica ready instead
    /// (status.lastStableSpec), until the spec changes again. The spec itself is not changed.
    #[serde(default)]
    pub rollback_on_failure: bool,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            readiness_timeout: default_readiness_timeout(),
            rollback_on_failure: false,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessorKind {
    CdcProcessor,
    SessionAggregator,
    FraudDetector,
    RevenueCalculator,
    FeatureApi,
}

impl ProcessorKind {
    pub const ALL: [ProcessorKind; 5] = [
        Self::CdcProcessor,
        Self::SessionAggregator,
        Self::FraudDetector,
        Self::RevenueCalculator,
        Self::FeatureApi,
    ];

    /// The name used for images, labels and binaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::CdcProcessor => "cdc-processor",
            Self::SessionAggregator => "session-aggregator",
            Self::FraudDetector => "fraud-detector",
            Self::RevenueCalculator => "revenue-calculator",
            Self::FeatureApi => "feature-api",
        }
    }

    /// Stream processors keep partition-owned state (StatefulSet with volumes); feature-api is
    /// a stateless server (Deployment).
    pub fn is_stateful(self) -> bool {
        !matches!(self, Self::FeatureApi)
    }

    /// The topics a processor reads when the job names none (DESIGN.md "Data flow").
    pub fn default_input_topics(self) -> &'static [&'static str] {
        match self {
            Self::CdcProcessor => &[
                "shop.public.orders",
                "shop.public.order_items",
                "shop.public.inventory",
            ],
            Self::SessionAggregator => &["clickstream"],
            Self::FraudDetector | Self::RevenueCalculator => &["orders"],
            Self::FeatureApi => &[],
        }
    }

    /// The topic a processor writes when the job names none.
    pub fn default_output_topic(self) -> Option<&'static str> {
        match self {
            Self::CdcProcessor => Some("orders"),
            Self::SessionAggregator => Some("sessions"),
            Self::FraudDetector => Some("fraud-alerts"),
            Self::RevenueCalculator => Some("revenue-metrics"),
            Self::FeatureApi => None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    Stateless,
    #[default]
    LastState,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated bootstrap servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub bootstrap_servers: Option<String>,

    /// Input topics; the processor's defaults when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_topics: Vec<String>,

    /// Output topic; the processor's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_topic: Option<String>,

    /// Consumer group (and transactional id prefix); `<namespace>.<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,

    /// Partition count of the input topics; discovered from the broker when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: Option<i32>,

    /// Dead-letter topic for records that cannot be decoded or are invalid (`KAFKA_DLQ_TOPIC`);
    /// `dlq.<processor>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TOPIC_PATTERN))]
    pub dlq_topic: Option<String>,

    /// Topic of records later than the allowed lateness (`KAFKA_LATE_TOPIC`); `late-events`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TOPIC_PATTERN))]
    pub late_topic: Option<String>,

    /// Secret with the client's security settings (keys become KAFKA_* environment variables:
    /// e.g. KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_secret_ref: Option<SecretRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Secret whose key (`token` by default) holds the bearer token every request but the
    /// probes and `/metrics` must carry (`FEATURE_API_AUTH_TOKEN`; 16 characters at least).
    /// No authentication when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretKeyRef>,

    /// Requests each replica handles at once; more are answered 503 at once
    /// (`FEATURE_API_MAX_CONCURRENT_REQUESTS`; 256 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_concurrent_requests: Option<i32>,

    /// Longest a request may take before it is answered 503 (`FEATURE_API_REQUEST_TIMEOUT`;
    /// 2s when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub request_timeout: Option<String>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Restrict ingress to the HTTP port from the job's namespace and `allowFromNamespaces`.
    /// When false the job's NetworkPolicy admits every source (it still exists, so turning
    /// this on and off is one field).
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Namespaces besides the job's own whose pods may reach the HTTP port (Prometheus's
    /// namespace, an ingress controller's for feature-api).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from_namespaces: Vec<String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_from_namespaces: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.partitionsPerReplica))")
    .message("set either parallelism.replicas or parallelism.partitionsPerReplica, not both"))]
pub struct ParallelismSpec {
    /// Each replica owns this many partitions; replicas = ceil(partitions / partitionsPerReplica).
    /// The default (when neither field is set) is 1: one replica per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub partitions_per_replica: Option<i32>,

    /// A fixed replica count (also what `kubectl scale` sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas")
    .message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
    .field_path(".minReplicas"))]
pub struct AutoscalingSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,

    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,

    /// Upper bound; never more than the partition count (the operator caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,

    /// Target consumer lag (records) per replica.
    #[serde(default = "default_lag_per_replica")]
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,

    /// Target average CPU utilisation, percent of requests.
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 1, max = 100))]
    pub cpu_utilization: i32,

    /// How long load must stay low before scaling down.
    #[serde(default = "default_stabilization")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub scale_down_stabilization: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Time between checkpoints.
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub interval: String,

    /// Size of each replica's state volume.
    #[serde(default = "default_volume_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub volume_size: String,

    /// StorageClass of the state volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// Upload checkpoints to GCS so a partition can move to a replica without its volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsSpec>,

    /// Completed checkpoints kept (locally and in GCS).
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 1000))]
    pub retained: i32,

    /// What happens to the state volumes when the job is deleted.
    #[serde(default)]
    pub on_delete: OnDelete,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: default_checkpoint_interval(),
            volume_size: default_volume_size(),
            storage_class_name: None,
            gcs: None,
            retained: default_retention(),
            on_delete: OnDelete::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || (has(self.bucket) && size(self.bucket) > 0)")
    .message("checkpoint.gcs.bucket is required when GCS checkpoints are enabled")
    .field_path(".bucket"))]
pub struct GcsSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"))]
    pub bucket: Option<String>,
    /// Object prefix; `<namespace>/<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// GCS JSON API endpoint (`GCS_ENDPOINT`), e.g. an emulator in a local cluster; Google's,
    /// with Workload Identity credentials, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^/\s]+(/\S*)?$"))]
    pub endpoint: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnDelete {
    /// Keep the state volumes (and GCS checkpoints) after the job is deleted.
    #[default]
    Retain,
    /// Delete the state volumes with the job.
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// GCP service account the pods act as through GKE Workload Identity.
    #[schemars(regex(
        pattern = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
    ))]
    pub gcp_service_account: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || self.url.startsWith('rediss://')")
    .message("caSecretRef needs a rediss:// (TLS) url")
    .field_path(".caSecretRef"))]
pub struct RedisSpec {
    /// redis:// or rediss:// URL (without the password when a Secret provides it).
    #[schemars(regex(pattern = r"^rediss?://.+"))]
    pub url: String,
    /// Secret whose key `password` holds the Redis AUTH password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretRef>,
    /// Secret whose key `ca.crt` holds the PEM CA certificate of a TLS server no public CA
    /// signed (Memorystore's in-transit encryption: its `server_ca_certs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
    /// Prefix of every Redis key read or written (`REDIS_KEY_PREFIX`), so jobs of several
    /// tenants can share one Redis; `ts` when absent. Not for cdc-processor (no Redis keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub key_prefix: Option<String>,
}

/// Settings of the processors; each reads the ones that concern it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorConfig {
    /// Inactivity gap closing a session (session-aggregator).
    #[serde(default = "default_session_gap")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub session_gap: String,
    /// Bound on event-time disorder before the watermark passes an event.
    #[serde(default = "default_out_of_orderness")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub max_out_of_orderness: String,
    /// How long after the watermark a window still accepts late events.
    #[serde(default = "default_allowed_lateness")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub allowed_lateness: String,
    /// A record whose event time is further than this ahead of the wall clock goes to the
    /// dead-letter topic instead of moving its partition's watermark (`MAX_FUTURE_SKEW`); the
    /// runtime's 1h when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub max_future_skew: Option<String>,
    /// A partition without records this long stops holding event time back (`IDLE_TIMEOUT`);
    /// the runtime's 30s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub idle_timeout: Option<String>,
    /// Tumbling window size (revenue-calculator).
    #[serde(default = "default_window_size")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub window_size: String,
    /// Fraud rules as YAML or JSON (fraud-detector); the built-in rules when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraud_rules: Option<String>,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            session_gap: default_session_gap(),
            max_out_of_orderness: default_out_of_orderness(),
            allowed_lateness: default_allowed_lateness(),
            max_future_skew: None,
            idle_timeout: None,
            window_size: default_window_size(),
            fraud_rules: None,
        }
    }
}

/// What the operator observed, as `kubectl get streamjob` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/desired (partitions)`, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Label selector of the pods, for the scale subresource (and the HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Records behind the end of the input topics, summed over partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<i64>,
    /// Time of the newest completed checkpoint, as reported by the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<String>,
    /// The rollout of a new pod template in progress (or stuck), while there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Set while the operator runs the last stable spec instead of the job's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// The newest spec that ran with every replica ready (JSON of `.spec`): what a rollback
    /// returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,
    /// The job's generation whose spec `lastStableSpec` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_generation: Option<i64>,
}

/// A rollout of a new pod template: the StatefulSet's update revision and when it last made
/// progress (a further pod moved to it, after the previous one became ready).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The job's generation when the rollout was first seen.
    pub generation: i64,
    /// The StatefulSet's update revision (the pods' `controller-revision-hash`).
    pub revision: String,
    /// Pods at that revision when progress was last seen.
    pub updated_replicas: i32,
    /// When the rollout started or last made progress.
    pub progress_time: Time,
    /// Why the rollout is stuck; once set it stays until the rollout ends or the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<String>,
}

/// The operator runs `toGeneration`'s spec (status.lastStableSpec) instead of the job's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// The job's generation whose rollout got stuck: the rollback lasts while the job has it.
    pub from_generation: i64,
    /// The generation of the stable spec now running.
    pub to_generation: i64,
    /// The stuck revision, whose pods that are not ready are deleted so the stable ones replace them.
    pub from_revision: String,
    /// Why: the stuck rollout's message.
    pub reason: String,
    /// When the operator rolled back.
    pub time: Time,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Deploying,
    Running,
    Scaling,
    Suspended,
    Degraded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Deploying => "Deploying",
            Self::Running => "Running",
            Self::Scaling => "Scaling",
            Self::Suspended => "Suspended",
            Self::Degraded => "Degraded",
            Self::Failed => "Failed",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_min_replicas() -> i32 {
    1
}
fn default_lag_per_replica() -> i64 {
    10_000
}
fn default_cpu_target() -> i32 {
    75
}
fn default_stabilization() -> String {
    "5m".into()
}
fn default_checkpoint_interval() -> String {
    "60s".into()
}
fn default_volume_size() -> String {
    "10Gi".into()
}
fn default_retention() -> i32 {
    5
}
fn default_session_gap() -> String {
    "30m".into()
}
fn default_out_of_orderness() -> String {
    "30s".into()
}
fn default_allowed_lateness() -> String {
    "0s".into()
}
fn default_window_size() -> String {
    "1m".into()
}
fn default_readiness_timeout() -> String {
    "5m".into()
}

/// The CustomResourceDefinition as YAML, as `crdgen` writes it to `crds/streamjob.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let body = serde_yaml::to_string(&StreamJob::crd())?;
    Ok(format!(
        "# Generated by `cargo run -p trendstream-operator --bin crdgen > crds/streamjob.yaml`; do not edit.\n{body}"
    ))
}
