//! Desired state: pure functions from a `StreamJob` (and what the operator knows about the
//! cluster, such as the partition count) to the child objects it should own. No I/O here; the
//! reconciler applies what these return, and the tests assert on it directly.

mod autoscaler;
mod metadata;
mod network;
mod pod;
mod workload;

pub use metadata::{FIELD_MANAGER, child_name, headless_name, selector_labels};
pub use pod::{CONFIG_HASH_ANNOTATION, HTTP_PORT, STATE_MOUNT};
pub use workload::SPEC_GENERATION_ANNOTATION;

use crate::crd::StreamJob;
use crate::parallelism::{self, Plan};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

/// Operator-wide settings the builders need besides the job itself.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Image registry (and repository prefix) for the processors' default images.
    pub image_registry: String,
    /// Tag of the default images.
    pub image_tag: String,
    /// Name of the external metric the HPAs read consumer lag from (prometheus-adapter).
    pub lag_metric: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            image_registry: "ghcr.io/trendstream".into(),
            image_tag: env!("CARGO_PKG_VERSION").into(),
            lag_metric: "trendstream_consumer_group_lag".into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("StreamJob has no {0}; it must come from the API server")]
    MissingMetadata(&'static str),
    #[error("spec.{field}: {message}")]
    InvalidSpec {
        field: &'static str,
        message: String,
    },
}

/// Everything a job owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub plan: Plan,
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub service: Service,
    pub workload: Workload,
    /// The HPA; `None` means any existing one is to be deleted.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub disruption_budget: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Stream processors: a StatefulSet with a volume per replica, and its headless Service.
    Stateful {
        stateful_set: Box<StatefulSet>,
        headless: Box<Service>,
    },
    /// feature-api.
    Stateless(Box<Deployment>),
}

impl Desired {
    /// A digest of every child, so the reconciler can tell an unchanged desired state from a
    /// changed one without sending it to the API server.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let mut add = |bytes: Result<Vec<u8>, serde_json::Error>| {
            // A child that cannot be serialized is also one that cannot be applied; hashing
            // the error text keeps the digest distinct without hiding the failure later.
            match bytes {
                Ok(bytes) => hasher.update(&bytes),
                Err(err) => hasher.update(err.to_string().as_bytes()),
            }
        };
        add(serde_json::to_vec(&self.service_account));
        add(serde_json::to_vec(&self.config_map));
        add(serde_json::to_vec(&self.service));
        match &self.workload {
            Workload::Stateful {
                stateful_set,
                headless,
            } => {
                add(serde_json::to_vec(stateful_set));
                add(serde_json::to_vec(headless));
            }
            Workload::Stateless(deployment) => add(serde_json::to_vec(deployment)),
        }
        add(serde_json::to_vec(&self.autoscaler));
        add(serde_json::to_vec(&self.disruption_budget));
        add(serde_json::to_vec(&self.network_policy));
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Builds every child of `job` for a job whose input has `partitions` partitions and whose
/// workload runs `current_replicas` now (`None` before it exists).
pub fn desired(
    job: &StreamJob,
    partitions: i32,
    current_replicas: Option<i32>,
    defaults: &Defaults,
) -> Result<Desired, BuildError> {
    let meta = metadata::JobMeta::new(job)?;
    let plan = parallelism::plan(&job.spec, partitions, current_replicas);
    let config_map = pod::config_map(&meta, job);
    let template = pod::template(&meta, job, partitions, defaults, &config_map)?;
    let workload = if job.spec.processor.is_stateful() {
        Workload::Stateful {
            stateful_set: Box::new(workload::stateful_set(&meta, job, &plan, template)),
            headless: Box::new(workload::headless_service(&meta)),
        }
    } else {
        Workload::Stateless(Box::new(workload::deployment(&meta, &plan, template)))
    };
    Ok(Desired {
        plan,
        service_account: pod::service_account(&meta, job),
        config_map,
        service: workload::service(&meta),
        autoscaler: autoscaler::hpa(&meta, job, &plan, defaults)?,
        disruption_budget: workload::disruption_budget(&meta),
        network_policy: network::network_policy(&meta, job),
        workload,
    })
}

#[cfg(test)]
mod tests;
