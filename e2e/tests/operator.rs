//! The operator end to end, against the real kube-apiserver, controller-manager and scheduler
//! and a real node (or any real cluster, when KUBECONFIG is set), with the real Kafka broker:
//! the processors it deploys run for real, from the environment's images.
//!
//! Each test runs its own operator process, watching only the test's namespace.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use std::process::Command;
use std::time::Duration;
use trendstream_e2e::fleet::{for_this_cluster, is_ready, pods};
use trendstream_e2e::gcs::create_bucket;
use trendstream_e2e::kube::{
    client, eventually, examples_dir, install_crd, kubeconfig, kubectl, with_namespace,
};
use trendstream_e2e::process::{Running, workspace_binary};
use trendstream_e2e::{TestEnv, kafka, unique_name};
use trendstream_operator::crd::{Phase, StreamJob};

/// Pods pulled, started and Ready on a two-core node (several tests at once).
const CONVERGE: Duration = Duration::from_secs(240);

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_operator(
    env: &TestEnv,
    namespace: &str,
    identity: &str,
    leader_election: bool,
) -> anyhow::Result<Running> {
    let mut command = Command::new(workspace_binary("trendstream-operator")?);
    command
        .env("KUBECONFIG", kubeconfig(env)?)
        .env("RUST_LOG", "info,kube=warn")
        .args([
            "--namespace",
            namespace,
            "--lease-namespace",
            namespace,
            "--identity",
            identity,
        ])
        .arg(format!("--leader-election={leader_election}"))
        .arg(format!("--http-addr=127.0.0.1:{}", free_port()?))
        .args(["--kafka-timeout-seconds", "5"]);
    let log = std::path::Path::new(env.get("TRENDSTREAM_ENV_DIR")?)
        .join("logs")
        .join(format!("operator-{namespace}-{identity}.log"));
    println!(
        "operator {identity} for namespace {namespace}, log {}",
        log.display()
    );
    Running::start(command, log)
}

/// A merge patch of a StreamJob, as a user would send it with kubectl.
fn patch_job(env: &TestEnv, namespace: &str, name: &str, patch: &str) -> anyhow::Result<()> {
    let args = [
        "patch",
        "-n",
        namespace,
        "streamjob",
        name,
        "--type=merge",
        "-p",
        patch,
    ];
    kubectl(env, &args, None).map(drop)
}

/// An example manifest, made to run in the test environment (images, addresses, requests).
async fn example(env: &TestEnv, file: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(examples_dir().join(file))?;
    // The examples' checkpoint bucket, on the emulator (already there after the first test).
    let _ = create_bucket(env.get("GCS_ENDPOINT")?, "trendstream-checkpoints").await;
    for_this_cluster(env, &text)
}

async fn job(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Option<StreamJob>> {
    Ok(Api::<StreamJob>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?)
}

async fn ready_pods(client: &Client, namespace: &str, instance: &str) -> anyhow::Result<usize> {
    Ok(pods(client, namespace, instance)
        .await?
        .iter()
        .filter(|pod| is_ready(pod))
        .count())
}

/// Waits until the job's status says `phase` with `replicas` replicas, all of them Ready pods.
async fn converged(
    client: &Client,
    namespace: &str,
    name: &str,
    phase: Phase,
    replicas: i32,
) -> anyhow::Result<StreamJob> {
    eventually(
        &format!("{name} {phase:?} with {replicas} replicas"),
        CONVERGE,
        || async {
            let Some(job) = job(client, namespace, name).await? else {
                return Ok(None);
            };
            let status = job.status.clone().unwrap_or_default();
            let pods = ready_pods(client, namespace, name).await?;
            let done = status.phase == Some(phase)
                && status.replicas == replicas
                && status.ready_replicas == replicas
                && pods == usize::try_from(replicas)?
                && status.observed_generation == job.metadata.generation;
            Ok(done.then_some(job))
        },
    )
    .await
}

fn condition(job: &StreamJob, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn fraud_job_deploys_rescales_suspends_and_cleans_up() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let client = client(&env).await?;
    install_crd(&env)?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    kafka::create_topic(&bootstrap, "orders", 12).await?;

    with_namespace(&client, "op-fraud", |client, ns| async move {
        let mut operator = start_operator(&env, &ns, "solo", false)?;
        kubectl(
            &env,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&example(&env, "fraud-job.yaml").await?),
        )?;
        let name = "fraud-detector";

        // 12 partitions at 2 per replica: 6 replicas, inside the autoscaler's 2..12.
        let running = converged(&client, &ns, name, Phase::Running, 6).await;
        operator.check_alive()?;
        let running = running?;
        assert_eq!(
            condition(&running, "Ready"),
            Some(("True".into(), "AllReplicasReady".into()))
        );
        assert_eq!(running.status.as_ref().and_then(|s| s.partitions), Some(12));

        // Every child is there, owned by the job.
        let uid = running.uid().unwrap_or_default();
        let owned_by_job =
            |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
                refs.iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            };
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get(name)
            .await?;
        assert!(owned_by_job(sa.owner_references()));
        assert_eq!(
            sa.annotations()
                .get("iam.gke.io/gcp-service-account")
                .map(String::as_str),
            Some("fraud-detector@trendstream-prod.iam.gserviceaccount.com")
        );
        assert!(owned_by_job(
            Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get(name)
                .await?
                .owner_references()
        ));
        let services = Api::<Service>::namespaced(client.clone(), &ns);
        assert!(owned_by_job(services.get(name).await?.owner_references()));
        assert!(owned_by_job(
            services
                .get(&format!("{name}-headless"))
                .await?
                .owner_references()
        ));
        let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns)
            .get(name)
            .await?;
        assert_eq!(
            (hpa.spec.min_replicas, hpa.spec.max_replicas),
            (Some(2), 12)
        );
        assert!(owned_by_job(
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
                .get(name)
                .await?
                .owner_references()
        ));
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get(name)
            .await?;
        assert!(owned_by_job(sts.owner_references()));

        // Without the autoscaler, partitionsPerReplica decides: 12 / 4 = 3 replicas.
        patch_job(
            &env,
            &ns,
            name,
            r#"{"spec":{"autoscaling":null,"parallelism":{"partitionsPerReplica":4}}}"#,
        )?;
        converged(&client, &ns, name, Phase::Running, 3).await?;
        let hpas = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns);
        eventually("HPA removed", CONVERGE, || async {
            Ok(hpas.get_opt(name).await?.is_none().then_some(()))
        })
        .await?;

        // Suspend: scaled to zero, and the status says why.
        patch_job(&env, &ns, name, r#"{"spec":{"suspend":true}}"#)?;
        let suspended = converged(&client, &ns, name, Phase::Suspended, 0).await?;
        assert_eq!(
            condition(&suspended, "Ready"),
            Some(("False".into(), "Suspended".into()))
        );
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .get(name)
            .await?;
        assert_eq!(sts.spec.and_then(|s| s.replicas), Some(0));
        let events = Api::<Event>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        let reasons: Vec<String> = events
            .items
            .iter()
            .filter_map(|e| e.reason.clone())
            .collect();
        assert!(
            reasons.iter().any(|r| r == "Suspended"),
            "events: {reasons:?}"
        );

        // Delete: the finalizer runs, then the garbage collector removes the children.
        kubectl(
            &env,
            &[
                "delete",
                "-n",
                &ns,
                "streamjob",
                name,
                "--wait=true",
                "--timeout=60s",
            ],
            None,
        )?;
        eventually("children garbage-collected", CONVERGE, || async {
            let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
                .get_opt(name)
                .await?;
            let svc = services.get_opt(name).await?;
            let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                .get_opt(name)
                .await?;
            Ok((sts.is_none() && svc.is_none() && sa.is_none()).then_some(()))
        })
        .await?;
        let events = Api::<Event>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        assert!(
            events
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Deleted")),
            "the finalizer recorded its cleanup"
        );
        operator.check_alive()
    })
    .await
}

#[tokio::test]
async fn partitions_are_discovered_from_the_broker_and_lag_is_reported() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let client = client(&env).await?;
    install_crd(&env)?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let topic = unique_name("clicks");
    kafka::create_topic(&bootstrap, &topic, 5).await?;
    kafka::produce(&bootstrap, &topic, 420)?;

    with_namespace(&client, "op-discover", |client, ns| async move {
        let mut operator = start_operator(&env, &ns, "solo", false)?;
        let manifest = for_this_cluster(
            &env,
            &format!(
                "apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata: {{ name: sessions }}
spec:
  processor: session-aggregator
  kafka: {{ bootstrapServers: \"{bootstrap}\", inputTopics: [\"{topic}\"] }}
  redis: {{ url: \"redis://127.0.0.1:6379\" }}
"
            ),
        )?;
        kubectl(&env, &["apply", "-n", &ns, "-f", "-"], Some(&manifest))?;
        // No partitions in the spec: 5 discovered, one replica each.
        let job = converged(&client, &ns, "sessions", Phase::Running, 5).await;
        operator.check_alive()?;
        let status = job?.status.unwrap_or_default();
        assert_eq!(status.partitions, Some(5));
        // The group's lag is reported, and falls to zero as the pods consume the topic.
        let lag = eventually("lag in status", CONVERGE, || async {
            let job = job_status(&client, &ns, "sessions").await?;
            Ok(job.and_then(|s| s.consumer_lag))
        })
        .await?;
        assert!((0..=420).contains(&lag), "lag {lag} of 420 records");
        eventually("lag falls to zero", CONVERGE, || async {
            let job = job_status(&client, &ns, "sessions").await?;
            Ok(job.and_then(|s| s.consumer_lag).filter(|lag| *lag == 0))
        })
        .await?;
        println!("lag {lag} first reported, then 0");
        Ok(())
    })
    .await
}

async fn job_status(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<trendstream_operator::crd::StreamJobStatus>> {
    Ok(job(client, namespace, name).await?.and_then(|j| j.status))
}

#[tokio::test]
async fn invalid_stream_jobs_are_rejected_naming_the_field() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    install_crd(&env)?;
    let base = "apiVersion: trendstream.io/v1alpha1\nkind: StreamJob\nmetadata: { name: bad, namespace: default }\nspec:\n";
    let cases = [
        (
            "min > max replicas",
            "  processor: fraud-detector\n  kafka: { bootstrapServers: k:9092 }\n  redis: { url: redis://r:6379 }\n  autoscaling: { minReplicas: 5, maxReplicas: 2 }\n",
            "spec.autoscaling.minReplicas",
        ),
        (
            "unknown processor",
            "  processor: fraud-detectr\n  kafka: { bootstrapServers: k:9092 }\n",
            "spec.processor",
        ),
        (
            "bad duration",
            "  processor: session-aggregator\n  kafka: { bootstrapServers: k:9092 }\n  redis: { url: redis://r:6379 }\n  config: { sessionGap: 30 minutes }\n",
            "spec.config.sessionGap",
        ),
        (
            "max beyond partitions",
            "  processor: fraud-detector\n  kafka: { bootstrapServers: k:9092, partitions: 6 }\n  redis: { url: redis://r:6379 }\n  autoscaling: { maxReplicas: 12 }\n",
            "spec.autoscaling.maxReplicas",
        ),
        (
            "missing bucket with GCS on",
            "  processor: fraud-detector\n  kafka: { bootstrapServers: k:9092 }\n  redis: { url: redis://r:6379 }\n  checkpoint: { gcs: { enabled: true } }\n",
            "spec.checkpoint.gcs.bucket",
        ),
        (
            "replicas and partitionsPerReplica",
            "  processor: fraud-detector\n  kafka: { bootstrapServers: k:9092 }\n  redis: { url: redis://r:6379 }\n  parallelism: { replicas: 2, partitionsPerReplica: 3 }\n",
            "spec.parallelism",
        ),
        (
            "no bootstrap servers",
            "  processor: fraud-detector\n  redis: { url: redis://r:6379 }\n",
            "spec.kafka.bootstrapServers",
        ),
        (
            "Redis CA without TLS",
            "  processor: fraud-detector\n  kafka: { bootstrapServers: k:9092 }\n  redis: { url: redis://r:6379, caSecretRef: { name: ca } }\n",
            "spec.redis.caSecretRef",
        ),
        (
            "bad Workload Identity email",
            "  processor: fraud-detector\n  kafka: { bootstrapServers: k:9092 }\n  redis: { url: redis://r:6379 }\n  identity: { gcpServiceAccount: not-an-email }\n",
            "spec.identity.gcpServiceAccount",
        ),
    ];
    for (what, spec, field) in cases {
        let error = kubectl(
            &env,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&format!("{base}{spec}")),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        println!("{what}: {error}");
        assert!(
            error.contains(field),
            "{what}: expected a rejection naming {field}, got {error:?}"
        );
    }
    // Every example StreamJob is accepted as it is (examples/rules/ holds rule files, not
    // manifests).
    for entry in std::fs::read_dir(examples_dir())? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        kubectl(
            &env,
            &[
                "apply",
                "--dry-run=server",
                "-n",
                "default",
                "-f",
                &path.to_string_lossy(),
            ],
            None,
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn two_operators_elect_one_leader_through_a_lease() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let client = client(&env).await?;
    install_crd(&env)?;
    with_namespace(&client, "op-lease", |client, ns| async move {
        let mut first = start_operator(&env, &ns, "first", true)?;
        let mut second = start_operator(&env, &ns, "second", true)?;
        let leases = Api::<Lease>::namespaced(client.clone(), &ns);
        let holder = eventually("a lease holder", CONVERGE, || async {
            Ok(leases
                .get_opt("trendstream-operator")
                .await?
                .and_then(|lease| lease.spec?.holder_identity))
        })
        .await?;
        assert!(holder == "first" || holder == "second", "holder {holder}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        first.check_alive()?;
        second.check_alive()?;
        let leading: Vec<&str> = [("first", &first), ("second", &second)]
            .into_iter()
            .filter(|(_, op)| {
                std::fs::read_to_string(&op.log)
                    .unwrap_or_default()
                    .contains("leading")
            })
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            leading,
            vec![holder.as_str()],
            "exactly the holder reconciles"
        );
        Ok(())
    })
    .await
}
