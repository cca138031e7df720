//! Prometheus helpers: scrape targets through the file_sd directory, and instant queries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A scrape target registered in `$PROMETHEUS_TARGETS_DIR`; removed when dropped.
pub struct Target {
    file: PathBuf,
}

impl Target {
    /// Registers `address` (host:port) with `labels`; written atomically so Prometheus never
    /// reads half a file.
    pub fn register(
        targets_dir: &str,
        name: &str,
        address: &str,
        labels: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let dir = PathBuf::from(targets_dir);
        let file = dir.join(format!("{name}.json"));
        let partial = dir.join(format!(".{name}.tmp"));
        let targets = serde_json::json!([{ "targets": [address], "labels": labels }]);
        std::fs::write(&partial, serde_json::to_vec(&targets)?)?;
        std::fs::rename(&partial, &file)?;
        Ok(Self { file })
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Polls the instant query `query` until its first sample's value satisfies `done` or
/// `timeout` passes; returns the last value seen and the last raw answer.
pub async fn query_until(
    prometheus: &str,
    query: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<(Option<String>, serde_json::Value)> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        let answer: serde_json::Value = http
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await?
            .json()
            .await?;
        let value = answer["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned);
        if value.as_deref().is_some_and(&done) || Instant::now() > deadline {
            return Ok((value, answer));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Registers every pod of `namespace` matching `selector` that asks to be scraped (the
/// `prometheus.io/scrape`, `port` and `path` annotations), labelled as the usual
/// `kubernetes-pods` job labels them: `namespace`, `pod`, and each pod label with its name's
/// other characters as `_`. Pods are listed through the API server now (Debian's Prometheus
/// has no Kubernetes discovery); the targets go when the returned values are dropped.
pub async fn scrape_pods(
    targets_dir: &str,
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<Vec<Target>> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await?;
    let mut targets = Vec::new();
    for pod in pods.items {
        let meta = &pod.metadata;
        let annotation = |key: &str| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(&format!("prometheus.io/{key}")))
                .cloned()
        };
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let (Some("true"), Some(port), Some(ip)) =
            (annotation("scrape").as_deref(), annotation("port"), ip)
        else {
            continue;
        };
        let name = meta.name.clone().unwrap_or_default();
        let mut labels = serde_json::Map::new();
        for (key, value) in meta.labels.iter().flatten() {
            let key: String = key
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            labels.insert(key, value.clone().into());
        }
        labels.insert("namespace".into(), namespace.into());
        labels.insert("pod".into(), name.clone().into());
        if let Some(path) = annotation("path") {
            labels.insert("__metrics_path__".into(), path.into());
        }
        targets.push(Target::register(
            targets_dir,
            &format!("pod-{namespace}-{name}"),
            &format!("{ip}:{port}"),
            labels.into(),
        )?);
    }
    Ok(targets)
}
