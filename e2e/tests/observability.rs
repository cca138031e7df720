//! What on-call sees, on the real node: a fraud-detector job (an operator pod) reading orders
//! that a transactional producer wrote, as cdc-processor writes them. Once the job is idle, its
//! lag is 0 everywhere it is reported: the StreamJob's status, the operator's per-partition
//! metric, the pods' own gauge and the HPA's recorded metric, also where the last transaction
//! on a partition was aborted. The real Prometheus of the environment discovers the operator
//! and the pods (listed through the API server) and evaluates the jobs chart's rules: nothing
//! fires for the idle job; with every replica gone (its StatefulSet scaled to zero behind the
//! operator's back, as a drained node pool leaves it) and orders still coming, the lag and
//! stall alerts fire and the operator's lag keeps rising.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;
use std::time::Duration;
use trendstream_e2e::TestEnv;
use trendstream_e2e::fleet::{
    FLEET_NAMESPACE, OPERATOR_NAMESPACE, helm, image, install_operator, pod_facing, running,
    show_pods,
};
use trendstream_e2e::kafka::create_topic;
use trendstream_e2e::kube::{client, eventually, kubectl};
use trendstream_e2e::pipeline::{self, Run};
use trendstream_e2e::process::Running;
use trendstream_e2e::prometheus::scrape_pods;
use trendstream_events::{Currency, OrderEvent, OrderStatus, encode_order};
use trendstream_operator::crd::StreamJob;

const PARTITIONS: i32 = 3;
/// Orders per committed transaction, and committed transactions per partition.
const PER_TRANSACTION: usize = 20;
const TRANSACTIONS: usize = 5;
const START: Duration = Duration::from_secs(240);
/// The operator reads lag every 10 s and writes status every 30 s; Prometheus scrapes every
/// 2 s and evaluates every 1 s.
const SETTLE: Duration = Duration::from_secs(120);
/// The alerts' `for` and windows, shortened so the test sees them fire (production defaults
/// are minutes).
const ALERT_SETTINGS: &[&str] = &[
    "alerts.lagHigh.threshold=100",
    "alerts.lagHigh.derivWindow=1m",
    "alerts.lagHigh.for=15s",
    "alerts.jobStalled.committedOffsetAgeSeconds=20",
    "alerts.jobStalled.for=10s",
    // Every other alert too: the idle job must not trip any of them.
    "alerts.transactionAborts.for=10s",
    "alerts.deadLetters.for=10s",
    "alerts.checkpointStale.for=10s",
    "alerts.checkpointFailures.for=10s",
    "alerts.rebalanceStorm.for=10s",
    "alerts.replicasUnavailable.for=10s",
    "alerts.replicasUnavailable.noneReady.for=10s",
    "alerts.redisWriteErrors.for=10s",
];
const LAG_ALERT: &str = "TrendStreamLagHigh";
const STALL_ALERT: &str = "TrendStreamJobStalled";

fn manifest(env: &TestEnv, name: &str, run: &Run) -> anyhow::Result<String> {
    Ok(format!(
        r#"apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata:
  name: {name}
spec:
  processor: fraud-detector
  image: {image}
  kafka:
    bootstrapServers: "{bootstrap}"
    inputTopics: [{orders}]
    outputTopic: {out}
    dlqTopic: {dlq}
    lateTopic: {late}
    partitions: {PARTITIONS}
  parallelism:
    replicas: 1
  checkpoint:
    interval: 10s
    volumeSize: 1Gi
  redis:
    url: "{redis}"
    keyPrefix: {name}
  resources:
    requests: {{ cpu: 50m, memory: 64Mi }}
    limits: {{ memory: 1Gi }}
"#,
        image = image(env, "fraud-detector")?,
        bootstrap = pod_facing(env, "KAFKA_BOOTSTRAP_SERVERS")?,
        orders = run.orders,
        out = run.topic("fraud-detector", "out"),
        dlq = run.topic("fraud-detector", "dlq"),
        late = run.topic("fraud-detector", "late"),
        redis = pod_facing(env, "REDIS_URL")?,
    ))
}

fn order(partition: i32, n: usize) -> anyhow::Result<Vec<u8>> {
    let id = format!("o-{partition}-{n}");
    Ok(encode_order(&OrderEvent {
        event_id: format!("{id}-placed"),
        order_id: id,
        user_id: format!("u-{partition}-{}", n % 7),
        status: OrderStatus::Placed,
        amount: "12.50".parse()?,
        currency: Currency::default(),
        items: Vec::new(),
        ts: 1_700_000_000_000 + i64::try_from(n)? * 1_000,
    })?)
}

/// Orders in committed transactions on every partition, then one transaction per partition
/// that is aborted: each partition ends with an abort marker after aborted records.
fn produce_transactionally(bootstrap: &str, topic: &str, id: &str) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .create()?;
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout)?;
    let mut n = 0;
    for aborted in std::iter::repeat_n(false, TRANSACTIONS).chain([true]) {
        producer.begin_transaction()?;
        for partition in 0..PARTITIONS {
            for _ in 0..PER_TRANSACTION {
                let payload = order(partition, n)?;
                let key = format!("u-{partition}");
                producer
                    .send(
                        BaseRecord::to(topic)
                            .partition(partition)
                            .key(&key)
                            .payload(&payload),
                    )
                    .map_err(|(err, _)| err)?;
                n += 1;
            }
        }
        producer.flush(timeout)?;
        if aborted {
            producer.abort_transaction(timeout)?;
        } else {
            producer.commit_transaction(timeout)?;
        }
    }
    Ok(())
}

/// The jobs chart's rules (its PrometheusRule's groups) with `settings`, loaded into the
/// environment's Prometheus.
async fn load_rules(env: &TestEnv, settings: &[&str]) -> anyhow::Result<()> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/trendstream-jobs");
    let mut args = vec![
        "template".to_owned(),
        "trendstream-jobs".to_owned(),
        chart.to_string_lossy().into_owned(),
        "--show-only".to_owned(),
        "templates/prometheusrule.yaml".to_owned(),
    ];
    for setting in settings {
        args.extend(["--set".to_owned(), (*setting).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rendered: serde_yaml::Value = serde_yaml::from_str(&helm(env, &args)?)?;
    let groups = serde_yaml::to_string(&rendered["spec"])?;
    let dir = Path::new(env.get("PROMETHEUS_RULES_DIR")?);
    std::fs::write(dir.join("trendstream.yaml"), groups)?;
    let prometheus = env.get("PROMETHEUS_URL")?;
    let http = reqwest::Client::new();
    let reload = http.post(format!("{prometheus}/-/reload")).send().await?;
    anyhow::ensure!(
        reload.status().is_success(),
        "Prometheus refused the rules: {}",
        reload.text().await?
    );
    let rules: serde_json::Value = http
        .get(format!("{prometheus}/api/v1/rules"))
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for alert in [LAG_ALERT, STALL_ALERT] {
        anyhow::ensure!(names.contains(&alert), "{alert} not loaded: {names:?}");
    }
    println!("Prometheus loaded {} rules of the jobs chart", names.len());
    Ok(())
}

/// Every sample of an instant query, as (labels, value).
async fn query(env: &TestEnv, promql: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", env.get("PROMETHEUS_URL")?))
        .query(&[("query", promql)])
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(answer["status"] == "success", "{promql}: {answer}");
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|sample| {
            let value = sample["value"][1]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("{promql}: no value in {sample}"))?
                .parse()?;
            Ok((sample["metric"].clone(), value))
        })
        .collect()
}

/// The alerts of `job` (any rule) in `state` (`pending` or `firing`).
async fn alerts(env: &TestEnv, job: &str, state: &str) -> anyhow::Result<Vec<String>> {
    let answer: serde_json::Value =
        reqwest::get(format!("{}/api/v1/alerts", env.get("PROMETHEUS_URL")?))
            .await?
            .json()
            .await?;
    Ok(answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == state)
        .filter(|a| {
            let labels = &a["labels"];
            [&labels["streamjob"], &labels["app_kubernetes_io_instance"]]
                .iter()
                .any(|v| v.as_str() == Some(job))
        })
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect())
}

/// Every value of `promql` is 0, and there are `count` of them.
async fn all_zero(env: &TestEnv, promql: &str, count: usize) -> anyhow::Result<bool> {
    let samples = query(env, promql).await?;
    Ok(samples.len() == count && samples.iter().all(|(_, v)| *v == 0.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_lag_is_zero_everywhere_and_the_alerts_fire_only_when_a_job_stops()
-> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let _turn = install_operator(&env).await?;
    let client = client(&env).await?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let run = Run::new(&format!("obs{}", std::process::id() % 100_000));
    let name = format!("{}-fraud", run.name);
    load_rules(&env, ALERT_SETTINGS).await?;
    create_topic(&bootstrap, &run.orders, PARTITIONS).await?;
    create_topic(&bootstrap, &run.clicks, PARTITIONS).await?;
    for what in ["out", "dlq", "late"] {
        create_topic(&bootstrap, &run.topic("fraud-detector", what), PARTITIONS).await?;
    }
    tokio::task::spawn_blocking({
        let (bootstrap, topic, id) = (bootstrap.clone(), run.orders.clone(), name.clone());
        move || produce_transactionally(&bootstrap, &topic, &id)
    })
    .await??;
    let mut loadgen: Option<Running> = None;
    let result = async {
        kubectl(
            &env,
            &["apply", "-n", FLEET_NAMESPACE, "-f", "-"],
            Some(&manifest(&env, &name, &run)?),
        )?;
        running(&client, FLEET_NAMESPACE, &name, 1, START).await?;
        let group = format!("{FLEET_NAMESPACE}.{name}");
        let targets_dir = env.get("PROMETHEUS_TARGETS_DIR")?;
        let operator = scrape_pods(
            targets_dir,
            &client,
            OPERATOR_NAMESPACE,
            "app.kubernetes.io/name=trendstream-operator",
        )
        .await?;
        let processor = scrape_pods(
            targets_dir,
            &client,
            FLEET_NAMESPACE,
            &format!("app.kubernetes.io/instance={name}"),
        )
        .await?;
        anyhow::ensure!(
            !operator.is_empty() && !processor.is_empty(),
            "no operator or processor pod to scrape"
        );

        // Idle: every committed record processed, every partition ending in a marker.
        let jobs = kube::Api::<StreamJob>::namespaced(client.clone(), FLEET_NAMESPACE);
        eventually("status.consumerLag 0", SETTLE, || async {
            let lag = jobs.get(&name).await?.status.and_then(|s| s.consumer_lag);
            Ok((lag == Some(0)).then_some(()))
        })
        .await?;
        println!(
            "{}",
            kubectl(
                &env,
                &["get", "streamjobs", "-n", FLEET_NAMESPACE, &name],
                None
            )?
        );
        let partitions = usize::try_from(PARTITIONS)?;
        let checks = [
            format!("trendstream_job_lag{{streamjob=\"{name}\"}}"),
            format!("trendstream_consumer_lag{{app_kubernetes_io_instance=\"{name}\"}}"),
        ];
        for promql in &checks {
            eventually(
                &format!("{promql} 0 on every partition"),
                SETTLE,
                || async { Ok(all_zero(&env, promql, partitions).await?.then_some(())) },
            )
            .await?;
        }
        let hpa_metric = format!("trendstream_consumer_group_lag{{consumer_group=\"{group}\"}}");
        eventually(&format!("{hpa_metric} 0"), SETTLE, || async {
            Ok(all_zero(&env, &hpa_metric, 1).await?.then_some(()))
        })
        .await?;
        println!(
            "idle: status, trendstream_job_lag, trendstream_consumer_lag and {hpa_metric} are 0"
        );

        // Healthy and idle for longer than every shortened `for`: nothing fires.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let firing = alerts(&env, &name, "firing").await?;
        anyhow::ensure!(
            firing.is_empty(),
            "alerts firing for the idle job: {firing:?}"
        );

        // Every replica gone while orders keep coming. (A suspended job is left out of these
        // alerts: stopping it was meant.) The operator re-applies an unchanged desired state
        // only every few minutes, so the StatefulSet stays at zero for this part.
        kubectl(
            &env,
            &[
                "scale",
                "statefulset",
                &name,
                "-n",
                FLEET_NAMESPACE,
                "--replicas=0",
            ],
            None,
        )?;
        let events = run.dir()?.join("events.jsonl");
        loadgen = Some(pipeline::start_loadgen(
            &bootstrap,
            &run,
            1_000_000,
            500,
            pipeline::SEED,
            &events,
            &[],
        )?);
        let lag_query = format!("sum(trendstream_job_lag{{streamjob=\"{name}\"}})");
        let first_lag = std::sync::Mutex::new(None);
        let firing = eventually(
            "the lag and stall alerts firing",
            Duration::from_secs(300),
            || async {
                let lag = query(&env, &lag_query).await?.first().map(|(_, v)| *v);
                {
                    let mut first = first_lag.lock().unwrap_or_else(|p| p.into_inner());
                    if first.is_none() && lag.is_some_and(|l| l > 0.0) {
                        *first = lag;
                    }
                }
                let firing = alerts(&env, &name, "firing").await?;
                Ok([LAG_ALERT, STALL_ALERT]
                    .iter()
                    .all(|a| firing.iter().any(|f| f == a))
                    .then_some(firing))
            },
        )
        .await?;
        let first_lag = first_lag.into_inner().unwrap_or_else(|p| p.into_inner());
        let last_lag = query(&env, &lag_query).await?.first().map(|(_, v)| *v);
        println!("stopped: firing {firing:?}; operator's lag {first_lag:?} -> {last_lag:?}");
        anyhow::ensure!(
            matches!((first_lag, last_lag), (Some(a), Some(b)) if b > a),
            "the operator's lag did not keep rising: {first_lag:?} -> {last_lag:?}"
        );
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        show_pods(&env, FLEET_NAMESPACE);
    }
    drop(loadgen);
    kubectl(
        &env,
        &[
            "delete",
            "streamjob",
            &name,
            "-n",
            FLEET_NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
        ],
        None,
    )?;
    kubectl(
        &env,
        &[
            "delete",
            "pvc",
            "-n",
            FLEET_NAMESPACE,
            "-l",
            &format!("app.kubernetes.io/instance={name}"),
        ],
        None,
    )?;
    result
}
