//! "A field in the CRD is a promise": every environment variable the operator writes into a
//! processor's pod is one that processor's binary reads. For each processor, a job that sets
//! every field goes through the builders; each variable of the pod template must be in the
//! binary's own configuration (its clap arguments' `env`).

use std::collections::BTreeSet;

use trendstream_operator::builders::{Defaults, Workload, desired};
use trendstream_operator::crd::{ProcessorKind, StreamJob};
use trendstream_service::config::env_names;

/// Every optional field set, for either upgrade mode (stateless adds `UPGRADE_EPOCH`).
fn every_field(processor: ProcessorKind, upgrade_mode: &str) -> StreamJob {
    let yaml = format!(
        r#"
apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata: {{ name: job, namespace: tenant-a, uid: 7f0c1d2e-0000-4000-8000-000000000001 }}
spec:
  processor: {processor}
  image: registry.example/any:1
  kafka:
    bootstrapServers: "kafka:9092"
    inputTopics: [in-a, in-b]
    outputTopic: out
    consumerGroup: group
    partitions: 12
    securitySecretRef: {{ name: kafka-client }}
    dlqTopic: tenant-a.dlq
    lateTopic: tenant-a.late
  parallelism: {{ partitionsPerReplica: 2 }}
  autoscaling: {{ minReplicas: 1, maxReplicas: 6 }}
  checkpoint:
    interval: 30s
    volumeSize: 1Gi
    storageClassName: fast
    gcs: {{ bucket: checkpoints, prefix: tenant-a/job, endpoint: "http://gcs:9023" }}
    retained: 3
    onDelete: Delete
  identity: {{ gcpServiceAccount: job-runner@tenant-a-prod.iam.gserviceaccount.com }}
  redis:
    url: "rediss://redis:6378"
    passwordSecretRef: {{ name: redis-auth }}
    caSecretRef: {{ name: redis-ca }}
    keyPrefix: tenant-a
  resources: {{ requests: {{ cpu: 100m }} }}
  config:
    sessionGap: 10m
    maxOutOfOrderness: 5s
    allowedLateness: 1m
    idleTimeout: 2m
    maxFutureSkew: 2h
    windowSize: 5m
    fraudRules: "rules: []"
  upgradeMode: {upgrade_mode}
  api: {{ authSecretRef: {{ name: api-token }}, maxConcurrentRequests: 32, requestTimeout: 3s }}
  networkPolicy: {{ allowFromNamespaces: [monitoring] }}
"#,
        processor = processor.name()
    );
    serde_yaml::from_str(&yaml).expect("the job parses")
}

/// The names of the variables the operator writes into the processor's container.
fn pod_env(job: &StreamJob) -> BTreeSet<String> {
    let desired = desired(job, 12, None, &Defaults::default()).expect("the job builds");
    let template = match &desired.workload {
        Workload::Stateful { stateful_set, .. } => stateful_set.spec.clone().map(|s| s.template),
        Workload::Stateless(deployment) => deployment.spec.clone().map(|s| s.template),
    };
    let pod = template.and_then(|t| t.spec).expect("a pod spec");
    pod.containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .map(|e| e.name.clone())
        .collect()
}

/// The variables the processor's binary reads: its clap configuration.
fn binary_env(processor: ProcessorKind) -> BTreeSet<String> {
    match processor {
        ProcessorKind::CdcProcessor => env_names::<cdc_processor::config::Config>(),
        ProcessorKind::SessionAggregator => env_names::<session_aggregator::config::Config>(),
        ProcessorKind::FraudDetector => env_names::<fraud_detector::config::Config>(),
        ProcessorKind::RevenueCalculator => env_names::<revenue_calculator::config::Config>(),
        ProcessorKind::FeatureApi => env_names::<feature_api::config::Config>(),
    }
}

#[test]
fn every_variable_the_operator_sets_is_read_by_the_binary() {
    for processor in ProcessorKind::ALL {
        let read = binary_env(processor);
        assert!(
            read.contains("TRENDSTREAM_HTTP_ADDR"),
            "{}: the binary's configuration was not found",
            processor.name()
        );
        for mode in ["last-state", "stateless"] {
            let set = pod_env(&every_field(processor, mode));
            let unread: Vec<&String> = set.difference(&read).collect();
            assert!(
                unread.is_empty(),
                "{} ({mode}): the operator sets {unread:?}, which the binary does not read",
                processor.name()
            );
        }
    }
}

#[test]
fn the_new_fields_reach_the_processors_that_read_them() {
    let has = |processor, mode, name: &str| pod_env(&every_field(processor, mode)).contains(name);
    for processor in [
        ProcessorKind::SessionAggregator,
        ProcessorKind::FraudDetector,
        ProcessorKind::RevenueCalculator,
        ProcessorKind::CdcProcessor,
    ] {
        for name in [
            "KAFKA_DLQ_TOPIC",
            "KAFKA_LATE_TOPIC",
            "GCS_ENDPOINT",
            "IDLE_TIMEOUT",
            "MAX_FUTURE_SKEW",
            "UPGRADE_MODE",
        ] {
            assert!(
                has(processor, "last-state", name),
                "{}: {name}",
                processor.name()
            );
        }
        assert!(has(processor, "stateless", "UPGRADE_EPOCH"));
        assert!(!has(processor, "last-state", "UPGRADE_EPOCH"));
    }
    for processor in [
        ProcessorKind::SessionAggregator,
        ProcessorKind::FraudDetector,
        ProcessorKind::RevenueCalculator,
        ProcessorKind::FeatureApi,
    ] {
        assert!(
            has(processor, "last-state", "REDIS_KEY_PREFIX"),
            "{}",
            processor.name()
        );
    }
}
