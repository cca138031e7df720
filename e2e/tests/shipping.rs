//! What users deploy with (issue 8), checked by the real tools `e2e/env/install` builds or
//! installs: Helm, kubeconform, OpenTofu's formatter, checkov, hadolint, skaffold's and Argo CD's
//! own schemas, and the test environment's kube-apiserver (server-side dry run, and the
//! operator run with nothing but the chart's RBAC).
//!
//! The Python side of the checks is `e2e/shipping_checks.py`, run in the shipping virtualenv.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use trendstream_e2e::kube::{client, eventually, install_crd, kubeconfig, kubectl, with_namespace};
use trendstream_e2e::process::{Running, workspace_binary};
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_operator::builders::Defaults;
use trendstream_operator::crd::{Phase, StreamJob};

const CHARTS: [&str; 2] = ["trendstream-operator", "trendstream-jobs"];
/// The Kubernetes release the test environment runs (e2e/env/go/k8s), for `helm template`.
const KUBE_VERSION: &str = "1.36.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is inside the repository")
        .to_owned()
}

/// The tools, from the env file `e2e/env/up` wrote.
struct Tools {
    env: TestEnv,
}

impl Tools {
    fn load() -> anyhow::Result<Self> {
        Ok(Self {
            env: TestEnv::load()?,
        })
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        let value = self.env.get(key).map_err(|err| {
            anyhow::anyhow!(
                "{err}: the shipping tools are built by `e2e/env/install` (`make test` runs it) \
                 and recorded by the `e2e/env/up` after it"
            )
        })?;
        Ok(PathBuf::from(value))
    }

    fn command(&self, key: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(self.path(key)?);
        command.current_dir(repo());
        Ok(command)
    }

    /// The shipping checks in Python (`e2e/shipping_checks.py SUBCOMMAND ARGS`).
    fn python(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command("SHIPPING_PYTHON")?;
        command.arg("e2e/shipping_checks.py").args(args);
        run(command)
    }

    /// `helm template` of one chart, with values files and `--set`s, into the release namespace.
    fn render(
        &self,
        chart: &str,
        namespace: &str,
        values: &[PathBuf],
        set: &[String],
    ) -> anyhow::Result<String> {
        let mut command = self.command("HELM")?;
        command
            .args(["template", chart, &format!("charts/{chart}")])
            .args(["--namespace", namespace, "--kube-version", KUBE_VERSION]);
        for file in values {
            command.arg("--values").arg(file);
        }
        for value in set {
            command.args(["--set", value]);
        }
        run(command)
    }

    /// Every chart rendered with its defaults and with its example values, one file each.
    fn render_all(&self, dir: &Path, namespace: &str) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for chart in CHARTS {
            for (name, values) in [
                ("default", vec![]),
                ("example", vec![example_values(chart)]),
            ] {
                let file = dir.join(format!("{chart}-{name}.yaml"));
                std::fs::write(&file, self.render(chart, namespace, &values, &[])?)?;
                files.push(file);
            }
        }
        Ok(files)
    }
}

fn example_values(chart: &str) -> PathBuf {
    repo()
        .join("charts")
        .join(chart)
        .join("ci/example-values.yaml")
}

/// Runs `command`; its stdout, or an error with everything it printed.
fn run(mut command: Command) -> anyhow::Result<String> {
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "{command:?} exited with {}:\n{stdout}\n{stderr}",
        output.status
    );
    Ok(stdout)
}

fn tempdir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("shipping-").tempdir()?)
}

#[test]
fn both_charts_lint_and_render_with_default_and_example_values() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    for chart in CHARTS {
        for values in [None, Some(example_values(chart))] {
            let mut lint = tools.command("HELM")?;
            lint.args(["lint", "--strict", &format!("charts/{chart}")])
                .args(["--namespace", "trendstream", "--kube-version", KUBE_VERSION]);
            if let Some(file) = &values {
                lint.arg("--values").arg(file);
            }
            let out = run(lint)?;
            assert!(out.contains("0 chart(s) failed"), "{out}");
            let rendered = tools.render(chart, "trendstream", values.as_slice(), &[])?;
            assert!(
                rendered.contains("kind: "),
                "{chart} rendered nothing:\n{rendered}"
            );
        }
    }
    // The jobs chart's defaults are the examples: one StreamJob per file in examples/.
    let jobs = tools.render("trendstream-jobs", "trendstream", &[], &[])?;
    let examples = std::fs::read_dir(repo().join("examples"))?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert_eq!(jobs.matches("kind: StreamJob").count(), examples, "{jobs}");
    Ok(())
}

#[test]
fn values_that_break_the_schema_are_rejected() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    for (chart, file, field) in [
        (
            "trendstream-operator",
            "operator-bad-values.yaml",
            "/replicaCount",
        ),
        (
            "trendstream-jobs",
            "jobs-bad-values.yaml",
            "/jobs/fraud-detector/spec/processor",
        ),
    ] {
        let bad = repo().join("e2e/tests/fixtures/shipping").join(file);
        let err = tools
            .render(chart, "trendstream", &[bad], &[])
            .expect_err("values breaking the schema must be rejected")
            .to_string();
        assert!(
            err.contains("don't meet the specifications of the schema") && err.contains(field),
            "{chart}: {err}"
        );
    }
    Ok(())
}

#[test]
fn the_operator_chart_installs_the_crd_of_crds() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let dir = tempdir()?;
    let rendered = dir.path().join("operator.yaml");
    std::fs::write(
        &rendered,
        tools.render("trendstream-operator", "trendstream", &[], &[])?,
    )?;
    let out = tools.python(&[
        "crd-matches",
        &rendered.to_string_lossy(),
        "crds/streamjob.yaml",
    ])?;
    println!("{out}");
    Ok(())
}

/// The CRDs whose kinds the manifests use besides StreamJob, from their projects' modules.
fn schema_crds(tools: &Tools) -> anyhow::Result<Vec<PathBuf>> {
    let sources = tools.path("SHIPPING_SCHEMAS")?;
    Ok(vec![
        repo().join("crds/streamjob.yaml"),
        sources.join("prometheusrule-crd.yaml"),
        sources.join("argocd-application-crd.yaml"),
        sources.join("argocd-appproject-crd.yaml"),
    ])
}

#[test]
fn rendered_manifests_and_argocd_applications_pass_kubeconform_strict() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let dir = tempdir()?;
    let mut manifests = tools.render_all(dir.path(), "trendstream")?;
    manifests.extend(
        std::fs::read_dir(repo().join("deploy/argocd"))?
            .filter_map(Result::ok)
            .map(|e| e.path()),
    );
    let schemas = dir.path().join("schemas");
    let sources = tools.path("SHIPPING_SCHEMAS")?;
    let mut args: Vec<String> = vec![
        "schemas".into(),
        "--sources".into(),
        sources.to_string_lossy().into(),
        "--swagger".into(),
        sources
            .join("kubernetes-swagger.json")
            .to_string_lossy()
            .into(),
        "--out".into(),
        schemas.to_string_lossy().into(),
    ];
    for crd in schema_crds(&tools)? {
        args.extend(["--crd".into(), crd.to_string_lossy().into()]);
    }
    args.extend(manifests.iter().map(|m| m.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    println!("{}", tools.python(&args)?);

    let kubeconform = |files: &[PathBuf]| -> anyhow::Result<Command> {
        let mut command = tools.command("KUBECONFORM")?;
        command
            .args(["-strict", "-summary", "-output", "text"])
            .arg("-schema-location")
            .arg(format!(
                "{}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json",
                schemas.display()
            ))
            .args(files);
        Ok(command)
    };
    let out = run(kubeconform(&manifests)?)?;
    println!("{out}");
    assert!(
        out.contains("Invalid: 0, Errors: 0, Skipped: 0"),
        "kubeconform: {out}"
    );

    // And it does refuse a field a schema does not have, built-in kind or StreamJob.
    let bad = repo().join("e2e/tests/fixtures/shipping/bad-manifests.yaml");
    let err = run(kubeconform(&[bad])?)
        .expect_err("kubeconform must refuse unknown fields")
        .to_string();
    assert!(
        err.contains("'bogus' not allowed") && err.contains("'nope' not allowed"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn rendered_manifests_are_accepted_by_the_api_server_in_a_dry_run() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let env = TestEnv::load()?;
    let client = client(&env).await?;
    // Server-side dry runs of custom resources need their CRDs to exist.
    install_crd(&env)?;
    let sources = tools.path("SHIPPING_SCHEMAS")?;
    for crd in [
        "prometheusrule-crd.yaml",
        "argocd-application-crd.yaml",
        "argocd-appproject-crd.yaml",
    ] {
        let path = sources.join(crd).to_string_lossy().into_owned();
        kubectl(
            &env,
            &["apply", "--server-side", "--force-conflicts", "-f", &path],
            None,
        )?;
    }
    kubectl(
        &env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/prometheusrules.monitoring.coreos.com",
            "crd/applications.argoproj.io",
            "crd/appprojects.argoproj.io",
        ],
        None,
    )?;
    with_namespace(&client, "ship-dry-run", |_, ns| async move {
        for chart in CHARTS {
            // The example values name namespaces of their own: here they are the test's.
            let set = match chart {
                "trendstream-operator" => [format!("watchNamespace={ns}")],
                _ => [format!("dashboards.namespace={ns}")],
            };
            for values in [vec![], vec![example_values(chart)]] {
                let manifests = tools.render(chart, &ns, &values, &set)?;
                let out = kubectl(
                    &env,
                    &[
                        "apply",
                        "--dry-run=server",
                        "--server-side",
                        "-n",
                        &ns,
                        "-f",
                        "-",
                    ],
                    Some(&manifests),
                )?;
                println!("{chart} {values:?}:\n{out}");
                assert!(out.contains("(server dry run)"), "{out}");
            }
        }
        // Argo CD's objects live in its own namespace.
        let argocd = kubectl(&env, &["get", "namespace", "argocd", "-o", "name"], None);
        if argocd.is_err() {
            kubectl(&env, &["create", "namespace", "argocd"], None)?;
        }
        let path = repo().join("deploy/argocd");
        let out = kubectl(
            &env,
            &[
                "apply",
                "--dry-run=server",
                "--server-side",
                "-f",
                &path.to_string_lossy(),
            ],
            None,
        )?;
        println!("{out}");
        assert_eq!(out.matches("(server dry run)").count(), 3, "{out}");
        Ok(())
    })
    .await
}

/// A copy of the environment's kubeconfig that acts as `user` (impersonation).
fn impersonating_kubeconfig(env: &TestEnv, user: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig(env)?)?)?;
    let users = config["users"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow::anyhow!("kubeconfig without users"))?;
    for entry in users {
        entry["user"]["as"] = serde_yaml::Value::String(user.to_owned());
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

/// An example manifest named `name`, changed by `edit`, with its broker replaced: the
/// environment's when it runs Kafka, else a closed local port (the operator then reports no lag,
/// which this test does not look at).
fn example(
    env: &TestEnv,
    file: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> anyhow::Result<String> {
    let bootstrap = env
        .get("KAFKA_BOOTSTRAP_SERVERS")
        .map(str::to_owned)
        .unwrap_or_else(|_| "127.0.0.1:9".to_owned());
    let text = std::fs::read_to_string(repo().join("examples").join(file))?;
    let mut job: serde_yaml::Value = serde_yaml::from_str(&text)?;
    job["metadata"]["name"] = name.into();
    edit(&mut job["spec"]);
    let text = serde_yaml::to_string(&job)?.replace("kafka.trendstream.svc:9092", &bootstrap);
    // Its pods run for real where the environment has images (the node's registry).
    match env.get("IMAGE_TRENDSTREAM_OPERATOR") {
        Ok(_) => trendstream_e2e::fleet::for_this_cluster(env, &text),
        Err(_) => Ok(text),
    }
}

async fn phase_of(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Option<Phase>> {
    Ok(Api::<StreamJob>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .and_then(|job| job.status.and_then(|s| s.phase)))
}

/// The operator chart installs with Helm, and its least-privilege RBAC is enough: the operator,
/// acting as the chart's ServiceAccount, elects itself through the Lease, deploys a stateless and a stateful
/// job, deletes an HPA no longer wanted, and cleans up a job's state volumes on deletion.
#[tokio::test]
async fn the_operator_runs_with_nothing_but_the_charts_rbac() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let env = TestEnv::load()?;
    let client = client(&env).await?;
    install_crd(&env)?;
    with_namespace(&client, "ship-rbac", |client, ns| async move {
        let lease = unique_name("lease");
        // Installed by Helm itself, as a cluster admin would.
        let mut helm = tools.command("HELM")?;
        helm.args(["upgrade", "--install", "trendstream-operator"])
            .args(["charts/trendstream-operator", "--namespace", &ns, "--wait"])
            .arg("--kubeconfig")
            .arg(kubeconfig(&env)?)
            .args(["--set", &format!("watchNamespace={ns}")])
            .args(["--set", "crds.install=false"])
            .args(["--set", &format!("leaderElection.leaseName={lease}")])
            // The operator runs below as a local process acting as the chart's account.
            .args(["--set", "replicaCount=0"]);
        println!("{}", run(helm)?);
        let account = format!("system:serviceaccount:{ns}:trendstream-operator");
        let dir = tempdir()?;
        let config = impersonating_kubeconfig(&env, &account, dir.path())?;
        let log = Path::new(env.get("TRENDSTREAM_ENV_DIR")?)
            .join("logs")
            .join(format!("operator-{ns}.log"));
        let mut command = Command::new(workspace_binary("trendstream-operator")?);
        command
            .env("KUBECONFIG", &config)
            .env("RUST_LOG", "info,kube=warn")
            .args(["--namespace", &ns, "--lease-namespace", &ns])
            .args(["--lease-name", &lease, "--identity", "chart-rbac"])
            .arg("--leader-election=true")
            .arg(format!(
                "--http-addr=127.0.0.1:{}",
                trendstream_e2e::process::free_port()?
            ))
            .args(["--kafka-timeout-seconds", "2"]);
        println!("operator as {account}, log {}", log.display());
        let mut operator = Running::start(command, log.clone())?;

        // A stateful job with one state volume, deleted with the job.
        // Its own one-partition input; the checkpoint bucket on the emulator.
        let input = format!("{ns}-orders");
        if let Ok(bootstrap) = env.get("KAFKA_BOOTSTRAP_SERVERS") {
            trendstream_e2e::kafka::create_topic(bootstrap, &input, 1).await?;
        }
        if let Ok(gcs) = env.get("GCS_ENDPOINT") {
            let _ = trendstream_e2e::gcs::create_bucket(gcs, "trendstream-checkpoints").await;
        }
        let stateful = example(&env, "revenue-job.yaml", "revenue", |spec| {
            spec["parallelism"]["replicas"] = 1.into();
            spec["kafka"]["partitions"] = 1.into();
            spec["kafka"]["inputTopics"] = serde_yaml::Value::Sequence(vec![input.clone().into()]);
            spec["checkpoint"]["onDelete"] = "Delete".into();
        })?;
        kubectl(&env, &["apply", "-n", &ns, "-f", "-"], Some(&stateful))?;
        // This Redis has no password: the example's Secret reference goes. The API requires a
        // bearer token from a Secret, and admits the test's own namespace besides.
        let api = example(&env, "feature-api.yaml", "api", |spec| {
            if let Some(redis) = spec["redis"].as_mapping_mut() {
                redis.remove("passwordSecretRef");
            }
            spec["api"] =
                serde_yaml::from_str("{ authSecretRef: { name: api-token } }").expect("yaml");
            spec["networkPolicy"] =
                serde_yaml::from_str("{ allowFromNamespaces: [monitoring] }").expect("yaml");
        })?;
        let literal = format!("--from-literal=token={API_TOKEN}");
        kubectl(
            &env,
            &[
                "create",
                "secret",
                "generic",
                "api-token",
                "-n",
                &ns,
                &literal,
            ],
            None,
        )?;
        kubectl(&env, &["apply", "-n", &ns, "-f", "-"], Some(&api))?;
        for name in ["revenue", "api"] {
            let reached = eventually(
                &format!("{name} Running"),
                Duration::from_secs(120),
                || async {
                    Ok((phase_of(&client, &ns, name).await? == Some(Phase::Running)).then_some(()))
                },
            )
            .await;
            operator.check_alive()?;
            reached?;
        }

        // The job's NetworkPolicy: ingress to the HTTP port from its namespace and the listed one.
        let policy = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .get("api")
            .await?;
        let peers = serde_json::to_value(&policy.spec)?;
        assert_eq!(
            peers["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
            serde_json::json!(["monitoring", ns.as_str()]),
            "{peers}"
        );
        assert_eq!(peers["ingress"][0]["ports"][0]["port"], 9090, "{peers}");
        // On a node that runs the pods: the token from the Secret guards the API.
        if env.get("IMAGE_TRENDSTREAM_OPERATOR").is_ok() {
            check_api_token(&client, &ns).await?;
        }

        // An HPA no longer wanted is deleted.
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
        assert!(hpas.get_opt("api").await?.is_some());
        kubectl(
            &env,
            &[
                "patch",
                "-n",
                &ns,
                "streamjob",
                "api",
                "--type=merge",
                "-p",
                r#"{"spec":{"autoscaling":null}}"#,
            ],
            None,
        )?;
        eventually("the api HPA deleted", Duration::from_secs(60), || async {
            Ok(hpas.get_opt("api").await?.is_none().then_some(()))
        })
        .await?;

        // Deleting the stateful job runs the finalizer, which deletes its volume claims.
        kubectl(
            &env,
            &["delete", "-n", &ns, "streamjob", "revenue", "--wait=false"],
            None,
        )?;
        eventually("the revenue job gone", Duration::from_secs(60), || async {
            Ok(Api::<StreamJob>::namespaced(client.clone(), &ns)
                .get_opt("revenue")
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        operator.check_alive()?;
        let text = std::fs::read_to_string(&log)?;
        assert!(
            !text.to_lowercase().contains("forbidden"),
            "the operator was refused something:\n{text}"
        );
        Ok(())
    })
    .await
}

/// The operator's RBAC is namespaced unless asked otherwise: by default a Role in the jobs'
/// namespace, with the Argo CD Application's values a Role there and the namespace (kept on
/// uninstall), and a ClusterRole only for `watchNamespace=""`.
#[test]
fn the_operators_rbac_is_namespaced_by_default_and_in_the_argocd_application() -> anyhow::Result<()>
{
    let tools = Tools::load()?;
    let chart = "trendstream-operator";
    let default = tools.render(chart, "trendstream-system", &[], &[])?;
    assert!(default.contains("kind: Role\n"), "{default}");
    assert!(
        !default.contains("kind: ClusterRole"),
        "no cluster-wide RBAC by default"
    );
    assert!(
        default.contains("value: \"trendstream\""),
        "WATCH_NAMESPACE trendstream"
    );

    let app: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("deploy/argocd/operator.yaml"),
    )?)?;
    let dir = tempdir()?;
    let values = dir.path().join("argocd-values.yaml");
    std::fs::write(
        &values,
        serde_yaml::to_string(&app["spec"]["source"]["helm"]["valuesObject"])?,
    )?;
    let argocd = tools.render(chart, "trendstream-system", &[values], &[])?;
    assert!(!argocd.contains("kind: ClusterRole"), "{argocd}");
    assert!(argocd.contains("kind: Namespace") && argocd.contains("helm.sh/resource-policy: keep"));

    let everywhere = tools.render(
        chart,
        "trendstream-system",
        &[],
        &["watchNamespace=".to_owned()],
    )?;
    assert!(everywhere.contains("kind: ClusterRole\n"), "{everywhere}");
    Ok(())
}

const API_TOKEN: &str = "shipping-token-0123456789";

/// The feature-api pod of job `api` answers 401 without the Secret's token and serves with it;
/// its probes need none (the pod is ready).
async fn check_api_token(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=api"))
        .await?;
    let ip = pods
        .items
        .iter()
        .find_map(|pod| pod.status.as_ref()?.pod_ip.clone())
        .ok_or_else(|| anyhow::anyhow!("no api pod with an IP"))?;
    let http = reqwest::Client::new();
    let url = format!("http://{ip}:9090/api/v1/alerts");
    let status = http.get(&url).send().await?.status();
    assert_eq!(
        status,
        reqwest::StatusCode::UNAUTHORIZED,
        "{url} without a token"
    );
    let response = http.get(&url).bearer_auth(API_TOKEN).send().await?;
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "{url} with the token"
    );
    Ok(())
}

#[test]
fn the_lag_metric_is_the_one_the_operators_hpas_ask_for() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let metric = Defaults::default().lag_metric;
    let operator = tools.render("trendstream-operator", "trendstream", &[], &[])?;
    assert!(
        operator.contains(&format!(
            "name: LAG_METRIC\n              value: \"{metric}\""
        )),
        "{operator}"
    );
    let jobs = tools.render("trendstream-jobs", "trendstream", &[], &[])?;
    assert!(
        jobs.contains(&format!("- record: {metric}")),
        "the PrometheusRule records {metric}:\n{jobs}"
    );
    assert!(
        jobs.contains(&format!("as: {metric}")),
        "prometheus-adapter serves {metric}:\n{jobs}"
    );
    // What the rule aggregates: the operator's per-partition lag from the broker, or with
    // lagMetric.source=pods the runtime's per-partition gauge.
    assert!(jobs.contains("(trendstream_job_lag)"), "{jobs}");
    let pods = tools.render(
        "trendstream-jobs",
        "trendstream",
        &[],
        &["lagMetric.source=pods".to_owned()],
    )?;
    assert!(pods.contains("trendstream_consumer_lag{"), "{pods}");
    Ok(())
}

/// deploy/prometheus/trendstream-rules.yaml is the chart's PrometheusRule as rendered with its
/// defaults, and promtool accepts it and passes every alert's unit tests.
#[test]
fn the_alert_rules_match_the_chart_and_pass_promtool() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let mut render = Command::new(repo().join("deploy/prometheus/render"));
    render
        .arg("--check")
        .env("HELM", tools.path("HELM")?)
        .current_dir(repo());
    run(render)?;
    let promtool = tools.path("PROMTOOL")?;
    let mut check = Command::new(&promtool);
    check
        .args(["check", "rules", "deploy/prometheus/trendstream-rules.yaml"])
        .current_dir(repo());
    println!("{}", run(check)?);
    let mut tests: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/prometheus/tests"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    tests.sort();
    anyhow::ensure!(!tests.is_empty(), "no promtool tests");
    let mut test = Command::new(&promtool);
    test.args(["test", "rules"])
        .args(&tests)
        .current_dir(repo());
    println!("{}", run(test)?);
    Ok(())
}

/// Every series the Grafana dashboards query is one a service registers (in its registry's
/// prefix, with the suffix the OpenMetrics encoding adds).
#[test]
fn the_dashboards_query_metrics_the_services_export() -> anyhow::Result<()> {
    let sources = [
        ("trendstream_operator_", "operator/src/metrics.rs"),
        ("feature_api_", "services/feature-api/src/metrics.rs"),
        ("trendstream_", "services/runtime/src/metrics.rs"),
    ];
    let dir = repo().join("charts/trendstream-jobs/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let text = dashboard.to_string();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let Some((prefix, file)) = sources.iter().find(|(p, _)| word.starts_with(p)) else {
                continue;
            };
            let name = word.trim_start_matches(prefix);
            let name = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            let registered = std::fs::read_to_string(repo().join(file))?;
            assert!(
                registered.contains(&format!("\"{name}\"")),
                "{}: {word} is not registered in {file}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} metric references found");
    Ok(())
}

/// checkov's JSON report: no failed check, and a reason for every skipped one.
fn checkov(tools: &Tools, framework: &str, dir: &Path) -> anyhow::Result<()> {
    // In a network namespace of its own when it can have one (as root): checkov reaches for
    // Prisma Cloud unless told not to, and nothing here may leave the machine.
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if isolated {
        let mut command = Command::new("unshare");
        command.arg("-n").arg(tools.path("CHECKOV")?);
        command
    } else {
        tools.command("CHECKOV")?
    };
    command
        .args(["--framework", framework, "--output", "json", "--compact"])
        // No guidelines or policies downloaded from Prisma Cloud.
        .args(["--skip-download", "-d"])
        .arg(dir);
    let output = command.output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
        anyhow::anyhow!(
            "checkov printed no JSON report ({err}):\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} {} ({})",
                c["check_id"], c["check_name"], c["resource"], c["file_path"]
            )
        })
        .collect();
    let skipped = results["skipped_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let unexplained: Vec<String> = skipped
        .iter()
        .filter(|c| {
            c["check_result"]["suppress_comment"]
                .as_str()
                .is_none_or(|reason| reason.trim().len() < 10)
        })
        .map(|c| format!("{} {}", c["check_id"], c["resource"]))
        .collect();
    println!(
        "checkov {framework} {}: {} passed, {} failed, {} skipped",
        dir.display(),
        report["summary"]["passed"],
        failed.len(),
        skipped.len()
    );
    for check in &skipped {
        println!(
            "  skipped {} on {}: {}",
            check["check_id"], check["resource"], check["check_result"]["suppress_comment"]
        );
    }
    anyhow::ensure!(
        failed.is_empty(),
        "checkov {framework} failed checks:\n{}",
        failed.join("\n")
    );
    anyhow::ensure!(
        unexplained.is_empty(),
        "skipped without a reason: {}",
        unexplained.join(", ")
    );
    anyhow::ensure!(
        report["summary"]["passed"].as_u64().unwrap_or(0) > 0,
        "checkov ran no check"
    );
    Ok(())
}

#[test]
fn checkov_passes_terraform_and_the_rendered_manifests() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    checkov(&tools, "terraform", &repo().join("terraform"))?;
    let dir = tempdir()?;
    tools.render_all(dir.path(), "trendstream")?;
    checkov(&tools, "kubernetes", dir.path())?;
    // The report is read right: a privileged root pod fails.
    let bad = repo().join("e2e/tests/fixtures/shipping/checkov-bad");
    let err = checkov(&tools, "kubernetes", &bad)
        .expect_err("checkov must fail a privileged pod")
        .to_string();
    assert!(err.contains("CKV_K8S_16"), "{err}");
    Ok(())
}

#[test]
fn terraform_is_formatted_and_parses() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let fmt = |dir: &str| -> anyhow::Result<Command> {
        let mut command = tools.command("TOFU")?;
        command
            .args(["fmt", "-check", "-diff", "-recursive", dir])
            // No CLI configuration to look for (and warn about).
            .env("TF_CLI_CONFIG_FILE", "/dev/null");
        Ok(command)
    };
    run(fmt("terraform")?)?;
    let err = run(fmt("e2e/tests/fixtures/shipping/unformatted")?)
        .expect_err("tofu fmt -check must refuse unformatted HCL")
        .to_string();
    assert!(err.contains("main.tf"), "{err}");
    println!("{}", tools.python(&["hcl", "terraform"])?);
    Ok(())
}

#[test]
fn skaffold_yaml_matches_skaffolds_schema_and_builds_every_binary() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let schema = std::fs::read_dir(tools.path("SHIPPING_SCHEMAS")?)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("skaffold-v4beta"))
        .ok_or_else(|| anyhow::anyhow!("no skaffold schema among the schema sources"))?;
    println!(
        "{}",
        tools.python(&["skaffold", "skaffold.yaml", &schema.to_string_lossy()])?
    );
    let err = tools
        .python(&[
            "skaffold",
            "e2e/tests/fixtures/shipping/bad-skaffold.yaml",
            &schema.to_string_lossy(),
        ])
        .expect_err("the schema must refuse a string where a boolean belongs")
        .to_string();
    assert!(err.contains("createNamespace"), "{err}");

    // Each artifact builds a binary that exists, and every service and the operator has one.
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("skaffold.yaml"))?)?;
    let mut metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    metadata.current_dir(repo()).args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--offline",
    ]);
    let metadata: serde_json::Value = serde_json::from_str(&run(metadata)?)?;
    let binaries: Vec<(String, String)> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"))
                })
                .map(|t| {
                    (
                        p["name"].as_str().unwrap_or_default().to_owned(),
                        t["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut built = Vec::new();
    for artifact in config["build"]["artifacts"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let args = &artifact["docker"]["buildArgs"];
        let package = args["PACKAGE"].as_str().unwrap_or_default().to_owned();
        let binary = args["BINARY"].as_str().unwrap_or(&package).to_owned();
        assert_eq!(
            artifact["docker"]["dockerfile"].as_str(),
            Some("Dockerfile")
        );
        assert!(
            binaries.contains(&(package.clone(), binary.clone())),
            "{package}/{binary} is not a binary of the workspace"
        );
        built.push(package);
    }
    // Every image a release's values name is one skaffold builds (skaffold names the template
    // variables after the artifact, with "/", "-", "." and ":" as "_"), and every job whose
    // image it sets is one of the jobs chart's.
    let sanitized: Vec<String> = config["build"]["artifacts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|a| a["image"].as_str())
        .map(|image| image.replace(['/', '-', '.', ':'], "_"))
        .collect();
    let jobs: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("charts/trendstream-jobs/values.yaml"),
    )?)?;
    let mut templates = 0;
    for release in config["deploy"]["helm"]["releases"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for (key, value) in release["setValueTemplates"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            let (key, value) = (
                key.as_str().unwrap_or_default(),
                value.as_str().unwrap_or_default(),
            );
            let artifact = ["IMAGE_FULLY_QUALIFIED_", "IMAGE_REPO_", "IMAGE_TAG_"]
                .iter()
                .find_map(|prefix| value.split_once(prefix).map(|(_, rest)| rest))
                .and_then(|rest| rest.strip_suffix("}}"))
                .unwrap_or_default();
            assert!(
                sanitized.iter().any(|s| s == artifact),
                "{key}: {value} names no artifact"
            );
            if let Some(job) = key.strip_prefix("jobs.").and_then(|k| k.split('.').next()) {
                assert!(
                    jobs["jobs"].get(job).is_some(),
                    "{key}: no job {job} in the jobs chart"
                );
            }
            templates += 1;
        }
    }
    assert!(templates >= 7, "{templates} image templates");
    for wanted in [
        "trendstream-operator",
        "cdc-processor",
        "session-aggregator",
        "fraud-detector",
        "revenue-calculator",
        "feature-api",
        "loadgen",
    ] {
        assert!(built.iter().any(|b| b == wanted), "no image for {wanted}");
    }
    Ok(())
}

#[test]
fn dockerfiles_pass_hadolint_and_the_checklist() -> anyhow::Result<()> {
    let tools = Tools::load()?;
    let dockerfiles: Vec<PathBuf> = std::fs::read_dir(repo())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("Dockerfile"))
        })
        .collect();
    assert!(!dockerfiles.is_empty(), "no Dockerfile at the top level");
    for file in &dockerfiles {
        let mut hadolint = tools.command("HADOLINT")?;
        hadolint
            .args(["--no-color", "--failure-threshold", "info"])
            .arg(file);
        println!("hadolint {}: {}", file.display(), run(hadolint)?);
    }
    let mut args = vec!["dockerfiles".to_owned()];
    args.extend(dockerfiles.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    println!("{}", tools.python(&args)?);

    // Both refuse a Dockerfile that breaks the rules.
    let bad = repo().join("e2e/tests/fixtures/shipping/Dockerfile.bad");
    let mut hadolint = tools.command("HADOLINT")?;
    hadolint.arg("--no-color").arg(&bad);
    let err = run(hadolint)
        .expect_err("hadolint must refuse it")
        .to_string();
    assert!(err.contains("DL3007"), "{err}");
    let err = tools
        .python(&["dockerfiles", &bad.to_string_lossy()])
        .expect_err("the checklist must refuse it")
        .to_string();
    for reason in [
        "not pinned",
        "looks like a secret",
        "copies a secret",
        "not a numeric non-root user",
    ] {
        assert!(err.contains(reason), "{reason}: {err}");
    }
    Ok(())
}
