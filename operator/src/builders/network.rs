//! The job's NetworkPolicy: its pods take ingress on the HTTP port (metrics, probes,
//! feature-api's API) only from pods of the job's own namespace and of the namespaces the spec
//! lists. The processors accept no other connection (they reach out to Kafka, Redis and GCS,
//! which egress rules would have to know; egress is left open). With
//! `networkPolicy.enabled: false` the policy admits every source instead of disappearing, so
//! the operator never has to find and delete one.

use super::metadata::JobMeta;
use super::pod::HTTP_PORT;
use crate::crd::StreamJob;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label the API server sets on every namespace to its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub(super) fn network_policy(meta: &JobMeta, job: &StreamJob) -> NetworkPolicy {
    let spec = &job.spec.network_policy;
    let rule = if spec.enabled {
        let mut namespaces = vec![meta.namespace.clone()];
        namespaces.extend(spec.allow_from_namespaces.iter().cloned());
        namespaces.sort();
        namespaces.dedup();
        NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: NAMESPACE_NAME_LABEL.into(),
                        operator: "In".into(),
                        values: Some(namespaces),
                    }]),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(HTTP_PORT)),
                protocol: Some("TCP".into()),
                ..NetworkPolicyPort::default()
            }]),
        }
    } else {
        // One rule without `from` or `ports`: everything.
        NetworkPolicyIngressRule::default()
    };
    NetworkPolicy {
        metadata: meta.child(meta.name.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(meta.selector.clone()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![rule]),
            ..NetworkPolicySpec::default()
        }),
    }
}
