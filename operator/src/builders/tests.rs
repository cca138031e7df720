//! Builder tests: snapshot-style (the whole desired object as YAML, reviewed in
//! `src/builders/snapshots/`) plus targeted assertions on the rules that matter most.

use super::*;
use crate::crd::StreamJob;
use k8s_openapi::api::core::v1::PodSpec;

fn job(yaml: &str) -> StreamJob {
    let mut job: StreamJob = serde_yaml::from_str(yaml).expect("test job parses");
    job.metadata.uid = Some("7f0c1d2e-0000-4000-8000-000000000001".into());
    job.metadata.namespace.get_or_insert_with(|| "shop".into());
    job
}

const FRAUD: &str = r#"
apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata: { name: fraud, generation: 4 }
spec:
  processor: fraud-detector
  kafka: { bootstrapServers: "kafka:9092" }
  parallelism: { partitionsPerReplica: 5 }
  autoscaling: { minReplicas: 2, maxReplicas: 40, lagPerReplica: 5000, scaleDownStabilization: 10m }
  checkpoint:
    volumeSize: 20Gi
    storageClassName: premium-rwo
    gcs: { bucket: trendstream-checkpoints }
    onDelete: Delete
  identity: { gcpServiceAccount: fraud-detector@shop-prod.iam.gserviceaccount.com }
  redis: { url: "redis://redis:6379", passwordSecretRef: { name: redis-auth } }
  config: { fraudRules: "rules: []" }
"#;

fn defaults() -> Defaults {
    Defaults {
        image_registry: "registry.example/trendstream".into(),
        image_tag: "1.2.3".into(),
        lag_metric: "trendstream_consumer_group_lag".into(),
    }
}

fn stateful(desired: &Desired) -> &k8s_openapi::api::apps::v1::StatefulSet {
    match &desired.workload {
        Workload::Stateful { stateful_set, .. } => stateful_set,
        Workload::Stateless(_) => panic!("expected a StatefulSet"),
    }
}

fn pod_spec(desired: &Desired) -> &PodSpec {
    let template = match &desired.workload {
        Workload::Stateful { stateful_set, .. } => &stateful_set.spec.as_ref().unwrap().template,
        Workload::Stateless(deployment) => &deployment.spec.as_ref().unwrap().template,
    };
    template.spec.as_ref().unwrap()
}

#[test]
fn fraud_job_children_snapshot() {
    let desired = desired(&job(FRAUD), 12, None, &defaults()).unwrap();
    insta::assert_yaml_snapshot!("fraud_service_account", desired.service_account);
    insta::assert_yaml_snapshot!("fraud_config_map", desired.config_map);
    insta::assert_yaml_snapshot!("fraud_stateful_set", stateful(&desired));
    insta::assert_yaml_snapshot!("fraud_hpa", desired.autoscaler);
    insta::assert_yaml_snapshot!("fraud_pdb", desired.disruption_budget);
    insta::assert_yaml_snapshot!("fraud_service", desired.service);
    insta::assert_yaml_snapshot!("fraud_network_policy", desired.network_policy);
}

#[test]
fn feature_api_is_a_deployment_without_volumes_snapshot() {
    let api = job(r#"
metadata: { name: features }
spec:
  processor: feature-api
  redis: { url: "redis://redis:6379" }
  parallelism: { replicas: 3 }
  api:
    authSecretRef: { name: feature-api-token }
    maxConcurrentRequests: 64
    requestTimeout: 1500ms
  networkPolicy: { allowFromNamespaces: [ingress-nginx, monitoring, shop] }
"#);
    let desired = desired(&api, 12, None, &defaults()).unwrap();
    insta::assert_yaml_snapshot!("feature_api_network_policy", desired.network_policy);
    match &desired.workload {
        Workload::Stateless(deployment) => {
            insta::assert_yaml_snapshot!("feature_api_deployment", deployment)
        }
        Workload::Stateful { .. } => panic!("feature-api must be a Deployment"),
    }
    assert!(desired.autoscaler.is_none());
}

#[test]
fn hpa_max_is_capped_at_the_partition_count() {
    let desired = desired(&job(FRAUD), 12, None, &defaults()).unwrap();
    let hpa = desired.autoscaler.unwrap().spec;
    assert_eq!(
        hpa.max_replicas, 12,
        "maxReplicas 40 capped at 12 partitions"
    );
    assert_eq!(hpa.min_replicas, Some(2));
    assert_eq!(hpa.scale_target_ref.kind, "StatefulSet");
    let behavior = hpa.behavior.unwrap();
    assert_eq!(
        behavior.scale_down.unwrap().stabilization_window_seconds,
        Some(600)
    );
}

#[test]
fn with_an_autoscaler_the_operator_keeps_its_decision_within_bounds() {
    let replicas = |current| {
        let desired = desired(&job(FRAUD), 12, current, &defaults()).unwrap();
        stateful(&desired).spec.as_ref().unwrap().replicas
    };
    assert_eq!(
        replicas(None),
        Some(3),
        "at creation: 12 partitions at 5 per replica, rounded up"
    );
    assert_eq!(replicas(Some(7)), Some(7), "the autoscaler chose 7");
    assert_eq!(replicas(Some(1)), Some(2), "below minReplicas");
}

#[test]
fn partitions_not_divisible_by_partitions_per_replica_round_up() {
    let mut fraud = job(FRAUD);
    fraud.spec.autoscaling = None;
    let desired = desired(&fraud, 12, None, &defaults()).unwrap();
    assert_eq!(stateful(&desired).spec.as_ref().unwrap().replicas, Some(3));
    let desired = super::desired(&fraud, 11, None, &defaults()).unwrap();
    assert_eq!(stateful(&desired).spec.as_ref().unwrap().replicas, Some(3));
    let desired = super::desired(&fraud, 16, None, &defaults()).unwrap();
    assert_eq!(stateful(&desired).spec.as_ref().unwrap().replicas, Some(4));
}

#[test]
fn suspend_scales_to_zero_and_removes_the_autoscaler() {
    let mut fraud = job(FRAUD);
    fraud.spec.suspend = true;
    let desired = desired(&fraud, 12, None, &defaults()).unwrap();
    assert_eq!(stateful(&desired).spec.as_ref().unwrap().replicas, Some(0));
    assert!(desired.autoscaler.is_none());
}

#[test]
fn workload_identity_annotates_the_service_account_and_mounts_no_token() {
    let desired = desired(&job(FRAUD), 12, None, &defaults()).unwrap();
    let annotations = desired.service_account.metadata.annotations.unwrap();
    assert_eq!(
        annotations["iam.gke.io/gcp-service-account"],
        "fraud-detector@shop-prod.iam.gserviceaccount.com"
    );
    assert_eq!(
        desired.service_account.automount_service_account_token,
        Some(false)
    );
    let pod = pod_spec(&super::desired(&job(FRAUD), 12, None, &defaults()).unwrap()).clone();
    assert_eq!(pod.service_account_name.as_deref(), Some("fraud"));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn no_identity_means_no_annotation() {
    let mut fraud = job(FRAUD);
    fraud.spec.identity = None;
    let desired = desired(&fraud, 12, None, &defaults()).unwrap();
    assert_eq!(desired.service_account.metadata.annotations, None);
}

#[test]
fn the_volume_claim_template_carries_size_class_and_retention() {
    let desired = desired(&job(FRAUD), 12, None, &defaults()).unwrap();
    let spec = stateful(&desired).spec.clone().unwrap();
    let claim = &spec.volume_claim_templates.unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some("state"));
    assert_eq!(
        claim_spec.storage_class_name.as_deref(),
        Some("premium-rwo")
    );
    assert_eq!(
        claim_spec.access_modes,
        Some(vec!["ReadWriteOnce".to_owned()])
    );
    let requests = claim_spec
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap();
    assert_eq!(requests["storage"].0, "20Gi");
    let retention = spec.persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
}

#[test]
fn pods_run_non_root_with_a_read_only_root_filesystem() {
    let desired = desired(&job(FRAUD), 12, None, &defaults()).unwrap();
    let pod = pod_spec(&desired);
    let pod_security = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert!(pod_security.run_as_user.is_some_and(|uid| uid != 0));
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".to_owned()])
    );
    assert!(container.resources.as_ref().unwrap().requests.is_some());
    let mounts: Vec<&str> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(
        mounts.contains(&"/tmp"),
        "a writable /tmp beside the read-only root: {mounts:?}"
    );
    assert!(mounts.contains(&STATE_MOUNT));
    let probes = [&container.liveness_probe, &container.readiness_probe];
    let paths: Vec<_> = probes
        .iter()
        .map(|p| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(paths, ["/health/live", "/health/ready"]);
}

#[test]
fn the_runtime_environment_names_the_jobs_topics_and_group() {
    let env = desired_pod_env(FRAUD);
    let value = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(
        value("KAFKA_CONSUMER_GROUP").flatten().as_deref(),
        Some("shop.fraud")
    );
    assert_eq!(
        value("KAFKA_INPUT_TOPICS").flatten().as_deref(),
        Some("orders")
    );
    assert_eq!(value("GCS_PREFIX").flatten().as_deref(), Some("shop/fraud"));
    assert_eq!(
        value("UPGRADE_MODE").flatten().as_deref(),
        Some("last-state")
    );
    // Settings of other processors, and optional ones the job leaves out, are not written.
    for absent in [
        "KAFKA_PARTITIONS",
        "SESSION_GAP",
        "WINDOW_SIZE",
        "UPGRADE_EPOCH",
        "IDLE_TIMEOUT",
        "KAFKA_DLQ_TOPIC",
        "KAFKA_LATE_TOPIC",
        "GCS_ENDPOINT",
        "REDIS_KEY_PREFIX",
    ] {
        assert_eq!(value(absent), None, "{absent}");
    }
}

#[test]
fn optional_fields_become_the_variables_the_binaries_read() {
    let yaml = format!(
        "{FRAUD}  upgradeMode: stateless\n"
    )
    .replace(
        r#"kafka: { bootstrapServers: "kafka:9092" }"#,
        r#"kafka: { bootstrapServers: "kafka:9092", dlqTopic: tenant-a.dlq, lateTopic: tenant-a.late }"#,
    )
    .replace(
        "gcs: { bucket: trendstream-checkpoints }",
        "gcs: { bucket: trendstream-checkpoints, endpoint: \"http://gcs.emulator:9023\" }",
    )
    .replace(
        r#"passwordSecretRef: { name: redis-auth } }"#,
        r#"passwordSecretRef: { name: redis-auth }, keyPrefix: tenant-a }"#,
    )
    .replace(
        r#"config: { fraudRules: "rules: []" }"#,
        r#"config: { fraudRules: "rules: []", idleTimeout: 2m }"#,
    );
    let env = desired_pod_env(&yaml);
    for (name, value) in [
        ("KAFKA_DLQ_TOPIC", "tenant-a.dlq"),
        ("KAFKA_LATE_TOPIC", "tenant-a.late"),
        ("GCS_ENDPOINT", "http://gcs.emulator:9023"),
        ("REDIS_KEY_PREFIX", "tenant-a"),
        ("IDLE_TIMEOUT", "2m"),
        ("UPGRADE_MODE", "stateless"),
    ] {
        assert!(
            env.contains(&(name.to_owned(), Some(value.to_owned()))),
            "{name}={value} in {env:?}"
        );
    }
    let desired = desired(&job(&yaml), 12, None, &defaults()).unwrap();
    let epoch = pod_spec(&desired).containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "UPGRADE_EPOCH")
        .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(
        epoch.as_deref(),
        Some("metadata.labels['controller-revision-hash']"),
        "a stateless job's epoch is the revision of its pod template"
    );
}

#[test]
fn cdc_processor_gets_no_redis_key_prefix() {
    let cdc = r#"
metadata: { name: cdc }
spec:
  processor: cdc-processor
  kafka: { bootstrapServers: "kafka:9092" }
  redis: { url: "redis://redis:6379", keyPrefix: tenant-a }
"#;
    let names: Vec<String> = desired_pod_env(cdc).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"REDIS_URL".to_owned()), "{names:?}");
    assert!(!names.contains(&"REDIS_KEY_PREFIX".to_owned()), "{names:?}");
}

#[test]
fn a_config_change_changes_the_pod_template_hash() {
    let hash = |job: &StreamJob| {
        let desired = desired(job, 12, None, &defaults()).unwrap();
        stateful(&desired)
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let before = job(FRAUD);
    let mut after = before.clone();
    after.spec.config.fraud_rules = Some("rules: [{name: X}]".into());
    assert_ne!(hash(&before), hash(&after));
    assert_eq!(hash(&before), hash(&before.clone()));
}

#[test]
fn every_child_is_owned_by_the_job() {
    let desired = desired(&job(FRAUD), 12, None, &defaults()).unwrap();
    let owners = [
        &desired.service_account.metadata,
        &desired.config_map.metadata,
        &desired.service.metadata,
        &stateful(&desired).metadata,
        &desired.disruption_budget.metadata,
    ];
    for meta in owners {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "StreamJob");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
    }
}

#[test]
fn a_job_without_uid_is_an_error_not_a_panic() {
    let mut fraud = job(FRAUD);
    fraud.metadata.uid = None;
    assert_eq!(
        desired(&fraud, 12, None, &defaults()),
        Err(BuildError::MissingMetadata("uid"))
    );
}

#[test]
fn a_redis_ca_secret_is_mounted_and_named_to_the_service() {
    let yaml = FRAUD.replace(
        r#"redis: { url: "redis://redis:6379", passwordSecretRef: { name: redis-auth } }"#,
        r#"redis: { url: "rediss://10.0.0.3:6378", passwordSecretRef: { name: redis-auth }, caSecretRef: { name: redis-ca } }"#,
    );
    let desired = desired(&job(&yaml), 12, None, &defaults()).unwrap();
    let pod = pod_spec(&desired);
    let container = &pod.containers[0];
    let env: Vec<(&str, Option<&str>)> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert!(env.contains(&("REDIS_URL", Some("rediss://10.0.0.3:6378"))));
    assert!(env.contains(&(
        "REDIS_CA_CERT_FILE",
        Some("/etc/trendstream-redis-ca/ca.crt")
    )));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "redis-ca")
        .expect("a redis-ca volume");
    let secret = volume.secret.as_ref().expect("from a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("redis-ca"));
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "redis-ca"
                && m.mount_path == "/etc/trendstream-redis-ca"
                && m.read_only == Some(true))
    );

    // Without it: no volume, no variable.
    let plain = desired_pod_env(FRAUD);
    assert!(!plain.iter().any(|(name, _)| name == "REDIS_CA_CERT_FILE"));
}

/// The container's variables: name and literal value (`None` for one from a reference).
fn desired_pod_env(yaml: &str) -> Vec<(String, Option<String>)> {
    let desired = desired(&job(yaml), 12, None, &defaults()).unwrap();
    pod_spec(&desired).containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

#[test]
fn a_disabled_network_policy_admits_everything_instead_of_disappearing() {
    let mut open = job(FRAUD);
    open.spec.network_policy.enabled = false;
    open.spec.network_policy.allow_from_namespaces = vec!["monitoring".into()];
    let policy = desired(&open, 12, None, &defaults())
        .unwrap()
        .network_policy;
    let spec = policy.spec.expect("a spec");
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    let rules = spec.ingress.expect("ingress rules");
    assert_eq!(rules.len(), 1);
    assert!(
        rules[0].from.is_none() && rules[0].ports.is_none(),
        "{rules:?}"
    );
}
