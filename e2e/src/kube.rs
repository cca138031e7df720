//! Kubernetes helpers: kubectl and kube-rs against the test environment's API server, or any
//! real cluster when `KUBECONFIG` is set in the environment.

use crate::{TestEnv, unique_name};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trendstream_operator::crd::StreamJob;

/// The kubeconfig to use: `KUBECONFIG` from the process environment (a real cluster), else the
/// one `e2e/env/up` wrote.
pub fn kubeconfig(env: &TestEnv) -> anyhow::Result<PathBuf> {
    match std::env::var_os("KUBECONFIG") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Ok(PathBuf::from(env.get("KUBECONFIG")?)),
    }
}

/// The kubectl to run: the one the environment built, else the one on PATH.
pub fn kubectl_binary(env: &TestEnv) -> String {
    env.get("KUBECTL")
        .map(str::to_owned)
        .unwrap_or_else(|_| "kubectl".to_owned())
}

/// Runs kubectl with `stdin`; an error carries kubectl's stderr.
pub fn kubectl(env: &TestEnv, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new(kubectl_binary(env))
        .arg("--kubeconfig")
        .arg(kubeconfig(env)?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(mut input), Some(text)) = (child.stdin.take(), stdin) {
        input.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8(output.stdout)?)
}

pub async fn client(env: &TestEnv) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig(env)?)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A namespace for one test, deleted when the test is done (even when it failed).
pub async fn with_namespace<T, F, Fut>(client: &Client, prefix: &str, test: F) -> anyhow::Result<T>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = unique_name(prefix);
    let mut object = Namespace::default();
    object.metadata.name = Some(name.clone());
    namespaces.create(&PostParams::default(), &object).await?;
    let result = test(client.clone(), name.clone()).await;
    // A StreamJob whose operator is gone would keep its finalizer, and the namespace would
    // never finish terminating: release them first.
    let jobs: Api<StreamJob> = Api::namespaced(client.clone(), &name);
    if let Ok(list) = jobs.list(&ListParams::default()).await {
        let release = serde_json::json!({ "metadata": { "finalizers": null } });
        for job in list.items {
            let _ = jobs
                .patch(
                    &job.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&release),
                )
                .await;
        }
    }
    namespaces
        .delete(&name, &DeleteParams::background())
        .await?;
    result
}

/// Polls `check` every 250 ms until it returns `Some`, failing after `timeout` with the last
/// error or value it saw.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "not yet".to_owned(),
            Err(err) => format!("{err:#}"),
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: not reached within {timeout:?} ({last})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Applies `crds/` and waits until the StreamJob CRD is established.
pub fn install_crd(env: &TestEnv) -> anyhow::Result<()> {
    let crds = crds_dir();
    let crds = crds.to_string_lossy();
    kubectl(
        env,
        &["apply", "--server-side", "--force-conflicts", "-f", &crds],
        None,
    )?;
    kubectl(
        env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/streamjobs.trendstream.io",
        ],
        None,
    )?;
    Ok(())
}

/// The workspace's `crds/` directory.
pub fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

/// The workspace's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}
