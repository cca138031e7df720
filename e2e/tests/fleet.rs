//! The fleet for real: the operator installed from its chart runs as a pod from its image, the
//! StreamJobs are applied with kubectl, and session-aggregator, fraud-detector and
//! revenue-calculator run as the pods the operator creates, on a real node (containerd, runc),
//! against the real broker, Redis and GCS emulator. loadgen's events through them must give
//! exactly the oracles' outputs, Redis keys, dead letters and late records.
//!
//! Runs against any cluster whose pods reach the env file's addresses (KUBECONFIG, and images
//! pushed to a registry the cluster pulls from: see docs/testing.md).

use std::time::{Duration, Instant};
use trendstream_e2e::TestEnv;
use trendstream_e2e::fleet::{
    FLEET_NAMESPACE, OPERATOR_NAMESPACE, OPERATOR_RELEASE, image, install_operator, is_ready, logs,
    pod_facing, pods, running, show_pods,
};
use trendstream_e2e::gcs::create_bucket;
use trendstream_e2e::kafka::{create_topic, read_committed};
use trendstream_e2e::kube::{client, eventually, kubectl};
use trendstream_e2e::oracle::fraud;
use trendstream_e2e::pipeline::{self, Expected, PROCESSORS, Run};
use trendstream_events::FraudAlert;
use trendstream_operator::builders::HTTP_PORT;
use trendstream_operator::crd::StreamJob;

const PARTITIONS: i32 = 6;
const PARTITIONS_PER_REPLICA: i32 = 3;
const EVENTS: u64 = 200_000;
/// loadgen's events/s: the input keeps coming for ~100 s, while the pods are deleted, rescaled
/// and rolled (a replacement's first commit is what "processing again" means).
const RATE: u32 = 2_000;
/// Each of the stateless test's two traffics.
const STATELESS_EVENTS: u64 = 30_000;
/// Pods pulled, started and Ready (image pulls from the local registry, RocksDB opened).
const START: Duration = Duration::from_secs(240);
/// How long the outputs may take to appear (six processor pods and the broker on two cores).
const DEADLINE: Duration = Duration::from_secs(900);

/// The StreamJob of one processor of a run: named after the run, as several share the
/// operator's namespace.
fn job_name(run: &Run, processor: &str) -> String {
    format!("{}-{processor}", run.name)
}

/// One StreamJob of the run, as a user would write it.
fn stream_job(env: &TestEnv, run: &Run, processor: &str, input: &str) -> anyhow::Result<String> {
    let group = run.group(processor);
    Ok(format!(
        r#"apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata:
  name: {name}
spec:
  processor: {processor}
  image: {image}
  kafka:
    bootstrapServers: "{bootstrap}"
    inputTopics: [{input}]
    outputTopic: {out}
    dlqTopic: {dlq}
    lateTopic: {late}
    consumerGroup: {group}
    partitions: {PARTITIONS}
  parallelism:
    {parallelism}
  checkpoint:
    interval: 10s
    volumeSize: 1Gi
    gcs:
      bucket: {bucket}
      endpoint: "{gcs}"
  redis:
    url: "{redis}"
    keyPrefix: {group}
  resources:
    requests: {{ cpu: 50m, memory: 64Mi }}
    limits: {{ memory: 1Gi }}
  config:
    idleTimeout: 24h
"#,
        name = job_name(run, processor),
        // revenue-calculator with a replica count, which `kubectl scale` sets; the others
        // by partitions per replica.
        parallelism = if processor == "revenue-calculator" {
            format!("replicas: {}", PARTITIONS / PARTITIONS_PER_REPLICA)
        } else {
            format!("partitionsPerReplica: {PARTITIONS_PER_REPLICA}")
        },
        image = image(env, processor)?,
        bootstrap = pod_facing(env, "KAFKA_BOOTSTRAP_SERVERS")?,
        out = run.topic(processor, "out"),
        dlq = run.topic(processor, "dlq"),
        late = run.topic(processor, "late"),
        bucket = bucket(run),
        gcs = pod_facing(env, "GCS_ENDPOINT")?,
        redis = pod_facing(env, "REDIS_URL")?,
    ))
}

fn bucket(run: &Run) -> String {
    format!("{}-checkpoints", run.name)
}

/// Deletes a StreamJob and waits until it is gone (its children with it).
fn delete_job(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    kubectl(
        env,
        &[
            "delete",
            "-n",
            FLEET_NAMESPACE,
            "streamjob",
            name,
            "--ignore-not-found",
            "--wait=true",
        ],
        None,
    )?;
    Ok(())
}

/// Deletes the run's StreamJobs and their state volumes (the jobs keep them by default).
fn delete_jobs(env: &TestEnv, run: &Run) -> anyhow::Result<()> {
    for (processor, _) in PROCESSORS {
        let name = job_name(run, processor);
        delete_job(env, &name)?;
        kubectl(
            env,
            &[
                "delete",
                "-n",
                FLEET_NAMESPACE,
                "pvc",
                "-l",
                &format!("app.kubernetes.io/instance={name}"),
            ],
            None,
        )?;
    }
    Ok(())
}

/// What happens to the fleet while it works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disruption {
    /// A pod force-deleted (same volume), then another force-deleted with its volume claim.
    PodsDeleted,
    /// Two jobs rescaled (`kubectl scale`, a partitionsPerReplica change) while the leading
    /// operator pod is force-deleted.
    RescaledWithoutOperator,
    /// Every job's spec changed (upgradeMode last-state, the default): the pods roll.
    Upgraded,
}

/// One run of the fleet with `disruptions` one after another while it works.
async fn run_fleet(disruptions: &[Disruption]) -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let _turn = install_operator(&env).await?;
    let client = client(&env).await?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let namespace = FLEET_NAMESPACE;
    let run = Run::new(&short_name("fl"));
    let result = async {
        // Topics are provisioned before the jobs, as on a cluster whose broker creates none.
        create_topic(&bootstrap, &run.clicks, PARTITIONS).await?;
        create_topic(&bootstrap, &run.orders, PARTITIONS).await?;
        for (processor, _) in PROCESSORS {
            for what in ["out", "dlq", "late"] {
                create_topic(&bootstrap, &run.topic(processor, what), PARTITIONS).await?;
            }
        }
        create_bucket(env.get("GCS_ENDPOINT")?, &bucket(&run)).await?;
        let events_file = run.dir()?.join("events.jsonl");
        // The input is there before the jobs: what is measured below is the time from
        // `kubectl apply` to the first committed output.
        let mut loadgen = pipeline::start_loadgen(
            &bootstrap,
            &run,
            EVENTS,
            RATE,
            pipeline::SEED,
            &events_file,
            &[],
        )?;

        let applied = Instant::now();
        for (processor, input) in PROCESSORS {
            let manifest = stream_job(&env, &run, processor, run.input(input))?;
            kubectl(
                &env,
                &["apply", "-n", namespace, "-f", "-"],
                Some(&manifest),
            )?;
        }
        let first = tokio::task::spawn_blocking({
            let bootstrap = bootstrap.clone();
            let topic = run.topic("revenue-calculator", "out");
            move || {
                let records = read_committed(&bootstrap, &topic, 1, Duration::ZERO, START)?;
                anyhow::ensure!(!records.is_empty(), "no committed output within {START:?}");
                anyhow::Ok(applied.elapsed())
            }
        });
        let replicas = PARTITIONS / PARTITIONS_PER_REPLICA;
        for (processor, _) in PROCESSORS {
            running(
                &client,
                namespace,
                &job_name(&run, processor),
                replicas,
                START,
            )
            .await?;
        }
        println!(
            "all jobs Running after {:.1}s",
            applied.elapsed().as_secs_f64()
        );
        let first = first.await??;
        println!(
            "measured: kubectl apply to the first committed output record: {:.1}s",
            first.as_secs_f64()
        );
        show_pods(&env, namespace);
        for (processor, _) in PROCESSORS {
            for pod in pods(&client, namespace, &job_name(&run, processor)).await? {
                // Readiness was waited for above (a replica is briefly unready while the
                // group rebalances as its peers join); here only where the pods run.
                let ip = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_default();
                if let Ok(cidr) = env.get("POD_CIDR") {
                    anyhow::ensure!(
                        in_cidr(&ip, cidr),
                        "pod IP {ip} outside the node's range {cidr}"
                    );
                }
            }
        }
        for disruption in disruptions {
            match disruption {
                Disruption::PodsDeleted => delete_pods_mid_run(&env, &client, &run).await?,
                Disruption::RescaledWithoutOperator => rescale_mid_run(&env, &client, &run).await?,
                Disruption::Upgraded => upgrade_mid_run(&env, &client, &run).await?,
            }
        }

        pipeline::wait_for_loadgen(&mut loadgen, Duration::from_secs(600)).await?;
        let want = Expected::compute(&run, &events_file)?;
        pipeline::check_outputs(&bootstrap, &run, &want, DEADLINE).await?;
        pipeline::check_side_outputs_and_redis(
            &bootstrap,
            env.get("REDIS_URL")?,
            &run,
            &want,
            DEADLINE,
        )
        .await?;

        // The pods' own logs say what they did.
        let pod = format!("{}-0", job_name(&run, "revenue-calculator"));
        let text = logs(&env, namespace, &pod, false)?;
        anyhow::ensure!(
            text.contains("partition acquired"),
            "kubectl logs {pod} shows no partition acquired:\n{text}"
        );
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        show_pods(&env, namespace);
    }
    delete_jobs(&env, &run)?;
    result
}

/// Force-deletes `fraud-detector-0` (its replacement reopens the same volume), then
/// `session-aggregator-1` with its volume claim (its replacement gets a new, empty volume and
/// restores from the GCS checkpoint). Measures how long each replacement takes to process again.
async fn delete_pods_mid_run(
    env: &TestEnv,
    client: &kube::Client,
    run: &Run,
) -> anyhow::Result<()> {
    let namespace = FLEET_NAMESPACE;
    let force = ["--grace-period=0", "--force", "--wait=false"];
    let fraud = format!("{}-0", job_name(run, "fraud-detector"));
    let old = uid(client, &fraud).await?;
    let deleted = Instant::now();
    kubectl(
        env,
        &[&["delete", "pod", "-n", namespace, &fraud][..], &force[..]].concat(),
        None,
    )?;
    let text = replacement_processing(env, client, &fraud, old).await?;
    println!(
        "measured: {fraud} force-deleted, its replacement processing again after {:.1}s",
        deleted.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        text.contains("partition acquired"),
        "{fraud} restarted without its partitions:\n{text}"
    );

    // A checkpoint in GCS first (every 10 s), then the pod and its volume go.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let sessions = format!("{}-1", job_name(run, "session-aggregator"));
    let claim = format!("state-{sessions}");
    kubectl(
        env,
        &["delete", "pvc", "-n", namespace, &claim, "--wait=false"],
        None,
    )?;
    let old = uid(client, &sessions).await?;
    let deleted = Instant::now();
    kubectl(
        env,
        &[
            &["delete", "pod", "-n", namespace, &sessions][..],
            &force[..],
        ]
        .concat(),
        None,
    )?;
    let text = replacement_processing(env, client, &sessions, old).await?;
    println!(
        "measured: {sessions} force-deleted with its volume, its replacement processing again after {:.1}s",
        deleted.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        text.contains("state restored from GCS"),
        "{sessions} on a new volume did not restore from GCS:\n{text}"
    );
    Ok(())
}

async fn uid(client: &kube::Client, pod: &str) -> anyhow::Result<Option<String>> {
    let pods =
        kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), FLEET_NAMESPACE);
    Ok(pods.get_opt(pod).await?.and_then(|p| p.metadata.uid))
}

/// Waits until the pod that replaced `name` (whose uid was `old`) is Ready, has acquired its
/// partitions and committed its first transaction; returns its log. A replacement that was created while its volume claim was
/// still terminating can never start: it is deleted again, as a user would.
async fn replacement_processing(
    env: &TestEnv,
    client: &kube::Client,
    name: &str,
    old: Option<String>,
) -> anyhow::Result<String> {
    let pods =
        kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), FLEET_NAMESPACE);
    let deadline = Instant::now() + START;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} not processing again within {START:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(pod) = pods.get_opt(name).await? else {
            continue;
        };
        if pod.metadata.uid == old || pod.metadata.creation_timestamp.is_none() {
            continue;
        }
        let waiting_on_claim = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.message
                            .as_deref()
                            .unwrap_or_default()
                            .contains("being deleted")
                })
            });
        if waiting_on_claim {
            kubectl(
                env,
                &["delete", "pod", "-n", FLEET_NAMESPACE, name, "--wait=false"],
                None,
            )?;
            continue;
        }
        if !is_ready(&pod) {
            continue;
        }
        let text = logs(env, FLEET_NAMESPACE, name, false)?;
        if !text.contains("partition acquired") {
            continue;
        }
        // Processing again means a transaction committed by the new process: its own
        // /metrics, read at the pod's IP on the node's bridge.
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        if let Some(ip) = ip
            && committed_transactions(&ip).await.unwrap_or(0.0) > 0.0
        {
            return Ok(text);
        }
    }
}

/// `trendstream_transactions_total{outcome="committed"}` of the pod at `ip`.
async fn committed_transactions(ip: &str) -> anyhow::Result<f64> {
    let body = reqwest::get(format!("http://{ip}:{HTTP_PORT}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(body
        .lines()
        .filter(|l| {
            l.starts_with("trendstream_transactions_total{") && l.contains("outcome=\"committed\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A spec change of every job (the checkpoint interval, which the pods' environment carries):
/// each StatefulSet rolls its pods one by one onto the new template, and with the default
/// upgrade mode (last-state) each partition keeps its state across the roll (sessions open
/// before it close after it, exactly as without the roll).
async fn upgrade_mid_run(env: &TestEnv, client: &kube::Client, run: &Run) -> anyhow::Result<()> {
    let namespace = FLEET_NAMESPACE;
    let started = Instant::now();
    let mut before = Vec::new();
    for (processor, _) in PROCESSORS {
        let job = job_name(run, processor);
        before.push(pod_uids(client, &job).await?);
        kubectl(
            env,
            &[
                "patch",
                "-n",
                namespace,
                "streamjob",
                &job,
                "--type=merge",
                "-p",
                r#"{"spec":{"checkpoint":{"interval":"12s"}}}"#,
            ],
            None,
        )?;
    }
    for ((processor, _), before) in PROCESSORS.iter().zip(before) {
        let job = job_name(run, processor);
        rolled(client, &job).await?;
        let after = pod_uids(client, &job).await?;
        anyhow::ensure!(
            after.iter().all(|uid| !before.contains(uid)),
            "{job}: not every pod was replaced by the roll"
        );
    }
    println!(
        "measured: every job rolled onto its new spec in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits until a job's pods together own every partition, each pod some, by their logs
/// (partitions acquired less those released): the group's rebalancing is over.
async fn settled(env: &TestEnv, client: &kube::Client, job: &str) -> anyhow::Result<()> {
    eventually(&format!("{job}'s partitions settled"), START, || async {
        let mut owned = Vec::new();
        for pod in pods(client, FLEET_NAMESPACE, job).await? {
            let name = pod.metadata.name.unwrap_or_default();
            let text = logs(env, FLEET_NAMESPACE, &name, false)?;
            let acquired = text.matches("\"partition acquired\"").count();
            let released = text.matches("\"partition released\"").count();
            owned.push(acquired.saturating_sub(released));
        }
        let total: usize = owned.iter().sum();
        let done = owned.len() > 1 && owned.iter().all(|n| *n > 0) && total == PARTITIONS as usize;
        Ok(done.then_some(()))
    })
    .await?;
    // The assignment is what the logs say once the last rebalance's callbacks ran.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// Waits until a job's StatefulSet has every pod Ready on its newest template.
async fn rolled(client: &kube::Client, job: &str) -> anyhow::Result<()> {
    let sets = kube::Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
        client.clone(),
        FLEET_NAMESPACE,
    );
    // The operator applies the new template first: a revision newer than the pods' must appear.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eventually(
        &format!("{job} rolled onto its new template"),
        START,
        || async {
            let Some(set) = sets.get_opt(job).await? else {
                return Ok(None);
            };
            let status = set.status.unwrap_or_default();
            let rolled = status.update_revision.is_some()
                && status.current_revision == status.update_revision
                && status.updated_replicas == Some(status.replicas)
                && status.ready_replicas == Some(status.replicas);
            Ok(rolled.then_some(()))
        },
    )
    .await
}

/// The Lease holder of the operator's leader election.
async fn operator_leader(client: &kube::Client) -> anyhow::Result<Option<String>> {
    let leases = kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        OPERATOR_NAMESPACE,
    );
    Ok(leases
        .get_opt(OPERATOR_RELEASE)
        .await?
        .and_then(|lease| lease.spec?.holder_identity))
}

/// `kubectl scale` of revenue-calculator (2 to 3 replicas) and a partitionsPerReplica change of
/// session-aggregator (3 to 2, so 2 to 3 replicas), with the leading operator pod force-deleted
/// right after: the other operator replica takes over the Lease, both jobs reach 3 ready
/// replicas, and fraud-detector's healthy pods are never touched.
async fn rescale_mid_run(env: &TestEnv, client: &kube::Client, run: &Run) -> anyhow::Result<()> {
    let namespace = FLEET_NAMESPACE;
    let fraud_pods = pod_uids(client, &job_name(run, "fraud-detector")).await?;
    let leader = operator_leader(client)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the operator has no leader"))?;
    let revenue = job_name(run, "revenue-calculator");
    let sessions = job_name(run, "session-aggregator");
    kubectl(
        env,
        &[
            "scale",
            "-n",
            namespace,
            "streamjob",
            &revenue,
            "--replicas=3",
        ],
        None,
    )?;
    kubectl(
        env,
        &[
            "patch",
            "-n",
            namespace,
            "streamjob",
            &sessions,
            "--type=merge",
            "-p",
            r#"{"spec":{"parallelism":{"partitionsPerReplica":2}}}"#,
        ],
        None,
    )?;
    let killed = Instant::now();
    kubectl(
        env,
        &[
            "delete",
            "pod",
            "-n",
            OPERATOR_NAMESPACE,
            &leader,
            "--grace-period=0",
            "--force",
        ],
        None,
    )?;
    println!("rescaled {revenue} and {sessions}; force-deleted the leading operator {leader}");
    for job in [&revenue, &sessions] {
        running(client, namespace, job, 3, START).await?;
    }
    let new_leader = eventually("a new operator leader", START, || async {
        Ok(operator_leader(client)
            .await?
            .filter(|holder| *holder != leader))
    })
    .await?;
    println!(
        "measured: {new_leader} leads {:.1}s after the leader was killed; both jobs at 3 ready replicas",
        killed.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        pod_uids(client, &job_name(run, "fraud-detector")).await? == fraud_pods,
        "the new operator restarted healthy fraud-detector pods"
    );
    Ok(())
}

async fn pod_uids(client: &kube::Client, job: &str) -> anyhow::Result<Vec<String>> {
    let mut uids: Vec<String> = pods(client, FLEET_NAMESPACE, job)
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    uids.sort();
    Ok(uids)
}

/// upgradeMode stateless: a spec change starts the job with empty state from the end of its
/// input (docs/upgrades.md). fraud-detector sees traffic A, is upgraded, then sees traffic B
/// from the same users: its alerts are A's alone plus B's alone, not what A and B together
/// make (which a last-state upgrade gives).
#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_upgrade_starts_empty_from_the_end_of_the_input() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let _turn = install_operator(&env).await?;
    let client = client(&env).await?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let run = Run::new(&short_name("st"));
    let processor = "fraud-detector";
    let job = job_name(&run, processor);
    let result = async {
        create_topic(&bootstrap, &run.clicks, PARTITIONS).await?;
        create_topic(&bootstrap, &run.orders, PARTITIONS).await?;
        for what in ["out", "dlq", "late"] {
            create_topic(&bootstrap, &run.topic(processor, what), PARTITIONS).await?;
        }
        create_bucket(env.get("GCS_ENDPOINT")?, &bucket(&run)).await?;
        let manifest = format!(
            "{}  upgradeMode: stateless\n",
            stream_job(&env, &run, processor, &run.orders)?
        );
        kubectl(
            &env,
            &["apply", "-n", FLEET_NAMESPACE, "-f", "-"],
            Some(&manifest),
        )?;
        running(
            &client,
            FLEET_NAMESPACE,
            &job,
            PARTITIONS / PARTITIONS_PER_REPLICA,
            START,
        )
        .await?;
        // A stateless partition that moves before its first commit starts fresh again from the
        // end (docs/upgrades.md): the traffic goes only to a settled group.
        settled(&env, &client, &job).await?;

        let traffic = |seed: u64| {
            let run = run.clone();
            let bootstrap = bootstrap.clone();
            async move {
                let file = run.dir()?.join(format!("events-{seed}.jsonl"));
                let mut loadgen = pipeline::start_loadgen(
                    &bootstrap,
                    &run,
                    STATELESS_EVENTS,
                    0,
                    seed,
                    &file,
                    &[],
                )?;
                pipeline::wait_for_loadgen(&mut loadgen, Duration::from_secs(300)).await?;
                fraud::parse_event_file(&std::fs::read_to_string(&file)?)
            }
        };
        let alerts = |records: &[fraud::FileRecord]| {
            let prefix = run.group(processor);
            let mut alerts =
                fraud::expected(records, &run.orders, pipeline::BOUND_MS, &prefix).alerts;
            alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
            alerts
        };
        let committed_alerts = |count: usize| {
            let bootstrap = bootstrap.clone();
            let topic = run.topic(processor, "out");
            async move {
                let records = tokio::task::spawn_blocking(move || {
                    read_committed(&bootstrap, &topic, count, Duration::from_secs(5), DEADLINE)
                })
                .await??;
                let mut alerts: Vec<FraudAlert> = records
                    .iter()
                    .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()))
                    .collect::<Result<_, _>>()?;
                alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
                anyhow::Ok(alerts)
            }
        };

        let a = traffic(1).await?;
        let want_a = alerts(&a);
        anyhow::ensure!(
            committed_alerts(want_a.len()).await? == want_a,
            "alerts of traffic A"
        );
        kubectl(
            &env,
            &[
                "patch",
                "-n",
                FLEET_NAMESPACE,
                "streamjob",
                &job,
                "--type=merge",
                "-p",
                r#"{"spec":{"checkpoint":{"interval":"12s"}}}"#,
            ],
            None,
        )?;
        rolled(&client, &job).await?;
        settled(&env, &client, &job).await?;
        let b = traffic(2).await?;
        let mut want = alerts(&b);
        let together = alerts(&[a.clone(), b.clone()].concat());
        want.extend(want_a);
        want.sort_by(|x, y| x.alert_id.cmp(&y.alert_id));
        anyhow::ensure!(
            together != want,
            "the traffic does not tell the upgrade modes apart"
        );
        let got = committed_alerts(want.len()).await?;
        println!(
            "stateless: {} alerts (A alone + B alone); A and B through one state would give {}",
            got.len(),
            together.len()
        );
        anyhow::ensure!(got == want, "alerts after the stateless upgrade");
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        show_pods(&env, FLEET_NAMESPACE);
    }
    delete_job(&env, &job)?;
    result
}

/// A roll whose new pods never become ready (an image that does not exist): reported as
/// Degraded and, as the job asks (`rollout.rollbackOnFailure`), rolled back to the last spec
/// that ran, its stuck pod replaced by one of the stable template.
#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_roll_is_reported_and_rolled_back() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let _turn = install_operator(&env).await?;
    let client = client(&env).await?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let run = Run::new(&short_name("rb"));
    let processor = "fraud-detector";
    let job = job_name(&run, processor);
    let jobs = kube::Api::<StreamJob>::namespaced(client.clone(), FLEET_NAMESPACE);
    let result = async {
        create_topic(&bootstrap, &run.orders, PARTITIONS).await?;
        create_bucket(env.get("GCS_ENDPOINT")?, &bucket(&run)).await?;
        let manifest = format!(
            "{}  rollout:\n    readinessTimeout: 30s\n    rollbackOnFailure: true\n",
            stream_job(&env, &run, processor, &run.orders)?
        );
        kubectl(&env, &["apply", "-n", FLEET_NAMESPACE, "-f", "-"], Some(&manifest))?;
        let replicas = PARTITIONS / PARTITIONS_PER_REPLICA;
        running(&client, FLEET_NAMESPACE, &job, replicas, START).await?;
        let stable = eventually("the running spec recorded as stable", START, || async {
            let current = jobs.get(&job).await?;
            let stable = current.status.as_ref().and_then(|s| s.last_stable_generation);
            Ok(stable.filter(|g| Some(*g) == current.metadata.generation))
        })
        .await?;
        let image = image(&env, processor)?;
        let broken = format!("{}:does-not-exist", image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r));
        let started = Instant::now();
        kubectl(
            &env,
            &["patch", "-n", FLEET_NAMESPACE, "streamjob", &job, "--type=merge", "-p",
              &format!(r#"{{"spec":{{"image":"{broken}"}}}}"#)],
            None,
        )?;
        let (reason, message) = eventually("the stuck roll rolled back", START, || async {
            let current = jobs.get(&job).await?;
            let degraded = current.status.as_ref().and_then(|s| {
                s.conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "True")
            });
            Ok(degraded
                .filter(|c| c.reason == "RolledBack")
                .map(|c| (c.reason.clone(), c.message.clone())))
        })
        .await?;
        println!("{reason}: {message}");
        anyhow::ensure!(
            message.contains("ImagePull") || message.contains("ErrImage"),
            "the status names what is wrong: {message}"
        );
        // Every pod back on the stable template, all of them ready.
        rolled(&client, &job).await?;
        for pod in pods(&client, FLEET_NAMESPACE, &job).await? {
            let spec_image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone());
            anyhow::ensure!(spec_image.as_deref() == Some(image.as_str()), "a pod runs {spec_image:?}");
        }
        println!(
            "measured: stuck roll detected and rolled back to generation {stable}, every pod ready again, {:.1}s after the broken spec",
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        show_pods(&env, FLEET_NAMESPACE);
    }
    delete_job(&env, &job)?;
    result
}

// Each run checks the whole pipeline against the oracles (and measures the time from `kubectl
// apply` to the first output); the disruptions share runs to keep the suite's time down.

#[tokio::test(flavor = "multi_thread")]
async fn force_deleted_pods_a_lost_volume_and_an_upgrade_change_nothing() -> anyhow::Result<()> {
    run_fleet(&[Disruption::PodsDeleted, Disruption::Upgraded]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rescaled_jobs_and_a_killed_operator_change_nothing() -> anyhow::Result<()> {
    run_fleet(&[Disruption::RescaledWithoutOperator]).await
}

/// A name short enough for a StreamJob's children (`<run>-<processor>-<ordinal>` pods, their
/// controller-revision labels), unique within the test run.
fn short_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or_default();
    format!("{prefix}{nanos}")
}

/// Whether an IPv4 address lies in a CIDR range.
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = |text: &str| text.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((base, bits)) = cidr.split_once('/') else {
        return false;
    };
    match (parse(ip), parse(base), bits.parse::<u32>()) {
        (Some(ip), Some(base), Ok(bits)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            ip & mask == base & mask
        }
        _ => false,
    }
}
