//! The workload (StatefulSet or Deployment), its Services and its PodDisruptionBudget.

use super::metadata::{JobMeta, headless_name};
use super::pod::HTTP_PORT;
use crate::crd::{OnDelete, StreamJob};
use crate::parallelism::Plan;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodTemplateSpec, Service, ServicePort,
    ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// StatefulSet annotation: the StreamJob generation whose spec it was built from (the stable
/// spec's during a rollback).
pub const SPEC_GENERATION_ANNOTATION: &str = "trendstream.io/spec-generation";

fn selector(meta: &JobMeta) -> LabelSelector {
    LabelSelector {
        match_labels: Some(meta.selector.clone()),
        ..LabelSelector::default()
    }
}

/// Replicas are always sent: with an autoscaler, the plan carries the count the workload runs
/// now (the autoscaler's choice, kept inside its bounds), so the operator never undoes a scaling
/// decision, and a workload whose autoscaler has no metrics yet still starts at its minimum.
/// (Leaving the field out of the apply would hand it back to its default of 1.)
fn owned_replicas(plan: &Plan) -> Option<i32> {
    Some(plan.replicas)
}

pub(super) fn stateful_set(
    meta: &JobMeta,
    job: &StreamJob,
    plan: &Plan,
    template: PodTemplateSpec,
) -> StatefulSet {
    let checkpoint = &job.spec.checkpoint;
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("state".into()),
            labels: Some(meta.selector.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: checkpoint.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(checkpoint.volume_size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let when_deleted = match checkpoint.on_delete {
        OnDelete::Retain => "Retain",
        OnDelete::Delete => "Delete",
    };
    let mut metadata = meta.child(meta.name.clone());
    if let Some(generation) = job.metadata.generation {
        // On the StatefulSet, not its pod template: tells which spec it was built from
        // without rolling the pods when only the generation changes.
        metadata.annotations = Some(BTreeMap::from([(
            SPEC_GENERATION_ANNOTATION.to_owned(),
            generation.to_string(),
        )]));
    }
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: owned_replicas(plan),
            selector: selector(meta),
            service_name: Some(headless_name(&meta.name)),
            // Replicas are independent partition owners: start and stop them together.
            pod_management_policy: Some("Parallel".into()),
            template,
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(when_deleted.into()),
                    // A volume kept on scale-down lets a partition come back to warm state.
                    when_scaled: Some("Retain".into()),
                },
            ),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

pub(super) fn deployment(meta: &JobMeta, plan: &Plan, template: PodTemplateSpec) -> Deployment {
    Deployment {
        metadata: meta.child(meta.name.clone()),
        spec: Some(DeploymentSpec {
            replicas: owned_replicas(plan),
            selector: selector(meta),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn http_port() -> ServicePort {
    ServicePort {
        name: Some("http".into()),
        port: HTTP_PORT,
        target_port: Some(IntOrString::String("http".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Metrics, health and (for feature-api) the REST API.
pub(super) fn service(meta: &JobMeta) -> Service {
    Service {
        metadata: meta.child(meta.name.clone()),
        spec: Some(ServiceSpec {
            selector: Some(meta.selector.clone()),
            ports: Some(vec![http_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Stable per-replica DNS names for the StatefulSet.
pub(super) fn headless_service(meta: &JobMeta) -> Service {
    Service {
        metadata: meta.child(headless_name(&meta.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(meta.selector.clone()),
            ports: Some(vec![http_port()]),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// One replica at a time may be evicted: its partitions move to the others while it is away.
pub(super) fn disruption_budget(meta: &JobMeta) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta.child(meta.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(meta)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
