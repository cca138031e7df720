//! Kubernetes smoke test against the real kube-apiserver, controller-manager and scheduler,
//! and a real node (kubelet, containerd, runc): pods run containers from the environment's
//! registry, and `kubectl logs` and `exec` reach them through the kubelet.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use std::path::Path;
use std::time::{Duration, Instant};
use trendstream_e2e::TestEnv;
use trendstream_e2e::fleet::{image, is_ready};
use trendstream_e2e::kube::{client, kubectl, with_namespace};

#[tokio::test]
async fn a_crd_and_resource_applied_with_kubectl_read_back_with_kube_rs() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    println!("kube-apiserver at {}", env.get("KUBE_APISERVER_URL")?);
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/widget-crd.yaml");
    kubectl(&env, &["apply", "-f", &crd.to_string_lossy()], None)?;
    kubectl(
        &env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/smokewidgets.smoke.trendstream.io",
        ],
        None,
    )?;
    let client = client(&env).await?;
    with_namespace(&client, "smoke", |client, namespace| async move {
        let manifest = format!(
            "apiVersion: smoke.trendstream.io/v1\nkind: SmokeWidget\nmetadata:\n  name: fraud\n  namespace: {namespace}\nspec:\n  partitions: 12\n  processor: fraud-detector\n"
        );
        kubectl(&env, &["apply", "-f", "-"], Some(&manifest))?;

        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("smoke.trendstream.io", "v1", "SmokeWidget"));
        let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
        let widget = widgets.get("fraud").await?;
        assert_eq!(widget.data["spec"]["partitions"], 12);
        assert_eq!(widget.data["spec"]["processor"], "fraud-detector");

        // The API server enforces the CRD's schema.
        let invalid = manifest.replace("partitions: 12", "partitions: 0");
        let rejected = kubectl(&env, &["apply", "-f", "-"], Some(&invalid)).unwrap_err().to_string();
        assert!(rejected.contains("spec.partitions"), "{rejected}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_deployment_runs_containers_on_the_real_node() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    // Against another cluster: any node will do.
    let node = env.get("NODE_NAME").ok().map(str::to_owned);
    let image = image(&env, "debian-base")?;
    println!(
        "kube-apiserver at {}, node {node:?}, image {image}",
        env.get("KUBE_APISERVER_URL")?
    );
    let client = client(&env).await?;
    with_namespace(&client, "smoke", |client, namespace| async move {
        // As the operator's pods run: non-root, read-only root filesystem, no capabilities.
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "smoke" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "smoke" } },
                "template": {
                    "metadata": { "labels": { "app": "smoke" } },
                    "spec": {
                        "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                             "seccompProfile": { "type": "RuntimeDefault" } },
                        "containers": [{
                            "name": "app",
                            "image": image,
                            "command": ["sh", "-c", "echo hello from $(id -u) on $(hostname); exec sleep 3600"],
                            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
                            "securityContext": { "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                                 "capabilities": { "drop": ["ALL"] } }
                        }]
                    }
                }
            }
        }))?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        deployments
            .create(&PostParams::default(), &deployment)
            .await?;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let list = pods
                .list(&ListParams::default().labels("app=smoke"))
                .await?;
            let ready: Vec<&Pod> = list.items.iter().filter(|pod| is_ready(pod)).collect();
            if ready.len() == 2 {
                for pod in ready {
                    if let Some(node) = &node {
                        let spec = pod.spec.as_ref();
                        assert_eq!(spec.and_then(|s| s.node_name.as_deref()), Some(node.as_str()));
                    }
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let logs = kubectl(&env, &["logs", "-n", &namespace, &name], None)?;
                    assert!(logs.contains("hello from 65532"), "kubectl logs {name}: {logs}");
                    let release = kubectl(
                        &env,
                        &["exec", "-n", &namespace, &name, "--", "cat", "/etc/debian_version"],
                        None,
                    )?;
                    assert!(!release.trim().is_empty(), "kubectl exec {name}");
                    println!("{name}: {} on Debian {}", logs.trim(), release.trim());
                }
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "pods not Ready in time: {:?}",
                list.items
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let status = deployments.get("smoke").await?.status.unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ready_replicas = status.ready_replicas;
        while ready_replicas != Some(2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            ready_replicas = deployments
                .get("smoke")
                .await?
                .status
                .and_then(|s| s.ready_replicas);
        }
        assert_eq!(
            ready_replicas,
            Some(2),
            "the Deployment reports its replicas Ready"
        );
        Ok(())
    })
    .await
}
