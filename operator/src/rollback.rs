//! The I/O of a rollback: the stable spec read back from the status, and the pods of a stuck
//! revision (read to say why it is stuck, deleted so that the stable template replaces them).
//! The decisions are in `rollout`.

use crate::builders::selector_labels;
use crate::crd::StreamJob;
use crate::rollout;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};

/// The job as it was at its last stable spec (that spec and generation, the job's metadata
/// and status otherwise); `None` when none is recorded or it no longer parses.
pub fn stable_job(job: &StreamJob) -> Option<StreamJob> {
    let status = job.status.as_ref()?;
    let (generation, spec) = (
        status.last_stable_generation?,
        status.last_stable_spec.as_ref()?,
    );
    match serde_json::from_str(spec) {
        Ok(spec) => {
            let mut stable = job.clone();
            stable.spec = spec;
            stable.metadata.generation = Some(generation);
            Some(stable)
        }
        Err(err) => {
            // Written by an operator whose schema differed: no rollback to it.
            tracing::warn!(job = %job.name_any(), %err, "status.lastStableSpec does not parse");
            None
        }
    }
}

/// The job's pods at StatefulSet revision `revision`.
async fn pods_at(
    client: &Client,
    namespace: &str,
    name: &str,
    revision: &str,
) -> Result<Vec<Pod>, kube::Error> {
    let mut selector: Vec<String> = selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    selector.push(format!("controller-revision-hash={revision}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?
        .items)
}

/// Why a pod at `revision` is not ready, if one says; a failed read is logged and leaves the
/// message without it.
pub async fn pod_problem(
    client: &Client,
    namespace: &str,
    name: &str,
    revision: &str,
) -> Option<String> {
    match pods_at(client, namespace, name, revision).await {
        Ok(pods) => rollout::pod_problem(&pods),
        Err(err) => {
            tracing::warn!(job = %format!("{namespace}/{name}"), revision, %err, "could not list the pods of a stuck rollout");
            None
        }
    }
}

/// Deletes the pods at the stuck `revision` that are not ready. The StatefulSet controller does
/// not always replace them after a rollback (kubernetes/kubernetes#67250: a pod that never
/// became ready holds the rolling update); the StatefulSet recreates them at its update
/// revision, the stable template. Ready pods are left to the rolling update. Failures are
/// logged: the next pass tries again.
pub async fn replace_stuck_pods(client: &Client, namespace: &str, name: &str, revision: &str) {
    let job = format!("{namespace}/{name}");
    let pods = match pods_at(client, namespace, name, revision).await {
        Ok(pods) => pods,
        Err(err) => {
            tracing::warn!(%job, revision, %err, "could not list the pods of the rolled-back revision");
            return;
        }
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for pod in pods.iter().filter(|p| !rollout::is_ready(p)) {
        let pod_name = pod.name_any();
        match api.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(%job, pod = %pod_name, revision, "deleted a stuck pod of the rolled-back revision")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => tracing::warn!(%job, pod = %pod_name, %err, "could not delete a stuck pod"),
        }
    }
}
