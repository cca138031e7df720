//! Status: phase and conditions as a pure function of what the operator observed.

use crate::crd::{Phase, StreamJobStatus};
use crate::rollout::Assessment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What the reconciler saw of the job's workload and its Kafka input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub generation: Option<i64>,
    pub suspended: bool,
    /// Replicas the workload is asked to run (its spec, which the HPA may have set).
    pub desired_replicas: i32,
    /// Replicas the workload controller has created.
    pub current_replicas: i32,
    pub ready_replicas: i32,
    /// Whether the workload controller has seen its latest spec and rolled it out.
    pub rolled_out: bool,
    pub partitions: Option<i32>,
    pub selector: String,
    pub consumer_lag: Option<i64>,
    pub last_checkpoint: Option<String>,
    /// A problem that stops the job from being deployed (reason, message).
    pub blocked: Option<(String, String)>,
    /// The rollout of a new pod template: stuck, or rolled back.
    pub rollout: Assessment,
    /// The job's generation and spec (JSON) that the workload runs, when it was built from the
    /// job's current generation: recorded as the last stable spec once the job is Running.
    pub running_spec: Option<(i64, String)>,
}

/// The phase: `previous` decides between Deploying (never ran) and Degraded (ran, lost replicas).
pub fn phase(observed: &Observed, previous: Option<Phase>) -> Phase {
    if observed.blocked.is_some() {
        return if previous.is_some_and(|p| p != Phase::Pending && p != Phase::Failed) {
            Phase::Degraded
        } else {
            Phase::Failed
        };
    }
    if observed.suspended {
        return Phase::Suspended;
    }
    if observed.rollout.trouble().is_some() {
        return Phase::Degraded;
    }
    let was_running = matches!(
        previous,
        Some(Phase::Running | Phase::Scaling | Phase::Degraded)
    );
    if observed.current_replicas != observed.desired_replicas {
        return if was_running {
            Phase::Scaling
        } else {
            Phase::Deploying
        };
    }
    if observed.ready_replicas >= observed.desired_replicas && observed.rolled_out {
        return Phase::Running;
    }
    if was_running && observed.rolled_out {
        Phase::Degraded
    } else {
        Phase::Deploying
    }
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: kind.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The new status. Conditions keep their last transition time while their status holds.
pub fn status(
    observed: &Observed,
    previous: Option<&StreamJobStatus>,
    now: Time,
) -> StreamJobStatus {
    let phase = phase(observed, previous.and_then(|s| s.phase));
    let ready = format!(
        "{}/{} ready",
        observed.ready_replicas, observed.desired_replicas
    );
    let generation = observed.generation;
    let (reason, message) = match (&observed.blocked, phase, observed.rollout.trouble()) {
        (Some((reason, message)), _, _) => (reason.clone(), message.clone()),
        (None, Phase::Degraded, Some((reason, message))) => {
            (reason.to_owned(), format!("{message}; {ready}"))
        }
        (None, Phase::Suspended, _) => (
            "Suspended".into(),
            "suspended: scaled to zero, state kept".into(),
        ),
        (None, Phase::Running, _) => ("AllReplicasReady".into(), ready.clone()),
        (None, Phase::Scaling, _) => (
            "Scaling".into(),
            format!(
                "scaling from {} to {} replicas",
                observed.current_replicas, observed.desired_replicas
            ),
        ),
        (None, Phase::Degraded, _) => ("ReplicasUnavailable".into(), ready.clone()),
        (None, _, _) => ("Deploying".into(), ready.clone()),
    };
    let mut conditions = vec![
        condition(
            "Ready",
            phase == Phase::Running,
            &reason,
            message.clone(),
            generation,
            &now,
        ),
        condition(
            "Progressing",
            matches!(phase, Phase::Deploying | Phase::Scaling),
            &reason,
            message.clone(),
            generation,
            &now,
        ),
        condition(
            "Degraded",
            matches!(phase, Phase::Degraded | Phase::Failed),
            &reason,
            message,
            generation,
            &now,
        ),
    ];
    if let Some(previous) = previous {
        for condition in &mut conditions {
            if let Some(old) = previous
                .conditions
                .iter()
                .find(|c| c.type_ == condition.type_)
                && old.status == condition.status
            {
                condition.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
    let (last_stable_generation, last_stable_spec) = match &observed.running_spec {
        Some((generation, spec)) if phase == Phase::Running => {
            (Some(*generation), Some(spec.clone()))
        }
        _ => (
            previous.and_then(|p| p.last_stable_generation),
            previous.and_then(|p| p.last_stable_spec.clone()),
        ),
    };
    StreamJobStatus {
        phase: Some(phase),
        conditions,
        observed_generation: generation,
        replicas: observed.desired_replicas,
        ready_replicas: observed.ready_replicas,
        replicas_summary: Some(match observed.partitions {
            Some(partitions) => format!(
                "{}/{} ({partitions}p)",
                observed.ready_replicas, observed.desired_replicas
            ),
            None => format!("{}/{}", observed.ready_replicas, observed.desired_replicas),
        }),
        partitions: observed.partitions,
        selector: Some(observed.selector.clone()),
        consumer_lag: observed.consumer_lag,
        last_checkpoint: observed
            .last_checkpoint
            .clone()
            .or_else(|| previous.and_then(|p| p.last_checkpoint.clone())),
        rollout: observed.rollout.rollout.clone(),
        rollback: observed.rollout.rollback.clone(),
        last_stable_spec,
        last_stable_generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(desired: i32, current: i32, ready: i32) -> Observed {
        Observed {
            generation: Some(3),
            desired_replicas: desired,
            current_replicas: current,
            ready_replicas: ready,
            rolled_out: true,
            partitions: Some(12),
            selector: "app.kubernetes.io/instance=fraud".into(),
            ..Observed::default()
        }
    }

    #[test]
    fn phases() {
        use Phase::*;
        let blocked = Observed {
            blocked: Some(("PartitionsUnknown".into(), "no broker".into())),
            ..observed(3, 3, 3)
        };
        let suspended = Observed {
            suspended: true,
            ..observed(0, 2, 0)
        };
        let not_rolled = Observed {
            rolled_out: false,
            ..observed(3, 3, 3)
        };
        let cases = [
            // (what, observed, previous phase, expected phase)
            ("first deploy", observed(3, 0, 0), None, Deploying),
            (
                "pods starting",
                observed(3, 3, 1),
                Some(Deploying),
                Deploying,
            ),
            ("all ready", observed(3, 3, 3), Some(Deploying), Running),
            ("replica lost", observed(3, 3, 2), Some(Running), Degraded),
            ("recovered", observed(3, 3, 3), Some(Degraded), Running),
            ("scale up", observed(6, 3, 3), Some(Running), Scaling),
            ("scale done", observed(6, 6, 6), Some(Scaling), Running),
            ("suspended", suspended, Some(Running), Suspended),
            ("resumed", observed(3, 0, 0), Some(Suspended), Deploying),
            ("rollout pending", not_rolled, Some(Running), Deploying),
            ("blocked before running", blocked.clone(), None, Failed),
            ("blocked while running", blocked, Some(Running), Degraded),
        ];
        for (what, observed, previous, expected) in cases {
            assert_eq!(phase(&observed, previous), expected, "{what}");
        }
    }

    /// The Ready condition's status and reason.
    fn ready(status: &StreamJobStatus) -> (&str, &str) {
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        ready.map_or(("missing", ""), |c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn running_sets_ready_true_and_the_printer_summary() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let status = status(&observed(3, 3, 3), None, now);
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(ready(&status), ("True", "AllReplicasReady"));
        assert_eq!(status.replicas_summary.as_deref(), Some("3/3 (12p)"));
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn suspended_says_so_in_ready() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let status = status(
            &Observed {
                suspended: true,
                ..observed(0, 0, 0)
            },
            None,
            now,
        );
        assert_eq!(ready(&status), ("False", "Suspended"));
    }

    #[test]
    fn transition_time_is_kept_while_a_condition_holds() {
        let earlier = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let first = status(&observed(3, 3, 3), None, earlier.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let second = status(&observed(3, 3, 3), Some(&first), later.clone());
        let ready = second
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.last_transition_time, earlier);
        let third = status(&observed(3, 3, 1), Some(&second), later.clone());
        let ready = third
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.last_transition_time, later);
    }
}
