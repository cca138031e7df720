//! The fleet as users run it: the operator installed from its Helm chart, running as a pod from
//! its image, and StreamJobs whose processors run as the pods it creates, on a real node.
//!
//! Images come from the env file's `IMAGE_<NAME>` entries (`e2e/env/images` builds and pushes
//! them). Addresses the pods use are the env file's `NODE_<KEY>` entries where the node runs
//! (the node's bridge address), else the plain `<KEY>` ones, so that against a real cluster
//! (KUBECONFIG given) the env file names addresses its pods reach.

use crate::TestEnv;
use crate::kube::{eventually, kubeconfig, kubectl};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::sync::OnceCell;
use trendstream_operator::crd::{Phase, StreamJob};

pub const OPERATOR_NAMESPACE: &str = "trendstream-system";
pub const OPERATOR_RELEASE: &str = "trendstream-operator";
/// The namespace the installed operator watches (its chart's `watchNamespace`): other tests
/// run operators of their own in namespaces of their own, which this one must leave alone.
pub const FLEET_NAMESPACE: &str = "trendstream-fleet";

/// The image reference of `name` (e.g. `fraud-detector`) from the env file.
pub fn image(env: &TestEnv, name: &str) -> anyhow::Result<String> {
    let key = format!("IMAGE_{}", name.to_uppercase().replace('-', "_"));
    Ok(env
        .get(&key)
        .map_err(|err| anyhow::anyhow!("{err} (build the images with `e2e/env/images`)"))?
        .to_owned())
}

/// An address as the pods reach it: `NODE_<key>` where the node runs, else `<key>`.
pub fn pod_facing<'a>(env: &'a TestEnv, key: &str) -> anyhow::Result<&'a str> {
    Ok(match env.get(&format!("NODE_{key}")) {
        Ok(value) => value,
        Err(_) => env.get(key)?,
    })
}

/// Runs helm against the test cluster; an error carries helm's output.
pub fn helm(env: &TestEnv, args: &[&str]) -> anyhow::Result<String> {
    let helm = env.get("HELM").unwrap_or("helm");
    let output = Command::new(helm)
        .arg("--kubeconfig")
        .arg(kubeconfig(env)?)
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn chart(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Installs (or upgrades) the operator from its chart with the environment's image, watching
/// FLEET_NAMESPACE, and waits for it, once per test process: every test of a binary shares the
/// one operator, as the StreamJobs of a cluster do. The tests that use it take turns (the
/// returned guard): each runs a fleet that fills a two-core node.
pub async fn install_operator(
    env: &TestEnv,
) -> anyhow::Result<tokio::sync::MutexGuard<'static, ()>> {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    INSTALLED
        .get_or_try_init(|| async {
            // The namespace exists before the chart: its Role and RoleBinding live there.
            let namespace = format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{FLEET_NAMESPACE}\"}}}}"
            );
            kubectl(env, &["apply", "-f", "-"], Some(&namespace))?;
            let image = image(env, "trendstream-operator")?;
            let (repository, tag) = image
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("image {image} has no tag"))?;
            helm(
                env,
                &[
                    "upgrade",
                    "--install",
                    OPERATOR_RELEASE,
                    &chart("trendstream-operator"),
                    "--namespace",
                    OPERATOR_NAMESPACE,
                    "--create-namespace",
                    "--set",
                    &format!("image.repository={repository}"),
                    "--set",
                    &format!("image.tag={tag}"),
                    "--set",
                    "image.pullPolicy=IfNotPresent",
                    "--set",
                    &format!("watchNamespace={FLEET_NAMESPACE}"),
                    "--set",
                    "logLevel=info\\,kube=warn",
                    "--wait",
                    "--timeout",
                    "300s",
                ],
            )?;
            println!("operator installed from its chart, image {image}");
            anyhow::Ok(())
        })
        .await?;
    Ok(TURN.lock().await)
}

/// The pods of one StreamJob (its `app.kubernetes.io/instance` label), not being deleted.
pub async fn pods(client: &Client, namespace: &str, job: &str) -> anyhow::Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={job}")))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect())
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Waits until the job's status says Running with `replicas` replicas, all of them Ready pods.
pub async fn running(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<StreamJob> {
    let jobs = Api::<StreamJob>::namespaced(client.clone(), namespace);
    eventually(
        &format!("{name} Running with {replicas} ready replicas"),
        timeout,
        || async {
            let Some(job) = jobs.get_opt(name).await? else {
                return Ok(None);
            };
            let status = job.status.clone().unwrap_or_default();
            let ready = pods(client, namespace, name)
                .await?
                .iter()
                .filter(|p| is_ready(p))
                .count();
            let done = status.phase == Some(Phase::Running)
                && status.ready_replicas == replicas
                && ready == usize::try_from(replicas)?
                && status.observed_generation == job.metadata.generation;
            Ok(done.then_some(job))
        },
    )
    .await
}

/// `kubectl logs` of a pod (the current container, or the previous one).
pub fn logs(env: &TestEnv, namespace: &str, pod: &str, previous: bool) -> anyhow::Result<String> {
    let mut args = vec!["logs", "-n", namespace, pod];
    if previous {
        args.push("--previous");
    }
    kubectl(env, &args, None)
}

/// Prints `kubectl get pods -o wide` of a namespace (where the pods run, their IPs).
pub fn show_pods(env: &TestEnv, namespace: &str) {
    match kubectl(env, &["get", "pods", "-o", "wide", "-n", namespace], None) {
        Ok(text) => println!("kubectl get pods -o wide -n {namespace}:\n{text}"),
        Err(err) => println!("kubectl get pods: {err:#}"),
    }
}

/// Requests small enough for several jobs on one test node (the examples ask for production
/// sizes).
const TEST_RESOURCES: &str = "{requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 1Gi}}";

/// A StreamJob manifest (e.g. one of `examples/`) made to run in this environment: the
/// processor's image from the registry, the broker, Redis and GCS endpoint as the pods reach
/// them, and requests a test node can hold. Everything else is the manifest's own.
pub fn for_this_cluster(env: &TestEnv, manifest: &str) -> anyhow::Result<String> {
    let mut job: serde_yaml::Value = serde_yaml::from_str(manifest)?;
    let spec = job
        .get_mut("spec")
        .ok_or_else(|| anyhow::anyhow!("the manifest has no spec"))?;
    let processor = spec
        .get("processor")
        .and_then(serde_yaml::Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the manifest has no spec.processor"))?
        .to_owned();
    spec["image"] = image(env, &processor)?.into();
    spec["resources"] = serde_yaml::from_str(TEST_RESOURCES)?;
    if let Some(kafka) = spec.get_mut("kafka") {
        kafka["bootstrapServers"] = pod_facing(env, "KAFKA_BOOTSTRAP_SERVERS")?.into();
    }
    if let Some(redis) = spec.get_mut("redis") {
        redis["url"] = pod_facing(env, "REDIS_URL")?.into();
    }
    if let Some(gcs) = spec.get_mut("checkpoint").and_then(|c| c.get_mut("gcs")) {
        gcs["endpoint"] = pod_facing(env, "GCS_ENDPOINT")?.into();
    }
    Ok(serde_yaml::to_string(&job)?)
}
