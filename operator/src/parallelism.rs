//! Replica arithmetic: how many replicas a job runs, and the autoscaler's bounds.
//!
//! A replica owns whole partitions, so more replicas than partitions would leave some idle:
//! every count here is capped at the partition count.

use crate::crd::StreamJobSpec;

/// Replica counts for one job at one partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Replicas the workload should run now (0 when suspended).
    pub replicas: i32,
    /// Autoscaler bounds, when autoscaling is on and the job is not suspended.
    pub autoscale: Option<Bounds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
}

/// Replicas when no autoscaler decides: a fixed count, or one per `partitionsPerReplica`
/// partitions (rounded up, so no partition is left without an owner).
pub fn static_replicas(spec: &StreamJobSpec, partitions: i32) -> i32 {
    let partitions = partitions.max(1);
    if let Some(replicas) = spec.parallelism.replicas {
        return if spec.processor.is_stateful() {
            replicas.clamp(0, partitions)
        } else {
            replicas.max(0)
        };
    }
    if !spec.processor.is_stateful() {
        return 2;
    }
    let per_replica = spec.parallelism.partitions_per_replica.unwrap_or(1).max(1);
    (partitions + per_replica - 1) / per_replica
}

/// The plan for a job whose input topics have `partitions` partitions. `current` is the replica
/// count the workload runs now: with an autoscaler, that is the autoscaler's decision, which the
/// plan keeps (only pulled back inside the bounds, e.g. after the bounds changed or before the
/// autoscaler has any metrics).
pub fn plan(spec: &StreamJobSpec, partitions: i32, current: Option<i32>) -> Plan {
    if spec.suspend {
        return Plan {
            replicas: 0,
            autoscale: None,
        };
    }
    let fixed = static_replicas(spec, partitions);
    let Some(autoscaling) = spec.autoscaling.as_ref().filter(|a| a.enabled) else {
        return Plan {
            replicas: fixed,
            autoscale: None,
        };
    };
    // Stateless servers (feature-api) are not bound by partitions.
    let ceiling = if spec.processor.is_stateful() {
        partitions.max(1)
    } else {
        i32::MAX
    };
    let max = autoscaling
        .max_replicas
        .unwrap_or(ceiling)
        .clamp(1, ceiling);
    let min = autoscaling.min_replicas.clamp(1, max);
    Plan {
        replicas: current.filter(|c| *c > 0).unwrap_or(fixed).clamp(min, max),
        autoscale: Some(Bounds { min, max }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalingSpec, ProcessorKind};

    fn spec(processor: ProcessorKind) -> StreamJobSpec {
        serde_json::from_value(serde_json::json!({ "processor": processor })).unwrap()
    }

    fn autoscaling(min: i32, max: Option<i32>) -> AutoscalingSpec {
        serde_json::from_value(serde_json::json!({ "minReplicas": min, "maxReplicas": max }))
            .unwrap()
    }

    #[test]
    fn partitions_per_replica_rounds_up() {
        let cases = [
            // (partitions, partitionsPerReplica, replicas)
            (12, 1, 12),
            (12, 2, 6),
            (12, 5, 3), // 5 + 5 + 2
            (12, 12, 1),
            (12, 50, 1),
            (7, 3, 3),
            (1, 4, 1),
        ];
        for (partitions, per_replica, expected) in cases {
            let mut job = spec(ProcessorKind::FraudDetector);
            job.parallelism.partitions_per_replica = Some(per_replica);
            assert_eq!(
                static_replicas(&job, partitions),
                expected,
                "{partitions} partitions, {per_replica} per replica"
            );
        }
    }

    #[test]
    fn the_default_is_one_replica_per_partition() {
        assert_eq!(
            static_replicas(&spec(ProcessorKind::SessionAggregator), 12),
            12
        );
    }

    #[test]
    fn fixed_replicas_are_capped_at_the_partition_count() {
        let mut job = spec(ProcessorKind::RevenueCalculator);
        job.parallelism.replicas = Some(20);
        assert_eq!(static_replicas(&job, 12), 12);
        job.parallelism.replicas = Some(3);
        assert_eq!(static_replicas(&job, 12), 3);
    }

    #[test]
    fn feature_api_is_not_bound_by_partitions() {
        let mut job = spec(ProcessorKind::FeatureApi);
        assert_eq!(static_replicas(&job, 1), 2);
        job.parallelism.replicas = Some(5);
        assert_eq!(static_replicas(&job, 1), 5);
    }

    #[test]
    fn hpa_max_is_capped_at_partitions() {
        let mut job = spec(ProcessorKind::FraudDetector);
        job.autoscaling = Some(autoscaling(2, Some(40)));
        let plan = plan(&job, 12, None);
        assert_eq!(plan.autoscale, Some(Bounds { min: 2, max: 12 }));
    }

    #[test]
    fn hpa_max_defaults_to_partitions_and_min_never_exceeds_max() {
        let mut job = spec(ProcessorKind::FraudDetector);
        job.autoscaling = Some(autoscaling(1, None));
        assert_eq!(
            plan(&job, 6, None).autoscale,
            Some(Bounds { min: 1, max: 6 })
        );
        job.autoscaling = Some(autoscaling(10, None));
        assert_eq!(
            plan(&job, 4, None).autoscale,
            Some(Bounds { min: 4, max: 4 })
        );
    }

    #[test]
    fn initial_replicas_start_inside_the_autoscaler_bounds() {
        let mut job = spec(ProcessorKind::FraudDetector);
        job.parallelism.partitions_per_replica = Some(4);
        job.autoscaling = Some(autoscaling(5, Some(8)));
        assert_eq!(plan(&job, 12, None).replicas, 5); // 3 by partitions, raised to min 5
    }

    #[test]
    fn the_autoscalers_decision_is_kept_within_the_bounds() {
        let mut job = spec(ProcessorKind::FraudDetector);
        job.autoscaling = Some(autoscaling(2, Some(8)));
        assert_eq!(plan(&job, 12, Some(6)).replicas, 6);
        assert_eq!(plan(&job, 12, Some(1)).replicas, 2);
        assert_eq!(plan(&job, 12, Some(11)).replicas, 8);
        // A workload scaled to zero (by a suspend that was lifted) starts from the static count.
        assert_eq!(plan(&job, 12, Some(0)).replicas, 8);
    }

    #[test]
    fn suspend_scales_to_zero_without_an_autoscaler() {
        let mut job = spec(ProcessorKind::FraudDetector);
        job.autoscaling = Some(autoscaling(2, Some(6)));
        job.suspend = true;
        assert_eq!(
            plan(&job, 12, Some(4)),
            Plan {
                replicas: 0,
                autoscale: None
            }
        );
    }

    #[test]
    fn disabled_autoscaling_uses_the_static_count() {
        let mut job = spec(ProcessorKind::FraudDetector);
        let mut disabled = autoscaling(2, Some(6));
        disabled.enabled = false;
        job.autoscaling = Some(disabled);
        assert_eq!(plan(&job, 12, Some(3)).autoscale, None);
        assert_eq!(plan(&job, 12, Some(3)).replicas, 12);
    }
}
