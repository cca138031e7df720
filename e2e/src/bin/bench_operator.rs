//! Operator benchmark: 200 StreamJobs applied at once, time until every one is Running with its
//! pod Ready, and the operator's peak RSS. The baseline, measured in the same run against the
//! same control plane, applies the same children directly (no operator), so the ratio shows what
//! the operator adds to what the API server, scheduler and kwok need anyway.
//!
//! Needs the environment (`e2e/env/up`) and a release build of the operator:
//! `cargo build --release -p trendstream-operator --bins && cargo run --release -p trendstream-e2e --bin bench-operator`

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use std::pin::pin;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trendstream_e2e::kube::{client, eventually, install_crd, kubeconfig, kubectl, with_namespace};
use trendstream_e2e::process::{Running, workspace_binary};
use trendstream_e2e::{TestEnv, kafka, unique_name};
use trendstream_operator::builders::{Defaults, Workload, desired};
use trendstream_operator::crd::{Phase, StreamJob};

const JOBS: usize = 200;
const TIMEOUT: Duration = Duration::from_secs(300);

fn job_manifest(
    index: usize,
    namespace: &str,
    bootstrap: &str,
    topic: &str,
    class: &str,
) -> String {
    format!(
        "apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata: {{ name: job-{index:03}, namespace: {namespace} }}
spec:
  processor: fraud-detector
  kafka: {{ bootstrapServers: \"{bootstrap}\", inputTopics: [\"{topic}\"], partitions: 1 }}
  redis: {{ url: \"redis://127.0.0.1:6379\" }}
  checkpoint: {{ storageClassName: {class}, volumeSize: 1Gi }}
"
    )
}

fn volumes(class: &str, count: usize) -> String {
    let mut docs = vec![format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{ name: {class} }}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n"
    )];
    for i in 0..count {
        docs.push(format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{ name: {class}-{i:03}, labels: {{ bench: {class} }} }}\nspec:\n  capacity: {{ storage: 1Gi }}\n  accessModes: [ReadWriteOnce]\n  storageClassName: {class}\n  hostPath: {{ path: /tmp/{class}-{i:03} }}\n"
        ));
    }
    docs.join("---\n")
}

/// Peak and current resident set of `pid`, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

/// Waits until `done` holds for the objects of kind `K` in `namespace`, on a watch: polling
/// with lists would add load to the API server the benchmark measures.
async fn watch_until<K>(
    client: &Client,
    namespace: &str,
    what: &str,
    done: impl Fn(&[Arc<K>]) -> bool,
) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let changes = watcher(
        Api::<K>::namespaced(client.clone(), namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    let mut changes = pin!(changes);
    let wait = async {
        while let Some(change) = changes.next().await {
            change?;
            if done(&reader.state()) {
                return Ok(());
            }
        }
        anyhow::bail!("the watch of {what} ended")
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?
}

fn ready(sts: &StatefulSet) -> bool {
    sts.status.as_ref().and_then(|st| st.ready_replicas) == Some(1)
}

/// Server-side apply of one child, without its owner reference (there is no StreamJob).
async fn apply<K>(client: &Client, namespace: &str, mut object: K) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    object.meta_mut().owner_references = None;
    let name = object.name_any();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply("bench-baseline").force(),
            &Patch::Apply(&object),
        )
        .await?;
    Ok(())
}

/// The floor: the same children, applied straight to the API server.
async fn baseline(client: &Client, namespace: &str, jobs: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, manifest) in jobs.iter().enumerate() {
        let mut job: StreamJob = serde_yaml::from_str(manifest)?;
        job.metadata.namespace = Some(namespace.to_owned());
        job.metadata.uid = Some(format!("00000000-0000-4000-8000-{index:012}"));
        let children = desired(&job, 1, None, &Defaults::default())?;
        let client = client.clone();
        let namespace = namespace.to_owned();
        tasks.push(tokio::spawn(async move {
            apply(&client, &namespace, children.service_account).await?;
            apply(&client, &namespace, children.config_map).await?;
            apply(&client, &namespace, children.service).await?;
            apply(&client, &namespace, children.disruption_budget).await?;
            if let Workload::Stateful {
                stateful_set,
                headless,
            } = children.workload
            {
                apply(&client, &namespace, *headless).await?;
                apply(&client, &namespace, *stateful_set).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    watch_until(
        client,
        namespace,
        "baseline StatefulSets ready",
        |all: &[Arc<StatefulSet>]| all.iter().filter(|s| ready(s)).count() == jobs.len(),
    )
    .await?;
    Ok(started.elapsed())
}

/// Waits until no namespace whose name starts with `prefix` is left.
async fn wait_until_gone(client: &Client, prefix: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    eventually("the previous namespace deleted", TIMEOUT, || async {
        let list = namespaces.list(&ListParams::default()).await?;
        Ok((!list.items.iter().any(|n| n.name_any().starts_with(prefix))).then_some(()))
    })
    .await?;
    println!(
        "{prefix} namespace deleted after {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let client = client(&env).await?;
    install_crd(&env)?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let topic = "bench-orders";
    kafka::create_topic(&bootstrap, topic, 1).await?;
    let class = unique_name("bench");
    kubectl(
        &env,
        &["apply", "-f", "-"],
        Some(&volumes(&class, 2 * JOBS)),
    )?;

    let floor = with_namespace(&client, "bench-floor", |client, ns| {
        let class = class.clone();
        let bootstrap = bootstrap.clone();
        async move {
            let jobs: Vec<String> = (0..JOBS)
                .map(|i| job_manifest(i, &ns, &bootstrap, topic, &class))
                .collect();
            let elapsed = baseline(&client, &ns, &jobs).await?;
            println!(
                "baseline: {JOBS} jobs' children applied directly, all pods Ready in {:.2}s",
                elapsed.as_secs_f64()
            );
            Ok(elapsed)
        }
    })
    .await;
    // The floor's namespace is deleted in the background: its garbage collection (and the
    // StatefulSet controller recreating pods until their StatefulSets are gone) would otherwise
    // compete with the operator's run for the same 2 cores.
    wait_until_gone(&client, "bench-floor").await?;

    let measured = with_namespace(&client, "bench-operator", |client, ns| {
        let env = env.clone();
        let class = class.clone();
        let bootstrap = bootstrap.clone();
        async move {
            let mut command = Command::new(workspace_binary("trendstream-operator")?);
            command
                .env("KUBECONFIG", kubeconfig(&env)?)
                .env("RUST_LOG", "warn")
                .args(["--namespace", &ns, "--leader-election=false", "--http-addr=127.0.0.1:0"]);
            let log = std::env::temp_dir().join(format!("{ns}-operator.log"));
            let mut operator = Running::start(command, log)?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (_, idle_rss) = rss_mib(operator.pid())?;
            let manifests: Vec<String> = (0..JOBS).map(|i| job_manifest(i, &ns, &bootstrap, topic, &class)).collect();
            let started = Instant::now();
            // Server-side apply, as Argo CD syncs: one request per object.
            kubectl(&env, &["apply", "--server-side", "-f", "-"], Some(&manifests.join("---\n")))?;
            let applied = started.elapsed();
            let created = tokio::spawn({
                let (client, ns) = (client.clone(), ns.clone());
                async move {
                    watch_until(&client, &ns, "all StatefulSets created", |all: &[Arc<StatefulSet>]| {
                        all.len() == JOBS
                    })
                    .await
                    .map(|()| started.elapsed())
                }
            });
            watch_until(&client, &ns, "all StreamJobs Running", |all: &[Arc<StreamJob>]| {
                all.iter()
                    .filter(|j| {
                        j.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Running) && s.ready_replicas == 1)
                    })
                    .count()
                    == JOBS
            })
            .await?;
            let created = created.await??;
            let elapsed = started.elapsed();
            operator.check_alive()?;
            let (peak, now) = rss_mib(operator.pid())?;
            let cpu = operator.cpu_seconds()?;
            println!(
                "operator: {JOBS} StreamJobs Running with Ready pods in {:.2}s (kubectl apply returned after {:.2}s, all StatefulSets created after {:.2}s); operator CPU {cpu:.2}s; operator RSS idle {idle_rss:.1} MiB, peak {peak:.1} MiB, after {now:.1} MiB",
                elapsed.as_secs_f64(),
                applied.as_secs_f64(),
                created.as_secs_f64(),
            );
            Ok(elapsed)
        }
    })
    .await;

    // Volumes are cluster-wide: remove the benchmark's, whatever happened above.
    kubectl(
        &env,
        &[
            "delete",
            "pv",
            "-l",
            &format!("bench={class}"),
            "--wait=false",
        ],
        None,
    )?;
    kubectl(
        &env,
        &["delete", "storageclass", &class, "--wait=false"],
        None,
    )?;
    let (floor, measured) = (floor?, measured?);
    println!(
        "ratio: operator convergence / direct-apply floor = {:.2}",
        measured.as_secs_f64() / floor.as_secs_f64()
    );
    Ok(())
}
