//! Names, labels and owner references shared by every child object.

use super::BuildError;
use crate::crd::StreamJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use std::collections::BTreeMap;

/// The server-side-apply field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "trendstream-operator";

/// The job's children share its name (the headless Service adds a suffix).
pub fn child_name(job_name: &str) -> String {
    job_name.to_owned()
}

pub fn headless_name(job_name: &str) -> String {
    format!("{job_name}-headless")
}

/// Labels that select the job's pods. Stable for the job's life: a StatefulSet's selector
/// cannot change.
pub fn selector_labels(job_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), job_name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

/// What every builder needs to know about the job itself.
pub(super) struct JobMeta {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub labels: BTreeMap<String, String>,
    pub selector: BTreeMap<String, String>,
}

impl JobMeta {
    pub fn new(job: &StreamJob) -> Result<Self, BuildError> {
        let name = job
            .metadata
            .name
            .clone()
            .ok_or(BuildError::MissingMetadata("name"))?;
        let namespace = job
            .metadata
            .namespace
            .clone()
            .ok_or(BuildError::MissingMetadata("namespace"))?;
        let owner = job
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMetadata("uid"))?;
        let selector = selector_labels(&name);
        let mut labels = selector.clone();
        labels.insert(
            "app.kubernetes.io/name".into(),
            job.spec.processor.name().into(),
        );
        labels.insert("app.kubernetes.io/part-of".into(), "trendstream".into());
        labels.insert(
            "app.kubernetes.io/component".into(),
            if job.spec.processor.is_stateful() {
                "stream-processor"
            } else {
                "api"
            }
            .into(),
        );
        Ok(Self {
            name,
            namespace,
            owner,
            labels,
            selector,
        })
    }

    /// Metadata of a child called `name`, owned by the job.
    pub fn child(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}
