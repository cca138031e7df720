//! The HorizontalPodAutoscaler (autoscaling/v2): consumer lag per replica from an external
//! metric (served by prometheus-adapter from the processors' lag gauge) and CPU, with the
//! scale-down stabilization the job asks for.

use super::metadata::JobMeta;
use super::{BuildError, Defaults};
use crate::crd::StreamJob;
use crate::duration;
use crate::parallelism::Plan;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HPAScalingPolicy, HPAScalingRules,
    HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

pub(super) fn hpa(
    meta: &JobMeta,
    job: &StreamJob,
    plan: &Plan,
    defaults: &Defaults,
) -> Result<Option<HorizontalPodAutoscaler>, BuildError> {
    let (Some(bounds), Some(autoscaling)) = (plan.autoscale, job.spec.autoscaling.as_ref()) else {
        return Ok(None);
    };
    let stabilization = duration::parse(&autoscaling.scale_down_stabilization).map_err(|err| {
        BuildError::InvalidSpec {
            field: "autoscaling.scaleDownStabilization",
            message: err.to_string(),
        }
    })?;
    let mut metrics = vec![MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(autoscaling.cpu_utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }];
    let kind = if job.spec.processor.is_stateful() {
        let group = job
            .spec
            .kafka
            .consumer_group
            .clone()
            .unwrap_or_else(|| format!("{}.{}", meta.namespace, meta.name));
        metrics.insert(
            0,
            MetricSpec {
                type_: "External".into(),
                external: Some(ExternalMetricSource {
                    metric: MetricIdentifier {
                        name: defaults.lag_metric.clone(),
                        selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "consumer_group".to_owned(),
                                group,
                            )])),
                            ..LabelSelector::default()
                        }),
                    },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity(autoscaling.lag_per_replica.to_string())),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            },
        );
        "StatefulSet"
    } else {
        "Deployment"
    };
    let seconds = i32::try_from(stabilization.as_secs())
        .unwrap_or(i32::MAX)
        .min(3600);
    Ok(Some(HorizontalPodAutoscaler {
        metadata: meta.child(meta.name.clone()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: kind.into(),
                name: meta.name.clone(),
            },
            min_replicas: Some(bounds.min),
            max_replicas: bounds.max,
            metrics: Some(metrics),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                // Moving partitions costs a rebalance and a state restore: scale down slowly,
                // one replica at a time; scale up as fast as lag demands.
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(seconds),
                    select_policy: Some("Min".into()),
                    policies: Some(vec![HPAScalingPolicy {
                        type_: "Pods".into(),
                        value: 1,
                        period_seconds: 60,
                    }]),
                    ..HPAScalingRules::default()
                }),
                scale_up: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(0),
                    select_policy: Some("Max".into()),
                    policies: Some(vec![HPAScalingPolicy {
                        type_: "Percent".into(),
                        value: 100,
                        period_seconds: 30,
                    }]),
                    ..HPAScalingRules::default()
                }),
            }),
        },
        ..HorizontalPodAutoscaler::default()
    }))
}
