//! The reconciler: applies the builders' desired state with server-side apply, observes the
//! workload and the broker, and reports status, conditions and Events.

use crate::builders::{
    self, BuildError, Defaults, Desired, FIELD_MANAGER, SPEC_GENERATION_ANNOTATION, Workload,
    selector_labels,
};
use crate::crd::{OnDelete, Phase, StreamJob, StreamJobStatus};
use crate::kafka::KafkaInspector;
use crate::lag::{LagMonitor, LagTarget};
use crate::metrics::Metrics;
use crate::rollout::{self, Revisions};
use crate::status::{self, Observed};
use crate::{duration, rollback};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trendstream_service::kafka::{KafkaCluster, KafkaSecurity};

pub const FINALIZER: &str = "trendstream.io/cleanup";

/// How often a healthy job is looked at again (consumer lag moves without any watch event).
const RESYNC: Duration = Duration::from_secs(30);
/// How often a job that is still converging is looked at again. Changes of its workload
/// trigger a reconciliation anyway; this only bounds how long a missed one can go unnoticed,
/// without loading the API server when hundreds of jobs converge at once.
const CONVERGING: Duration = Duration::from_secs(15);
/// How long an unchanged desired state goes without being applied again: the bound on how long
/// a child changed or deleted by hand stays that way (a deleted workload is noticed at once).
const REAPPLY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid StreamJob: {0}")]
    Build(#[from] BuildError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the watch cache of {0} stopped")]
    CacheStopped(&'static str),
}

impl Error {
    /// For metrics and logs: API trouble is transient, a bad spec waits for a new spec.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "api",
            Self::Build(_) => "spec",
            Self::CacheStopped(_) => "cache",
            Self::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                _ => "finalizer",
            },
        }
    }
}

/// The children the operator watches, as its watch caches last saw them.
#[derive(Clone)]
pub struct Caches {
    pub statefulsets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    pub autoscalers: Store<HorizontalPodAutoscaler>,
}

impl Caches {
    /// Waits for each cache's first complete list: before it, a missing object would look
    /// deleted (and an HPA's replica count would be overwritten by the spec's).
    async fn ready(&self) -> Result<(), Error> {
        self.statefulsets
            .wait_until_ready()
            .await
            .map_err(|_| Error::CacheStopped("StatefulSets"))?;
        self.deployments
            .wait_until_ready()
            .await
            .map_err(|_| Error::CacheStopped("Deployments"))?;
        self.autoscalers
            .wait_until_ready()
            .await
            .map_err(|_| Error::CacheStopped("HorizontalPodAutoscalers"))
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub kafka: KafkaInspector,
    /// Every job's consumer lag, read from the broker in the background (run by `main`).
    pub lag: Arc<LagMonitor>,
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// Consecutive failures per job, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Per job, the fingerprint of the children last applied and when: an unchanged desired
    /// state is not sent again until REAPPLY has passed (server-side apply of an unchanged
    /// object still costs the API server a full merge).
    applied: Mutex<HashMap<String, (String, Instant)>>,
    /// Jobs whose HPA this process applied and has not deleted since: the autoscaler cache
    /// may not have seen an HPA applied moments ago (a suspend right after it must delete it).
    autoscaled: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(
        client: Client,
        defaults: Defaults,
        kafka: KafkaInspector,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        caches: Caches,
    ) -> Self {
        Self {
            client,
            defaults,
            lag: Arc::new(LagMonitor::new(kafka.clone(), metrics.jobs.clone())),
            kafka,
            reporter,
            metrics,
            caches,
            failures: Mutex::default(),
            applied: Mutex::default(),
            autoscaled: Mutex::default(),
        }
    }

    /// Whether the job may have an HPA: the cache has one, or this process applied one.
    fn may_have_autoscaler(&self, job_key: &str, namespace: &str, name: &str) -> bool {
        self.autoscaled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(job_key)
            || self
                .caches
                .autoscalers
                .get(&ObjectRef::new(name).within(namespace))
                .is_some()
    }

    fn remember_autoscaler(&self, job_key: &str, applied: bool) {
        let mut autoscaled = self.autoscaled.lock().unwrap_or_else(|p| p.into_inner());
        if applied {
            autoscaled.insert(job_key.to_owned());
        } else {
            autoscaled.remove(job_key);
        }
    }

    fn applied_recently(&self, key: &str, fingerprint: &str) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied
            .get(key)
            .is_some_and(|(last, at)| last == fingerprint && at.elapsed() < REAPPLY)
    }

    fn remember_applied(&self, key: &str, fingerprint: Option<String>) {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        match fingerprint {
            Some(fingerprint) => applied.insert(key.to_owned(), (fingerprint, Instant::now())),
            None => applied.remove(key),
        };
    }

    fn record_outcome(&self, key: &str, failed: bool) -> u32 {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if failed {
            let count = failures.entry(key.to_owned()).or_default();
            *count += 1;
            *count
        } else {
            failures.remove(key);
            0
        }
    }
}

fn key(job: &StreamJob) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = job
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let api: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let job_key = key(&job);
    let result = if job.meta().deletion_timestamp.is_none()
        && !job.finalizers().iter().any(|f| f == FINALIZER)
    {
        // A new job: add the finalizer and apply in the same pass. kube's finalizer helper
        // returns after the patch and waits for its watch event, one more round per job,
        // which is much of the latency when many jobs are created at once.
        match add_finalizer(&api, &job).await {
            Ok(job) => apply(&job, &ctx).await,
            Err(err) => Err(err),
        }
    } else {
        finalizer(&api, FINALIZER, job, |event| async {
            match event {
                Event::Apply(job) => apply(&job, &ctx).await,
                Event::Cleanup(job) => cleanup(&job, &ctx).await,
            }
        })
        .await
        .map_err(|err| Error::Finalizer(Box::new(err)))
    };
    ctx.metrics.observe(
        result.as_ref().err().map(Error::category),
        started.elapsed(),
    );
    if result.is_ok() {
        ctx.record_outcome(&job_key, false);
    }
    result
}

/// Adds our finalizer with the JSON patch kube's finalizer helper sends (a `test` guards against
/// a concurrent change of the list); returns the job as the API server now has it.
async fn add_finalizer(api: &Api<StreamJob>, job: &StreamJob) -> Result<StreamJob, Error> {
    let patch = if job.finalizers().is_empty() {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    } else {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": job.finalizers() },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
        ])
    };
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|err| Error::Kube(kube::Error::SerdeError(err)))?;
    Ok(api
        .patch(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?)
}

/// Retries with exponential backoff: 1 s, 2 s, 4 s ... up to 5 minutes.
pub fn error_policy(job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = ctx.record_outcome(&key(&job), true);
    let delay = backoff(attempts);
    tracing::warn!(job = %key(&job), category = error.category(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

async fn apply(job: &StreamJob, ctx: &Context) -> Result<Action, Error> {
    let namespace = job
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let name = job.name_any();
    let previous = job.status.as_ref();
    let mut observed = Observed {
        generation: job.metadata.generation,
        suspended: job.spec.suspend,
        selector: selector_string(&name),
        partitions: job
            .spec
            .kafka
            .partitions
            .or(previous.and_then(|s| s.partitions)),
        // Kept as they are when this pass stops early (a broker that does not answer must
        // not end a rollback).
        rollout: rollout::Assessment {
            rollout: previous.and_then(|s| s.rollout.clone()),
            rollback: previous.and_then(|s| s.rollback.clone()),
        },
        ..Observed::default()
    };
    let stable = rollback::stable_job(job);
    // While rolled back, the children are built from the stable spec (the job's own spec is
    // tried again once it changes: a new generation).
    let rolled_back = previous
        .and_then(|s| s.rollback.as_ref())
        .filter(|r| Some(r.from_generation) == job.metadata.generation && stable.is_some());
    let runs = match (rolled_back, &stable) {
        (Some(_), Some(stable)) => stable,
        _ => job,
    };
    let readiness_timeout = duration::parse(&job.spec.rollout.readiness_timeout)
        .map_err(|err| format!("spec.rollout.readinessTimeout: {err}"));

    let partitions = match partitions(runs, ctx).await {
        Ok(partitions) => partitions,
        Err(message) => {
            observed.blocked = Some(("PartitionsUnknown".into(), message));
            report(job, ctx, &observed).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    observed.partitions = Some(partitions);

    let existing = observe_workload(job, &namespace, &name, ctx).await?;
    let current = existing.as_ref().map(|w| w.spec_replicas);
    let built =
        builders::desired(runs, partitions, current, &ctx.defaults).map_err(|e| e.to_string());
    let (desired, readiness_timeout) = match built.and_then(|d| Ok((d, readiness_timeout?))) {
        Ok(ok) => ok,
        Err(message) => {
            observed.blocked = Some(("InvalidSpec".into(), message));
            report(job, ctx, &observed).await?;
            return Ok(Action::await_change());
        }
    };
    let mut workload = apply_desired(&desired, existing, &namespace, job, ctx).await?;

    let stable_generation = stable.as_ref().and_then(|s| s.metadata.generation);
    let mut facts = rollout::Facts {
        now: k8s_openapi::jiff::Timestamp::now(),
        generation: job.metadata.generation.unwrap_or_default(),
        readiness_timeout,
        rollback_on_failure: job.spec.rollout.rollback_on_failure,
        stable_generation,
        workload: workload.revisions.as_ref(),
        pod_problem: None,
    };
    let previous_rollout = previous.and_then(|s| s.rollout.as_ref());
    let mut assessment = rollout::assess(&facts, previous_rollout, rolled_back);
    let problem;
    if let Some(revision) = assessment.newly_stuck(previous_rollout, rolled_back) {
        // Read the pods once, when the rollout is found stuck, to say why.
        problem = rollback::pod_problem(&ctx.client, &namespace, &name, revision).await;
        facts.pod_problem = problem.as_deref();
        assessment = rollout::assess(&facts, previous_rollout, rolled_back);
    }
    if let (Some(rollback), None, Some(stable)) = (&assessment.rollback, rolled_back, &stable) {
        tracing::warn!(job = %key(job), from = rollback.from_generation, to = rollback.to_generation, reason = %rollback.reason, "rolling back to the last stable spec");
        let partitions =
            self::partitions(stable, ctx)
                .await
                .map_err(|message| BuildError::InvalidSpec {
                    field: "kafka.partitions",
                    message: format!("of the stable spec: {message}"),
                })?;
        let desired = builders::desired(stable, partitions, current, &ctx.defaults)?;
        workload = apply_desired(&desired, None, &namespace, job, ctx).await?;
    }
    if let Some(rollback) = &assessment.rollback
        && workload
            .revisions
            .as_ref()
            .is_some_and(|r| r.back_from(&rollback.from_revision))
    {
        rollback::replace_stuck_pods(&ctx.client, &namespace, &name, &rollback.from_revision).await;
    }
    if assessment.rollback.is_none()
        && workload.revisions.as_ref().and_then(|r| r.spec_generation) == job.metadata.generation
        && let (Some(generation), Ok(spec)) =
            (job.metadata.generation, serde_json::to_string(&job.spec))
    {
        observed.running_spec = Some((generation, spec));
    }
    observed.rollout = assessment;
    observed.desired_replicas = workload.spec_replicas;
    observed.current_replicas = workload.replicas;
    observed.ready_replicas = workload.ready_replicas;
    observed.rolled_out = workload.rolled_out;
    // What the operator wants, not what the workload says: a StatefulSet scaled down by
    // someone else still counts its missing replicas as unavailable.
    ctx.metrics.jobs.set_replicas(
        &namespace,
        &name,
        desired.plan.replicas,
        workload.ready_replicas,
    );
    // Measured while suspended too: the lag a stopped job builds up is what it will face.
    if job.spec.processor.is_stateful() {
        observed.consumer_lag = lag(job, ctx).await;
    }
    let phase = report(job, ctx, &observed).await?;
    Ok(Action::requeue(
        if phase == Phase::Running || phase == Phase::Suspended {
            RESYNC
        } else {
            CONVERGING
        },
    ))
}

/// Applies `desired` unless the same was applied recently and the workload exists (`existing`
/// from the cache, `None` to apply regardless); returns the workload.
async fn apply_desired(
    desired: &Desired,
    existing: Option<WorkloadState>,
    namespace: &str,
    job: &StreamJob,
    ctx: &Context,
) -> Result<WorkloadState, Error> {
    let fingerprint = desired.fingerprint();
    let job_key = key(job);
    Ok(match existing {
        Some(existing) if ctx.applied_recently(&job_key, &fingerprint) => existing,
        _ => {
            ctx.remember_applied(&job_key, None);
            let applied = apply_children(desired, namespace, &job_key, ctx).await?;
            ctx.remember_applied(&job_key, Some(fingerprint));
            applied
        }
    })
}

/// The workload (StatefulSet or Deployment) as the API server reports it.
#[derive(Debug, Clone, PartialEq)]
struct WorkloadState {
    /// Replicas asked for (by the operator, or by the HPA).
    spec_replicas: i32,
    /// Replicas created.
    replicas: i32,
    ready_replicas: i32,
    /// The workload controller has seen the latest spec and updated every replica to it.
    rolled_out: bool,
    /// The StatefulSet's revisions (not tracked for Deployments).
    revisions: Option<Revisions>,
}

impl WorkloadState {
    fn of_stateful_set(sts: &StatefulSet) -> Self {
        let spec_replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = sts.status.clone().unwrap_or_default();
        let observed = status.observed_generation >= sts.metadata.generation;
        let updated_replicas = status.updated_replicas.unwrap_or(0);
        let ready_replicas = status.ready_replicas.unwrap_or(0);
        Self {
            spec_replicas,
            replicas: status.replicas,
            ready_replicas,
            rolled_out: observed && updated_replicas >= spec_replicas.min(status.replicas),
            revisions: Some(Revisions {
                observed,
                spec_generation: sts
                    .annotations()
                    .get(SPEC_GENERATION_ANNOTATION)
                    .and_then(|g| g.parse().ok()),
                current_revision: status.current_revision,
                update_revision: status.update_revision,
                replicas: status.replicas,
                updated_replicas,
                ready_replicas,
            }),
        }
    }

    fn of_deployment(deployment: &Deployment) -> Self {
        let spec_replicas = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        Self {
            spec_replicas,
            replicas: status.replicas.unwrap_or(0),
            ready_replicas: status.ready_replicas.unwrap_or(0),
            rolled_out: status.observed_generation >= deployment.metadata.generation
                && status.updated_replicas.unwrap_or(0) >= spec_replicas,
            revisions: None,
        }
    }
}

/// The job's workload as the watch cache has it, `None` before it exists.
async fn observe_workload(
    job: &StreamJob,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<Option<WorkloadState>, Error> {
    ctx.caches.ready().await?;
    Ok(if job.spec.processor.is_stateful() {
        ctx.caches
            .statefulsets
            .get(&ObjectRef::new(name).within(namespace))
            .map(|sts| WorkloadState::of_stateful_set(&sts))
    } else {
        ctx.caches
            .deployments
            .get(&ObjectRef::new(name).within(namespace))
            .map(|d| WorkloadState::of_deployment(&d))
    })
}

/// The partition count: from the spec, else from the broker.
async fn partitions(job: &StreamJob, ctx: &Context) -> Result<i32, String> {
    if let Some(partitions) = job.spec.kafka.partitions {
        return Ok(partitions);
    }
    if !job.spec.processor.is_stateful() {
        return Ok(1);
    }
    let kafka = kafka_cluster(job, ctx)
        .await?
        .ok_or("spec.kafka.bootstrapServers is not set")?;
    let topics = input_topics(job);
    ctx.kafka.partitions(&kafka, &topics).await.map_err(|err| {
        format!(
            "cannot discover the partitions of {}: {err}",
            topics.join(",")
        )
    })
}

/// The job's brokers, reached as its pods reach them: with the `KAFKA_*` keys of its
/// `kafka.securitySecretRef` Secret. `None` without bootstrap servers.
async fn kafka_cluster(job: &StreamJob, ctx: &Context) -> Result<Option<KafkaCluster>, String> {
    let Some(bootstrap) = job.spec.kafka.bootstrap_servers.as_deref() else {
        return Ok(None);
    };
    let security = match &job.spec.kafka.security_secret_ref {
        None => KafkaSecurity::default(),
        Some(secret_ref) => {
            let namespace = job.namespace().unwrap_or_default();
            let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
                .get(&secret_ref.name)
                .await
                .map_err(|err| {
                    format!(
                        "cannot read kafka.securitySecretRef {}: {err}",
                        secret_ref.name
                    )
                })?;
            let data = secret.data.unwrap_or_default();
            let variables: Vec<(&str, String)> = data
                .iter()
                .map(|(key, value)| (key.as_str(), String::from_utf8_lossy(&value.0).into_owned()))
                .collect();
            KafkaSecurity::from_variables(variables.iter().map(|(k, v)| (*k, v.as_str())))
                .map_err(|err| format!("kafka.securitySecretRef {}: {err}", secret_ref.name))?
        }
    };
    Ok(Some(KafkaCluster::new(bootstrap, security)))
}

async fn lag(job: &StreamJob, ctx: &Context) -> Option<i64> {
    let kafka = match kafka_cluster(job, ctx).await {
        Ok(kafka) => kafka?,
        Err(err) => {
            tracing::debug!(job = %key(job), %err, "consumer lag unavailable");
            return job.status.as_ref().and_then(|s| s.consumer_lag);
        }
    };
    ctx.lag
        .observe(LagTarget {
            namespace: job.namespace().unwrap_or_default(),
            name: job.name_any(),
            kafka,
            group: consumer_group(job),
            topics: input_topics(job),
        })
        .or_else(|| job.status.as_ref().and_then(|s| s.consumer_lag))
}

fn input_topics(job: &StreamJob) -> Vec<String> {
    if job.spec.kafka.input_topics.is_empty() {
        job.spec
            .processor
            .default_input_topics()
            .iter()
            .map(|t| (*t).to_owned())
            .collect()
    } else {
        job.spec.kafka.input_topics.clone()
    }
}

fn consumer_group(job: &StreamJob) -> String {
    job.spec
        .kafka
        .consumer_group
        .clone()
        .unwrap_or_else(|| format!("{}.{}", job.namespace().unwrap_or_default(), job.name_any()))
}

fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn apply_one<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?)
}

/// Applies every child; returns the workload as the API server answered the apply.
async fn apply_children(
    desired: &Desired,
    namespace: &str,
    job_key: &str,
    ctx: &Context,
) -> Result<WorkloadState, Error> {
    let client = &ctx.client;
    // What the pods depend on first: the API server refuses pods whose account does not exist
    // yet, then a pod rolled by a rules change must mount the new rules (the ConfigMap), and a
    // StatefulSet's pods get their DNS names from its headless Service. Then the workload, so
    // its pods start while the rest is applied, all at once.
    let headless = match &desired.workload {
        Workload::Stateful { headless, .. } => Some(headless.as_ref()),
        Workload::Stateless(_) => None,
    };
    apply_one(client, namespace, &desired.service_account).await?;
    futures::try_join!(apply_one(client, namespace, &desired.config_map), async {
        match headless {
            Some(service) => apply_one(client, namespace, service).await.map(drop),
            None => Ok(()),
        }
    },)?;
    let workload = match &desired.workload {
        Workload::Stateful { stateful_set, .. } => WorkloadState::of_stateful_set(
            &apply_one(client, namespace, stateful_set.as_ref()).await?,
        ),
        Workload::Stateless(deployment) => {
            WorkloadState::of_deployment(&apply_one(client, namespace, deployment.as_ref()).await?)
        }
    };
    let autoscaler = async {
        match &desired.autoscaler {
            Some(hpa) => {
                apply_one(client, namespace, hpa).await?;
                ctx.remember_autoscaler(job_key, true);
                Ok(())
            }
            None => {
                let name = desired.service.metadata.name.clone().unwrap_or_default();
                // Most jobs never had one: ask only when there may be one to delete.
                if !ctx.may_have_autoscaler(job_key, namespace, &name) {
                    return Ok(());
                }
                let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(err) => return Err(err.into()),
                }
                ctx.remember_autoscaler(job_key, false);
                Ok(())
            }
        }
    };
    futures::try_join!(
        apply_one(client, namespace, &desired.service),
        apply_one(client, namespace, &desired.disruption_budget),
        apply_one(client, namespace, &desired.network_policy),
        autoscaler,
    )?;
    Ok(workload)
}

/// Writes the status when it changed, and an Event when the phase did.
async fn report(job: &StreamJob, ctx: &Context, observed: &Observed) -> Result<Phase, Error> {
    let previous = job.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::status(observed, previous, now);
    let phase = new.phase.unwrap_or(Phase::Pending);
    if previous != Some(&new) {
        let api: Api<StreamJob> =
            Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
        let mut patch = serde_json::json!({ "status": new });
        // A merge patch keeps the fields it leaves out: clear those the new status drops (such
        // as consumerLag once the job is suspended, or rollout.stuck of a new rollout), or the
        // stored status would keep them and never compare equal to the computed one again.
        if let Some(Ok(old)) = previous.map(serde_json::to_value) {
            clear_dropped(&old, &mut patch["status"]);
        }
        api.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    let previous_phase = previous.and_then(|s| s.phase);
    if previous.map(event_reason) != Some(event_reason(&new)) {
        publish(job, ctx, phase, &new, previous_phase).await;
    }
    Ok(phase)
}

/// Sets to null, at any depth, the object fields of `old` that `new` lacks.
fn clear_dropped(old: &serde_json::Value, new: &mut serde_json::Value) {
    if let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (old, new) {
        for (key, old_value) in old {
            match new.get_mut(key) {
                Some(new_value) => clear_dropped(old_value, new_value),
                None => {
                    new.insert(key.clone(), serde_json::Value::Null);
                }
            }
        }
    }
}

/// An Event is published when this changes: the phase, or within Degraded a rollout found
/// stuck or rolled back (both Degraded, each worth its own Event).
fn event_reason(status: &StreamJobStatus) -> &str {
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.as_str());
    match (reason, status.phase) {
        (Some(reason @ ("RolloutStuck" | "RolledBack")), _) => reason,
        (_, Some(phase)) => phase.as_str(),
        (_, None) => "",
    }
}

async fn publish(
    job: &StreamJob,
    ctx: &Context,
    phase: Phase,
    status: &StreamJobStatus,
    previous: Option<Phase>,
) {
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let type_ = if matches!(phase, Phase::Degraded | Phase::Failed) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let note = match previous {
        Some(previous) => format!("{} -> {}: {message}", previous.as_str(), phase.as_str()),
        None => format!("{}: {message}", phase.as_str()),
    };
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let event = KubeEvent {
        type_,
        reason: event_reason(status).to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(job = %key(job), %err, "could not publish event");
    }
}

/// Runs before the job goes away: the children go with it through their owner references
/// (the garbage collector); what is not owned is cleaned up here, per `checkpoint.onDelete`.
async fn cleanup(job: &StreamJob, ctx: &Context) -> Result<Action, Error> {
    ctx.remember_applied(&key(job), None);
    ctx.remember_autoscaler(&key(job), false);
    let namespace = job.namespace().unwrap_or_default();
    ctx.lag.forget(&namespace, &job.name_any());
    ctx.metrics
        .jobs
        .remove_replicas(&namespace, &job.name_any());
    if job.spec.processor.is_stateful() && job.spec.checkpoint.on_delete == OnDelete::Delete {
        // StatefulSet volume claims are not owned by the job; delete them explicitly rather
        // than rely on the StatefulSet's retention policy alone.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = selector_string(&job.name_any());
        claims
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&selector),
            )
            .await?;
    }
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let note = match job.spec.checkpoint.on_delete {
        OnDelete::Delete => "state volumes deleted; children removed with the job",
        OnDelete::Retain => "state volumes and checkpoints retained; children removed with the job",
    };
    let event = KubeEvent {
        type_: EventType::Normal,
        reason: "Deleted".into(),
        note: Some(note.into()),
        action: "Cleanup".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &job.object_ref(&())).await {
        tracing::warn!(job = %key(job), %err, "could not publish event");
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}

#[cfg(test)]
#[path = "controller_mock_tests.rs"]
mod mock_tests;
