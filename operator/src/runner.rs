//! Runs the controller: watches StreamJobs and the children it owns, and reconciles.

use crate::builders::FIELD_MANAGER;
use crate::controller::{Caches, Context, error_policy, reconcile};
use crate::crd::StreamJob;
use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A cache of the operator's own objects of kind `K` (selected by label, so not every
/// StatefulSet of the cluster) and the stream that keeps it current: every change it sees,
/// deletions included. Managed fields are dropped; nothing reads them and they are most of an
/// applied object's size.
fn cached<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let stream = watcher(api::<K>(client, namespace), owned)
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Reconciles until `shutdown` resolves.
///
/// A job is reconciled when its spec changes (its generation: the operator's own status writes
/// do not trigger another pass) or it is being deleted, and when one of its workloads changes
/// (their status is the job's status). The workloads and autoscalers are read from watch caches,
/// not fetched per reconciliation: with hundreds of jobs converging at once, those reads were
/// most of the operator's requests. The other children are put back by the periodic re-apply if
/// someone changes them.
pub async fn run(
    client: Client,
    make_context: impl FnOnce(Caches) -> Context,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let (statefulsets, statefulset_changes) = cached::<StatefulSet>(&client, ns);
    let (deployments, deployment_changes) = cached::<Deployment>(&client, ns);
    let (autoscalers, autoscaler_changes) = cached::<HorizontalPodAutoscaler>(&client, ns);
    // Autoscalers trigger nothing (the HPA controller rewrites their status all the time); the
    // cache only tells whether one is there to delete.
    tokio::spawn(autoscaler_changes.for_each(|_| async {}));
    let ctx = Arc::new(make_context(Caches {
        statefulsets,
        deployments,
        autoscalers,
    }));

    let (jobs, writer) = reflector::store();
    let job_changes = watcher(
        api::<StreamJob>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(job_changes, jobs)
        .owns_stream(statefulset_changes)
        .owns_stream(deployment_changes)
        // A burst of changes (a StatefulSet's pods starting one after another) becomes one
        // reconciliation instead of one per change.
        .with_config(
            ControllerConfig::default()
                .concurrency(concurrency)
                .debounce(Duration::from_millis(100)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(job = %object, "reconciled"),
                Err(err) => tracing::debug!(%err, "reconcile error (retried by the error policy)"),
            }
        })
        .await;
}
