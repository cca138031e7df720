//! Runs the controller: watches StreamJobs and the children it owns, and reconciles.

use crate::builders::FIELD_MANAGER;
use crate::controller::{Context, error_policy, reconcile};
use crate::crd::StreamJob;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

fn api<K>(ctx: &Context, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Reconciles until `shutdown` resolves. The workloads are watched (their status is the job's
/// status), by label, so the operator caches its own objects and not every StatefulSet of the
/// cluster; the other children are put back by the periodic resync if someone changes them.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let jobs: Api<StreamJob> = api(&ctx, ns);
    Controller::new(jobs, watcher::Config::default().any_semantic())
        .owns(api::<StatefulSet>(&ctx, ns), owned.clone())
        .owns(api::<Deployment>(&ctx, ns), owned)
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
