//! Rollouts of a new pod template: whether one is stuck, and whether to roll back. Pure: a
//! function of what the reconciler observed of the StatefulSet, the previous status and the
//! time; the reconciler does the I/O (docs/upgrades.md "Stuck rollouts and rollback").

use crate::crd::{RollbackStatus, RolloutStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// What the StatefulSet reports about its revisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Revisions {
    /// Its controller has observed its latest spec (status.observedGeneration).
    pub observed: bool,
    /// The job generation it was built from (the operator's annotation on it).
    pub spec_generation: Option<i64>,
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
    /// Pods created (status.replicas).
    pub replicas: i32,
    /// Pods at the update revision.
    pub updated_replicas: i32,
    pub ready_replicas: i32,
}

impl Revisions {
    /// Some pods still run another revision than the update revision. A plain scale never is
    /// one: new pods are created at the update revision, and the revisions stay equal.
    fn rolling(&self) -> Option<&str> {
        let update = self.update_revision.as_deref()?;
        let behind = self.current_revision.as_deref() != Some(update)
            || self.updated_replicas < self.replicas;
        behind.then_some(update)
    }

    /// The StatefulSet has taken up a template other than `revision` (the stable one, after a
    /// rollback) and some of its pods are not there or not ready yet: pods of `revision` may
    /// still hold it up.
    pub fn back_from(&self, revision: &str) -> bool {
        self.observed
            && self
                .update_revision
                .as_deref()
                .is_some_and(|u| u != revision)
            && (self.updated_replicas < self.replicas || self.ready_replicas < self.replicas)
    }
}

/// The inputs of [`assess`] besides the previous status.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub now: Timestamp,
    /// The job's generation.
    pub generation: i64,
    pub readiness_timeout: Duration,
    pub rollback_on_failure: bool,
    /// The generation of the last stable spec, if one is recorded.
    pub stable_generation: Option<i64>,
    /// The StatefulSet as last seen (after this pass's apply); `None` before it exists.
    pub workload: Option<&'a Revisions>,
    /// Why a new pod is not ready (its container's waiting or termination reason), when known.
    pub pod_problem: Option<&'a str>,
}

/// What the status says about the rollout, and whether the stable spec runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub rollout: Option<RolloutStatus>,
    pub rollback: Option<RollbackStatus>,
}

impl Assessment {
    /// The (reason, message) that makes the phase Degraded, if any.
    pub fn trouble(&self) -> Option<(&'static str, String)> {
        if let Some(rollback) = &self.rollback {
            return Some((
                "RolledBack",
                format!(
                    "generation {} rolled back to generation {}: {}",
                    rollback.from_generation, rollback.to_generation, rollback.reason
                ),
            ));
        }
        let stuck = self.rollout.as_ref()?.stuck.as_ref()?;
        Some(("RolloutStuck", stuck.clone()))
    }

    /// The revision of a rollout found stuck (or rolled back) in this pass and not before.
    pub fn newly_stuck(
        &self,
        previous_rollout: Option<&RolloutStatus>,
        previous_rollback: Option<&RollbackStatus>,
    ) -> Option<&str> {
        let revision = match (&self.rollout, &self.rollback) {
            (Some(rollout), _) if rollout.stuck.is_some() => &rollout.revision,
            (_, Some(rollback)) if previous_rollback != Some(rollback) => &rollback.from_revision,
            _ => return None,
        };
        let known = previous_rollout.is_some_and(|p| &p.revision == revision && p.stuck.is_some());
        (!known).then_some(revision.as_str())
    }
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why the first pod that is not ready is not: a container waiting (ImagePullBackOff,
/// CrashLoopBackOff ...) and its last exit, or the pod not scheduled.
pub fn pod_problem(pods: &[Pod]) -> Option<String> {
    const MAX: usize = 200;
    let clip = |text: &str| text.chars().take(MAX).collect::<String>();
    pods.iter().filter(|p| !is_ready(p)).find_map(|pod| {
        let status = pod.status.as_ref()?;
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let containers = status.container_statuses.iter().flatten();
        let container = containers.filter(|c| !c.ready).find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let mut text = waiting.reason.clone()?;
            if let Some(message) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
                text.push_str(&format!(" ({})", clip(message)));
            }
            if let Some(exit) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                text.push_str(&format!(
                    ", last exit {} {}",
                    exit.exit_code,
                    exit.reason.as_deref().unwrap_or("")
                ));
            }
            Some(text.trim_end().to_owned())
        });
        let unscheduled = || {
            let condition = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            Some(format!(
                "{}: {}",
                condition.reason.as_deref().unwrap_or("Unschedulable"),
                clip(condition.message.as_deref().unwrap_or(""))
            ))
        };
        let problem = container.or_else(unscheduled)?;
        Some(format!("pod {name}: {problem}"))
    })
}

/// Decides the rollout state. A rollback lasts while the job keeps the generation it rolled
/// back from. A rollout is tracked by the StatefulSet's update revision; its deadline is the
/// readiness timeout after its last progress; once stuck it stays stuck until it ends (every
/// pod at the update revision and ready) or the revision changes, so the phase does not flap.
pub fn assess(
    facts: &Facts,
    previous_rollout: Option<&RolloutStatus>,
    previous_rollback: Option<&RollbackStatus>,
) -> Assessment {
    if let Some(rollback) = previous_rollback.filter(|r| r.from_generation == facts.generation) {
        return Assessment {
            rollout: None,
            rollback: Some(rollback.clone()),
        };
    }
    let Some(workload) = facts.workload else {
        return Assessment::default();
    };
    if !workload.observed || workload.spec_generation != Some(facts.generation) {
        // The StatefulSet controller has not acted on the latest apply yet: nothing new to
        // judge, and no deadline may pass on a state that is about to change.
        return Assessment {
            rollout: previous_rollout.cloned(),
            rollback: None,
        };
    }
    let Some(revision) = workload.rolling() else {
        return Assessment::default();
    };
    let now = Time(facts.now);
    let mut rollout = match previous_rollout.filter(|r| r.revision == revision) {
        Some(previous) => previous.clone(),
        None => RolloutStatus {
            generation: facts.generation,
            revision: revision.to_owned(),
            updated_replicas: workload.updated_replicas,
            progress_time: now.clone(),
            stuck: None,
        },
    };
    if rollout.stuck.is_none() {
        if workload.updated_replicas > rollout.updated_replicas {
            // The StatefulSet controller replaces the next pod only once the previous one is
            // ready: a further updated pod is progress.
            rollout.progress_time = now.clone();
        }
        let since = facts
            .now
            .duration_since(rollout.progress_time.0)
            .unsigned_abs();
        if since >= facts.readiness_timeout {
            rollout.stuck = Some(stuck_message(workload, facts, revision));
        }
    }
    // A scale-down can lower the count; progress is measured from what is there.
    rollout.updated_replicas = workload.updated_replicas;
    let rollback = match (&rollout.stuck, facts.stable_generation) {
        (Some(reason), Some(stable)) if facts.rollback_on_failure && stable != facts.generation => {
            Some(RollbackStatus {
                from_generation: facts.generation,
                to_generation: stable,
                from_revision: rollout.revision.clone(),
                reason: reason.clone(),
                time: now,
            })
        }
        _ => None,
    };
    match rollback {
        Some(rollback) => Assessment {
            rollout: None,
            rollback: Some(rollback),
        },
        None => Assessment {
            rollout: Some(rollout),
            rollback: None,
        },
    }
}

fn stuck_message(workload: &Revisions, facts: &Facts, revision: &str) -> String {
    let mut message = format!(
        "rollout of revision {revision} made no progress for {}: {} of {} pods updated, {} ready",
        humanize(facts.readiness_timeout),
        workload.updated_replicas,
        workload.replicas,
        workload.ready_replicas,
    );
    if let Some(problem) = facts.pod_problem {
        message.push_str(&format!("; {problem}"));
    }
    if facts.rollback_on_failure
        && facts
            .stable_generation
            .is_none_or(|g| g == facts.generation)
    {
        message.push_str("; no earlier stable spec to roll back to");
    }
    message
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(300);

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("test time")
    }

    /// A StatefulSet of generation 6 with 3 pods, `updated` of them at revision `b`.
    fn rolling(updated: i32, ready: i32) -> Revisions {
        Revisions {
            observed: true,
            spec_generation: Some(6),
            current_revision: Some("fraud-a".into()),
            update_revision: Some("fraud-b".into()),
            replicas: 3,
            updated_replicas: updated,
            ready_replicas: ready,
        }
    }

    fn done(replicas: i32) -> Revisions {
        Revisions {
            current_revision: Some("fraud-b".into()),
            replicas,
            updated_replicas: replicas,
            ready_replicas: replicas,
            ..rolling(0, 0)
        }
    }

    fn facts(now: i64, workload: &Revisions) -> Facts<'_> {
        Facts {
            now: at(now),
            generation: 6,
            readiness_timeout: TIMEOUT,
            rollback_on_failure: false,
            stable_generation: Some(5),
            workload: Some(workload),
            pod_problem: None,
        }
    }

    /// Runs `assess` over a sequence of (time, workload), feeding each result into the next.
    fn run(steps: &[(i64, Revisions)], rollback: bool) -> Vec<Assessment> {
        let mut previous = Assessment::default();
        steps
            .iter()
            .map(|(now, workload)| {
                let facts = Facts {
                    rollback_on_failure: rollback,
                    ..facts(*now, workload)
                };
                previous = assess(
                    &facts,
                    previous.rollout.as_ref(),
                    previous.rollback.as_ref(),
                );
                previous.clone()
            })
            .collect()
    }

    fn reasons(assessments: &[Assessment]) -> Vec<Option<&'static str>> {
        assessments
            .iter()
            .map(|a| a.trouble().map(|(reason, _)| reason))
            .collect()
    }

    #[test]
    fn a_slow_rollout_within_the_deadline_is_not_stuck() {
        let steps = [
            (0, rolling(1, 2)),
            (290, rolling(1, 2)),
            // The first pod became ready and the second was replaced: the deadline restarts.
            (295, rolling(2, 2)),
            (590, rolling(2, 2)),
            (594, rolling(3, 2)),
            (890, rolling(3, 3)),
            (891, done(3)),
        ];
        let assessed = run(&steps, true);
        assert_eq!(reasons(&assessed), vec![None; steps.len()]);
        assert_eq!(
            assessed[5].rollout.as_ref().unwrap().progress_time,
            Time(at(594))
        );
        assert_eq!(assessed[6], Assessment::default(), "done: nothing tracked");
    }

    #[test]
    fn no_progress_for_the_timeout_is_stuck_and_stays_stuck() {
        let steps = [
            (0, rolling(1, 2)),
            (299, rolling(1, 2)),
            (300, rolling(1, 2)),
            // The crash-looping pod was ready for a moment and the controller moved on: still
            // stuck, no flapping back to progressing.
            (320, rolling(2, 1)),
            (900, rolling(3, 0)),
            (901, done(3)),
        ];
        let assessed = run(&steps, false);
        use Some as S;
        assert_eq!(
            reasons(&assessed),
            [
                None,
                None,
                S("RolloutStuck"),
                S("RolloutStuck"),
                S("RolloutStuck"),
                None
            ]
        );
        let (_, message) = assessed[2].trouble().unwrap();
        assert_eq!(
            message,
            "rollout of revision fraud-b made no progress for 5m: 1 of 3 pods updated, 2 ready"
        );
    }

    #[test]
    fn the_message_names_the_pods_problem() {
        let workload = rolling(1, 2);
        let mut facts = facts(0, &workload);
        let first = assess(&facts, None, None);
        facts.now = at(300);
        facts.pod_problem = Some("pod fraud-2: ImagePullBackOff");
        let stuck = assess(&facts, first.rollout.as_ref(), None);
        assert!(
            stuck
                .trouble()
                .unwrap()
                .1
                .ends_with("; pod fraud-2: ImagePullBackOff"),
            "{stuck:?}"
        );
    }

    #[test]
    fn a_scale_is_not_a_rollout() {
        // Scaling up: new pods are created at the one revision and take long to be ready.
        let scaling = Revisions {
            replicas: 6,
            updated_replicas: 6,
            ready_replicas: 3,
            ..done(6)
        };
        let assessed = run(&[(0, scaling.clone()), (10_000, scaling)], true);
        assert_eq!(assessed, vec![Assessment::default(); 2]);
    }

    #[test]
    fn stuck_with_rollback_rolls_back_to_the_stable_generation_and_stays() {
        let steps = [
            (0, rolling(1, 2)),
            (300, rolling(1, 2)),
            // The stable template is applied; the StatefulSet goes back (built from generation
            // 5 now): the rollback holds whatever it reports.
            (
                301,
                Revisions {
                    spec_generation: Some(5),
                    ..done(3)
                },
            ),
            (10_000, done(3)),
        ];
        let assessed = run(&steps, true);
        use Some as S;
        assert_eq!(
            reasons(&assessed),
            [None, S("RolledBack"), S("RolledBack"), S("RolledBack")]
        );
        let rollback = assessed[1].rollback.clone().unwrap();
        assert_eq!((rollback.from_generation, rollback.to_generation), (6, 5));
        assert_eq!(rollback.from_revision, "fraud-b");
        assert_eq!(rollback.time, Time(at(300)));
        assert_eq!(assessed[3].rollback, Some(rollback));
    }

    #[test]
    fn a_new_generation_ends_the_rollback() {
        let rollback = RollbackStatus {
            from_generation: 6,
            to_generation: 5,
            from_revision: "fraud-b".into(),
            reason: "stuck".into(),
            time: Time(at(300)),
        };
        let workload = Revisions {
            spec_generation: Some(7),
            update_revision: Some("fraud-c".into()),
            ..rolling(1, 2)
        };
        let facts = Facts {
            generation: 7,
            rollback_on_failure: true,
            ..facts(400, &workload)
        };
        let assessed = assess(&facts, None, Some(&rollback));
        assert_eq!(assessed.rollback, None);
        let rollout = assessed.rollout.unwrap();
        assert_eq!(
            (rollout.generation, rollout.revision.as_str()),
            (7, "fraud-c")
        );
        assert_eq!(rollout.progress_time, Time(at(400)));
    }

    #[test]
    fn without_a_stable_spec_or_with_the_option_off_it_only_reports() {
        let workload = rolling(1, 2);
        let first = assess(&facts(0, &workload), None, None);
        for (rollback_on_failure, stable_generation) in
            [(false, Some(5)), (true, None), (true, Some(6))]
        {
            let facts = Facts {
                rollback_on_failure,
                stable_generation,
                ..facts(300, &workload)
            };
            let assessed = assess(&facts, first.rollout.as_ref(), None);
            assert_eq!(assessed.rollback, None);
            let (reason, message) = assessed.trouble().unwrap();
            assert_eq!(reason, "RolloutStuck");
            assert_eq!(
                message.ends_with("no earlier stable spec to roll back to"),
                rollback_on_failure,
                "{message}"
            );
        }
    }

    #[test]
    fn newly_stuck_names_the_revision_once() {
        let workload = rolling(1, 2);
        let first = assess(&facts(0, &workload), None, None);
        assert_eq!(first.newly_stuck(None, None), None, "progressing");
        let stuck = assess(&facts(300, &workload), first.rollout.as_ref(), None);
        assert_eq!(
            stuck.newly_stuck(first.rollout.as_ref(), None),
            Some("fraud-b")
        );
        let still = assess(&facts(315, &workload), stuck.rollout.as_ref(), None);
        assert_eq!(still.newly_stuck(stuck.rollout.as_ref(), None), None);
        let facts = Facts {
            rollback_on_failure: true,
            ..facts(300, &workload)
        };
        let rolled = assess(&facts, first.rollout.as_ref(), None);
        assert_eq!(
            rolled.newly_stuck(first.rollout.as_ref(), None),
            Some("fraud-b")
        );
        let held = assess(&facts, None, rolled.rollback.as_ref());
        assert_eq!(held.newly_stuck(None, rolled.rollback.as_ref()), None);
    }

    #[test]
    fn back_from_the_stuck_revision_while_pods_are_missing_or_not_ready() {
        let back = |updated, ready| Revisions {
            update_revision: Some("fraud-a".into()),
            current_revision: Some("fraud-a".into()),
            ..rolling(updated, ready)
        };
        assert!(back(2, 2).back_from("fraud-b"), "one pod still at fraud-b");
        assert!(
            back(3, 2).back_from("fraud-b"),
            "all at fraud-a, one not ready"
        );
        assert!(!back(3, 3).back_from("fraud-b"), "done");
        assert!(
            !rolling(1, 2).back_from("fraud-b"),
            "the controller has not taken it up"
        );
        assert!(
            !Revisions {
                observed: false,
                ..back(2, 2)
            }
            .back_from("fraud-b")
        );
    }

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("test pod parses")
    }

    #[test]
    fn the_pods_problem_is_the_first_not_ready_ones_reason() {
        let ready = pod(r#"
metadata: { name: fraud-0 }
status: { conditions: [{ type: Ready, status: "True" }] }
"#);
        let crashing = pod(r#"
metadata: { name: fraud-2 }
status:
  conditions: [{ type: Ready, status: "False" }]
  containerStatuses:
    - name: processor
      image: x
      imageID: ""
      ready: false
      restartCount: 4
      state: { waiting: { reason: CrashLoopBackOff, message: "back-off 1m20s restarting failed container" } }
      lastState: { terminated: { exitCode: 2, reason: Error } }
"#);
        let unscheduled = pod(r#"
metadata: { name: fraud-1 }
status:
  conditions: [{ type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available: 1 Insufficient memory." }]
"#);
        assert_eq!(pod_problem(std::slice::from_ref(&ready)), None);
        assert_eq!(
            pod_problem(&[ready.clone(), crashing]).as_deref(),
            Some(
                "pod fraud-2: CrashLoopBackOff (back-off 1m20s restarting failed container), last exit 2 Error"
            )
        );
        assert_eq!(
            pod_problem(&[ready, unscheduled]).as_deref(),
            Some("pod fraud-1: Unschedulable: 0/1 nodes are available: 1 Insufficient memory.")
        );
    }

    #[test]
    fn a_state_the_controller_has_not_acted_on_changes_nothing() {
        let first = assess(&facts(0, &rolling(1, 2)), None, None);
        // A new apply (the annotation names another generation) or an unobserved one: the
        // previous rollout is kept as it was, and its deadline cannot pass meanwhile.
        for workload in [
            Revisions {
                observed: false,
                ..rolling(1, 2)
            },
            Revisions {
                spec_generation: Some(5),
                ..rolling(1, 2)
            },
        ] {
            let assessed = assess(&facts(10_000, &workload), first.rollout.as_ref(), None);
            assert_eq!(assessed.rollout, first.rollout);
            assert_eq!(assessed.trouble(), None);
        }
        assert_eq!(
            assess(&facts(0, &rolling(1, 2)), None, None).trouble(),
            None
        );
    }
}
