//! Reconciler tests against a mocked API server (in the style of kube-rs' `controller-rs`
//! fixtures): a `tower_test` mock service stands in for the cluster, and an `ApiServerVerifier`
//! awaits every request the reconciler is expected to send, in order, checks its method, path,
//! query and body, and answers it as the API server would. Kafka is a `KafkaInspector::Fixed`.

use super::*;
use futures::channel::oneshot;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use tokio::time::timeout;
use tower_test::mock::{self, Handle, SendResponse};

type ApiServerHandle = Handle<Request<Body>, Response<Body>>;

/// How long the verifier waits for each expected request, and the test for the reconciler.
const STEP: Duration = Duration::from_secs(5);

const NS: &str = "shop";
const UID: &str = "7f0c1d2e-0000-4000-8000-000000000001";
const SELECTOR: &str =
    "app.kubernetes.io/instance=fraud,app.kubernetes.io/managed-by=trendstream-operator";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

fn job_path(name: &str) -> String {
    format!("/apis/trendstream.io/v1alpha1/namespaces/{NS}/streamjobs/{name}")
}

fn statefulset_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
}

fn deployment_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
}

fn hpa_path(name: &str) -> String {
    format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/{name}")
}

// --- Fixtures -------------------------------------------------------------------------------

const FRAUD: &str = r#"
apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata:
  name: fraud
  namespace: shop
  uid: 7f0c1d2e-0000-4000-8000-000000000001
  generation: 3
  resourceVersion: "100"
  finalizers: [trendstream.io/cleanup]
spec:
  processor: fraud-detector
  kafka: { bootstrapServers: "kafka:9092", partitions: 12 }
  parallelism: { partitionsPerReplica: 2 }
  autoscaling: { minReplicas: 2, maxReplicas: 12 }
  redis: { url: "redis://redis:6379" }
"#;

/// The fraud-detector job: 12 partitions, 2 per replica (6 replicas), autoscaled 2..12.
fn fraud() -> StreamJob {
    let job: StreamJob = serde_yaml::from_str(FRAUD).expect("test job parses");
    assert_eq!(job.metadata.uid.as_deref(), Some(UID));
    job
}

/// The status a running fraud job with 6 ready replicas and a lag of 42 has.
fn running_status() -> Value {
    let condition = |type_: &str, status: &str| {
        json!({
            "type": type_,
            "status": status,
            "reason": "AllReplicasReady",
            "message": "6/6 ready",
            "observedGeneration": 3,
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        })
    };
    json!({
        "phase": "Running",
        "conditions": [
            condition("Ready", "True"),
            condition("Progressing", "False"),
            condition("Degraded", "False"),
        ],
        "observedGeneration": 3,
        "replicas": 6,
        "readyReplicas": 6,
        "replicasSummary": "6/6 (12p)",
        "partitions": 12,
        "selector": SELECTOR,
        "consumerLag": 42,
    })
}

fn with_status(job: StreamJob, status: Value) -> StreamJob {
    let mut value = serde_json::to_value(job).unwrap();
    value["status"] = status;
    serde_json::from_value(value).expect("status parses")
}

fn kafka(lag: Option<i64>) -> KafkaInspector {
    KafkaInspector::Fixed {
        partitions: BTreeMap::new(),
        lag,
    }
}

/// The operator's watch caches, which the tests fill as the watches would.
struct Cache {
    statefulsets: Writer<StatefulSet>,
    autoscalers: Writer<HorizontalPodAutoscaler>,
    /// Kept so the Deployment cache stays open.
    _deployments: Writer<Deployment>,
}

/// A writer whose store has had its first (empty) list.
fn listed<K>() -> (Store<K>, Writer<K>)
where
    K: Resource<DynamicType = ()> + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (store, writer)
}

impl Cache {
    fn new() -> (Caches, Self) {
        let (statefulsets, statefulset_writer) = listed();
        let (deployments, deployment_writer) = listed();
        let (autoscalers, autoscaler_writer) = listed();
        let caches = Caches {
            statefulsets,
            deployments,
            autoscalers,
        };
        let cache = Self {
            statefulsets: statefulset_writer,
            autoscalers: autoscaler_writer,
            _deployments: deployment_writer,
        };
        (caches, cache)
    }

    /// The StatefulSet `name` as the watch last saw it: `object`, or deleted.
    fn statefulset(&mut self, name: &str, object: Option<Value>) {
        let event = match object {
            Some(object) => watcher::Event::Apply(serde_json::from_value(object).unwrap()),
            None => {
                let mut gone = StatefulSet::default();
                gone.metadata.name = Some(name.into());
                gone.metadata.namespace = Some(NS.into());
                watcher::Event::Delete(gone)
            }
        };
        self.statefulsets.apply_watcher_event(&event);
    }

    /// The job `name` has an HPA.
    fn autoscaler(&mut self, name: &str) {
        let mut hpa = HorizontalPodAutoscaler::default();
        hpa.metadata.name = Some(name.into());
        hpa.metadata.namespace = Some(NS.into());
        self.autoscalers
            .apply_watcher_event(&watcher::Event::Apply(hpa));
    }
}

/// A Context whose client talks to the returned mock API server, and whose watch caches are
/// the returned Cache.
fn context(kafka: KafkaInspector) -> (Arc<Context>, ApiServerHandle, Cache) {
    let (mock_service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock_service, "default");
    let (caches, cache) = Cache::new();
    let ctx = Context::new(
        client,
        Defaults::default(),
        kafka,
        Reporter {
            controller: "trendstream-operator".into(),
            instance: None,
        },
        Arc::new(Metrics::default()),
        caches,
    );
    (Arc::new(ctx), handle, cache)
}

/// A StatefulSet as the API server returns it: `spec.replicas`, and a status that has caught up
/// (`ready` of them ready, all updated, the latest generation observed).
fn statefulset(name: &str, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": NS, "generation": 7 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/instance": name } },
            "serviceName": format!("{name}-headless"),
            "template": {},
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "observedGeneration": 7,
        },
    })
}

fn deployment(name: &str, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": NS, "generation": 2 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/instance": name } },
            "template": {},
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "observedGeneration": 2,
        },
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "reason": reason,
        "message": message,
        "code": code,
    })
}

fn not_found(what: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        status(404, "NotFound", &format!("{what} not found")),
    )
}

// --- The mocked API server ------------------------------------------------------------------

/// One request the reconciler sent.
#[derive(Debug)]
struct Call {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
}

/// Decodes `application/x-www-form-urlencoded` (how kube encodes query parameters).
fn decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("percent-encoded byte"));
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).expect("UTF-8 query")
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn respond(send: SendResponse<Response<Body>>, (code, body): (StatusCode, Value)) {
    let response = Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(response);
}

/// What every server-side apply of a child must be: an apply patch by the operator's field
/// manager, forced, of the object named by the path, in the namespace, owned by the job.
fn check_apply(call: &Call) {
    let path = call.path.as_str();
    assert_eq!(call.method, Method::PATCH, "{path}");
    assert_eq!(call.content_type, "application/apply-patch+yaml", "{path}");
    assert_eq!(
        call.query.get("fieldManager").map(String::as_str),
        Some("trendstream-operator"),
        "{path}"
    );
    assert_eq!(
        call.query.get("force").map(String::as_str),
        Some("true"),
        "{path}"
    );
    let name = path.rsplit('/').next().unwrap();
    assert_eq!(call.body["metadata"]["name"], name, "{path}");
    assert_eq!(call.body["metadata"]["namespace"], NS, "{path}");
    let owner = &call.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["uid"], &owner["controller"]),
        (&json!("StreamJob"), &json!(UID), &json!(true)),
        "{path} is owned by the job"
    );
}

/// Which answer the HPA request gets, or whether none is expected.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hpa {
    /// Server-side applied.
    Applied,
    /// Deleted; the HPA existed.
    Deleted,
    /// Deleted; the cache still had it, the API server has none (404, which the reconciler
    /// tolerates).
    AlreadyGone,
    /// None is asked for and none may exist: no request.
    Absent,
}

/// The bodies of the children the reconciler applied.
struct Applied {
    service_account: Value,
    config_map: Value,
    service: Value,
    headless: Option<Value>,
    workload: Value,
    disruption_budget: Value,
    network_policy: Value,
    hpa: Option<Value>,
}

struct ApiServerVerifier(ApiServerHandle);

impl ApiServerVerifier {
    /// Waits for the next request (`what` names the one expected, for the failure message);
    /// returns it, unanswered, with the means to answer it.
    async fn next_call(&mut self, what: &str) -> (Call, SendResponse<Response<Body>>) {
        let (request, send) = timeout(STEP, self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("expected {what}, but no request came"))
            .unwrap_or_else(|| panic!("expected {what}, but the client went away"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let call = Call {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parse_query(parts.uri.query()),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("request body is JSON")
            },
        };
        (call, send)
    }

    /// Waits for the next request, which must be `method path`, and answers it with `reply`.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        reply: impl FnOnce(&Call) -> (StatusCode, Value),
    ) -> Call {
        let (call, send) = self.next_call(&format!("{method} {path}")).await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request, query {:?}, body {}",
            call.query,
            call.body
        );
        let answer = reply(&call);
        respond(send, answer);
        call
    }

    /// A server-side apply of the object at `path`, answered with the object.
    async fn apply(&mut self, path: &str) -> Value {
        self.apply_answering(path, |applied| applied.clone()).await
    }

    /// A server-side apply of the object at `path`, answered with `answer(applied object)`;
    /// returns the applied object.
    async fn apply_answering(&mut self, path: &str, answer: impl FnOnce(&Value) -> Value) -> Value {
        let call = self
            .expect(Method::PATCH, path, |call| {
                (StatusCode::OK, answer(&call.body))
            })
            .await;
        check_apply(&call);
        call.body
    }

    /// The children, as `apply_children` applies them: the ServiceAccount, then what the pods
    /// mount or resolve, at once (the ConfigMap and, `stateful` only, the headless Service),
    /// then the workload, whose apply is answered with `workload` (the StatefulSet or Deployment as the
    /// API server has it after the apply, status included: the reconciler observes the
    /// workload in that answer); then the rest at once, in any order: the Service, the
    /// PodDisruptionBudget, the NetworkPolicy and the HPA's apply or deletion.
    async fn apply_children(
        &mut self,
        name: &str,
        stateful: bool,
        hpa: Hpa,
        workload: Value,
    ) -> Applied {
        let core = format!("/api/v1/namespaces/{NS}");
        let service_account_path = format!("{core}/serviceaccounts/{name}");
        let config_map_path = format!("{core}/configmaps/{name}");
        let headless_path = format!("{core}/services/{name}-headless");
        let service_account = self.apply(&service_account_path).await;
        let mut bodies = self.apply_pod_dependencies(name, stateful).await;
        let workload = if stateful {
            self.apply_answering(&statefulset_path(name), |_| workload)
                .await
        } else {
            self.apply_answering(&deployment_path(name), |_| workload)
                .await
        };

        let service_path = format!("{core}/services/{name}");
        let disruption_budget_path =
            format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{name}");
        let hpa_method = if hpa == Hpa::Applied {
            Method::PATCH
        } else {
            Method::DELETE
        };
        let network_policy_path =
            format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{name}");
        let mut expected = BTreeSet::from([
            (Method::PATCH.to_string(), service_path.clone()),
            (Method::PATCH.to_string(), disruption_budget_path.clone()),
            (Method::PATCH.to_string(), network_policy_path.clone()),
        ]);
        if hpa != Hpa::Absent {
            expected.insert((hpa_method.to_string(), hpa_path(name)));
        }
        bodies.extend(self.answer_at_once(expected, hpa).await);
        let mut take = |path: &str| {
            bodies
                .remove(path)
                .unwrap_or_else(|| panic!("{path} was applied"))
        };
        Applied {
            service_account,
            config_map: take(&config_map_path),
            service: take(&service_path),
            headless: stateful.then(|| take(&headless_path)),
            workload,
            disruption_budget: take(&disruption_budget_path),
            network_policy: take(&network_policy_path),
            hpa: (hpa == Hpa::Applied).then(|| take(&hpa_path(name))),
        }
    }

    /// The ConfigMap and (`stateful`) the headless Service, applied at once before the
    /// workload; returns them by path.
    async fn apply_pod_dependencies(
        &mut self,
        name: &str,
        stateful: bool,
    ) -> BTreeMap<String, Value> {
        let core = format!("/api/v1/namespaces/{NS}");
        let mut expected = BTreeSet::from([(
            Method::PATCH.to_string(),
            format!("{core}/configmaps/{name}"),
        )]);
        if stateful {
            expected.insert((
                Method::PATCH.to_string(),
                format!("{core}/services/{name}-headless"),
            ));
        }
        self.answer_at_once(expected, Hpa::Absent).await
    }

    /// Calls for each of `expected` (method, path), all in flight at once: none is answered
    /// before the last has come. Applies are answered with their object, the HPA's deletion as
    /// `hpa` says; returns the applied objects by path.
    async fn answer_at_once(
        &mut self,
        expected: BTreeSet<(String, String)>,
        hpa: Hpa,
    ) -> BTreeMap<String, Value> {
        let mut calls = Vec::with_capacity(expected.len());
        for _ in 0..expected.len() {
            calls.push(self.next_call(&format!("one of {expected:?}")).await);
        }
        let received: Vec<(String, String)> = calls
            .iter()
            .map(|(call, _)| (call.method.to_string(), call.path.clone()))
            .collect();
        assert_eq!(
            received.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "the children applied at once, received {received:?}"
        );
        assert_eq!(received.len(), expected.len(), "each once: {received:?}");

        let mut bodies = BTreeMap::new();
        for (call, send) in calls {
            if call.method == Method::DELETE {
                respond(
                    send,
                    if hpa == Hpa::Deleted {
                        (StatusCode::OK, status(200, "", ""))
                    } else {
                        not_found("horizontalpodautoscalers.autoscaling")
                    },
                );
            } else {
                check_apply(&call);
                respond(send, (StatusCode::OK, call.body.clone()));
                bodies.insert(call.path, call.body);
            }
        }
        bodies
    }

    /// The merge patch of the job's status subresource; returns the new status.
    async fn status_patch(&mut self, job: &StreamJob) -> Value {
        let mut echoed = serde_json::to_value(job).unwrap();
        let path = format!("{}/status", job_path(&job.name_any()));
        let call = self
            .expect(Method::PATCH, &path, |call| {
                echoed["status"] = call.body["status"].clone();
                (StatusCode::OK, echoed)
            })
            .await;
        assert_eq!(call.content_type, "application/merge-patch+json");
        call.body["status"].clone()
    }

    /// An Event (events.k8s.io/v1) about the job; returns it.
    async fn event(&mut self, job: &StreamJob) -> Value {
        let call = self
            .expect(Method::POST, EVENTS, |call| {
                (StatusCode::CREATED, call.body.clone())
            })
            .await;
        let event = call.body;
        assert_eq!(event["apiVersion"], "events.k8s.io/v1");
        assert_eq!(event["reportingController"], "trendstream-operator");
        assert_eq!(event["regarding"]["kind"], "StreamJob");
        assert_eq!(event["regarding"]["name"], job.name_any());
        assert_eq!(event["regarding"]["namespace"], NS);
        assert_eq!(event["regarding"]["uid"], UID);
        event
    }

    /// A JSON patch of the job (what kube's finalizer helper sends); returns the operations.
    async fn job_json_patch(&mut self, job: &StreamJob) -> Value {
        let echoed = serde_json::to_value(job).unwrap();
        let call = self
            .expect(Method::PATCH, &job_path(&job.name_any()), |_| {
                (StatusCode::OK, echoed)
            })
            .await;
        assert_eq!(call.content_type, "application/json-patch+json");
        call.body
    }

    /// After the test's script: no further request may come until the reconciler is done.
    /// Returns the handle, for a test that reconciles again with the same Context.
    /// A new fraud job's children applied, observed with `replicas` ready, reported Running.
    async fn fraud_applied_and_running(&mut self, job: &StreamJob, hpa: Hpa, replicas: i32) {
        let applied = self
            .apply_children("fraud", true, hpa, statefulset("fraud", replicas, replicas))
            .await;
        assert_eq!(applied.workload["spec"]["replicas"], replicas);
        assert_eq!(self.status_patch(job).await["phase"], "Running");
        assert_eq!(self.event(job).await["reason"], "Running");
    }

    async fn expect_no_more_requests(
        mut self,
        reconciled: oneshot::Receiver<()>,
    ) -> ApiServerHandle {
        tokio::select! {
            biased;
            request = self.0.next_request() => {
                if let Some((request, _)) = request {
                    panic!("unexpected request {} {}", request.method(), request.uri());
                }
            }
            _ = reconciled => {}
        }
        self.0
    }
}

/// Runs one reconciliation of `job` while `scenario` plays the API server.
async fn reconcile_with<F, Fut>(
    job: StreamJob,
    ctx: Arc<Context>,
    handle: ApiServerHandle,
    scenario: F,
) -> Result<Action, Error>
where
    F: FnOnce(ApiServerVerifier) -> Fut,
    Fut: Future<Output = ApiServerVerifier> + Send + 'static,
{
    reconcile_keeping_server(job, ctx, handle, scenario).await.0
}

/// Like `reconcile_with`, and hands the mock API server back for another reconciliation with
/// the same Context (which remembers what it applied).
async fn reconcile_keeping_server<F, Fut>(
    job: StreamJob,
    ctx: Arc<Context>,
    handle: ApiServerHandle,
    scenario: F,
) -> (Result<Action, Error>, ApiServerHandle)
where
    F: FnOnce(ApiServerVerifier) -> Fut,
    Fut: Future<Output = ApiServerVerifier> + Send + 'static,
{
    let (done, reconciled) = oneshot::channel();
    let script = scenario(ApiServerVerifier(handle));
    let server =
        tokio::spawn(async move { script.await.expect_no_more_requests(reconciled).await });
    let result = timeout(STEP * 4, reconcile(Arc::new(job), ctx)).await;
    let _ = done.send(());
    let handle = match timeout(STEP * 2, server).await {
        Err(_) => panic!("the API server script timed out"),
        Ok(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Ok(Err(err)) => panic!("the API server script failed: {err}"),
        Ok(Ok(handle)) => handle,
    };
    (result.expect("reconcile timed out"), handle)
}

/// The fingerprint the Context remembers having applied for `shop/<name>`, and when.
fn last_applied(ctx: &Context, name: &str) -> Option<(String, Instant)> {
    ctx.applied
        .lock()
        .unwrap()
        .get(&format!("{NS}/{name}"))
        .cloned()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

// --- Scenarios ------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_job_gets_the_finalizer_and_is_applied_in_the_same_pass() {
    let mut job = fraud();
    job.metadata.finalizers = None;
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let added = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let mut echoed = added.clone();
        echoed.metadata.finalizers = Some(vec![FINALIZER.into()]);
        let patch = server.job_json_patch(&echoed).await;
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": ["trendstream.io/cleanup"] },
            ])
        );
        // The same pass goes on to apply the children (no wait for the patch's watch event).
        server.fraud_applied_and_running(&echoed, Hpa::Applied, 6).await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_job_with_other_finalizers_gets_ours_appended() {
    let mut job = fraud();
    job.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let echoed = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let patch = server.job_json_patch(&echoed).await;
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": ["example.com/other"] },
                { "op": "add", "path": "/metadata/finalizers/-", "value": "trendstream.io/cleanup" },
            ])
        );
        server.fraud_applied_and_running(&echoed, Hpa::Applied, 6).await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_job_is_applied_observed_and_reported_running() {
    let job = fraud();
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let expected = job.clone();
    cache.statefulset("fraud", None);
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        // The current replica count: no StatefulSet yet.
        // The StatefulSet as the apply leaves it, which is what the workload runs now.
        let applied = server
            .apply_children("fraud", true, Hpa::Applied, statefulset("fraud", 6, 6))
            .await;

        assert_eq!(applied.service_account["kind"], "ServiceAccount");
        assert_eq!(applied.config_map["kind"], "ConfigMap");
        assert_eq!(applied.service["kind"], "Service");
        let headless = applied.headless.expect("a headless Service");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let sts = &applied.workload;
        assert_eq!(sts["kind"], "StatefulSet");
        assert_eq!(sts["spec"]["replicas"], 6, "12 partitions, 2 per replica");
        assert_eq!(sts["spec"]["serviceName"], "fraud-headless");
        assert_eq!(applied.disruption_budget["kind"], "PodDisruptionBudget");
        let hpa = applied.hpa.expect("an HPA");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["maxReplicas"], 12);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "fraud");

        // The status comes from the answer to the StatefulSet's apply.
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["replicas"], 6);
        assert_eq!(status["readyReplicas"], 6);
        assert_eq!(status["replicasSummary"], "6/6 (12p)");
        assert_eq!(status["partitions"], 12);
        assert_eq!(status["consumerLag"], 42);
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["selector"], SELECTOR);
        let ready = condition(&status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("True"), &json!("AllReplicasReady"))
        );

        let event = server.event(&job).await;
        assert_eq!(event["reason"], "Running");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["action"], "Reconcile");
        assert_eq!(event["note"], "Running: 6/6 ready");
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn the_autoscalers_replica_count_is_kept_and_a_rollout_in_progress_is_deploying() {
    let job = fraud();
    let (ctx, handle, mut cache) = context(kafka(Some(7)));
    let expected = job.clone();
    cache.statefulset("fraud", Some(statefulset("fraud", 9, 9)));
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        // The HPA scaled the StatefulSet to 9.
        // The apply changed the spec (generation 8), which the StatefulSet controller has not
        // seen yet.
        let mut sts = statefulset("fraud", 9, 9);
        sts["metadata"]["generation"] = json!(8);
        let applied = server
            .apply_children("fraud", true, Hpa::Applied, sts)
            .await;
        assert_eq!(applied.workload["spec"]["replicas"], 9, "the HPA's choice");
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Deploying");
        assert_eq!(status["consumerLag"], 7);
        assert_eq!(condition(&status, "Progressing")["status"], "True");
        assert_eq!(server.event(&job).await["reason"], "Deploying");
        server
    })
    .await;
    // Converging: looked at again soon.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let job = with_status(fraud(), running_status());
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    // A fresh Context has applied nothing yet: the first reconciliation applies.
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    let (result, handle) =
        reconcile_keeping_server(job.clone(), ctx.clone(), handle, |mut server| async move {
            server
                .apply_children("fraud", true, Hpa::Applied, statefulset("fraud", 6, 6))
                .await;
            // No status patch and no Event: nothing changed.
            server
        })
        .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    // The next one, with the same desired state, only looks at the workload.
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    let result = reconcile_with(job, ctx, handle, |server| async move {
        // No applies, no status patch and no Event.
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

async fn suspend(hpa: Hpa) {
    let mut job = with_status(fraud(), running_status());
    job.spec.suspend = true;
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let expected = job.clone();
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    // The running job's HPA, as the watch saw it.
    cache.autoscaler("fraud");
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        let applied = server
            .apply_children("fraud", true, hpa, statefulset("fraud", 0, 0))
            .await;
        assert_eq!(applied.workload["spec"]["replicas"], 0, "scaled to zero");
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Suspended");
        assert_eq!(status["replicas"], 0);
        assert_eq!(status["readyReplicas"], 0);
        // Lag is still read from the broker: what the stopped job builds up stays visible.
        assert_eq!(status["consumerLag"], 42);
        let ready = condition(&status, "Ready");
        assert_eq!(
            (&ready["status"], &ready["reason"]),
            (&json!("False"), &json!("Suspended"))
        );
        let event = server.event(&job).await;
        assert_eq!(event["reason"], "Suspended");
        assert_eq!(
            event["note"],
            "Running -> Suspended: suspended: scaled to zero, state kept"
        );
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn suspend_scales_to_zero_and_deletes_the_hpa() {
    suspend(Hpa::Deleted).await;
}

#[tokio::test]
async fn suspend_tolerates_an_hpa_that_is_already_gone() {
    suspend(Hpa::AlreadyGone).await;
}

#[tokio::test]
async fn a_suspended_job_whose_status_is_current_is_left_alone() {
    let mut status = running_status();
    status["phase"] = json!("Suspended");
    status["replicas"] = json!(0);
    status["readyReplicas"] = json!(0);
    status["replicasSummary"] = json!("0/0 (12p)");
    for (type_, value) in [
        ("Ready", "False"),
        ("Progressing", "False"),
        ("Degraded", "False"),
    ] {
        let condition = status["conditions"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["type"] == type_)
            .unwrap();
        condition["status"] = json!(value);
        condition["reason"] = json!("Suspended");
        condition["message"] = json!("suspended: scaled to zero, state kept");
    }
    let mut job = with_status(fraud(), status);
    job.spec.suspend = true;
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    cache.statefulset("fraud", Some(statefulset("fraud", 0, 0)));
    let (result, handle) =
        reconcile_keeping_server(job.clone(), ctx.clone(), handle, |mut server| async move {
            server
                .apply_children("fraud", true, Hpa::Absent, statefulset("fraud", 0, 0))
                .await;
            server
        })
        .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    // Applied moments ago and unchanged: not even the applies this time.
    cache.statefulset("fraud", Some(statefulset("fraud", 0, 0)));
    let result = reconcile_with(job, ctx, handle, |server| async move { server }).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

/// Reconciles `job` (a new one: no status, no StatefulSet yet) with `ctx`: it is applied, the
/// apply answers with `replicas` of `replicas` ready, and it is reported Running. Returns the
/// mock API server for the next reconciliation.
async fn reconcile_new_job(
    ctx: &Arc<Context>,
    handle: ApiServerHandle,
    job: StreamJob,
    hpa: Hpa,
    replicas: i32,
) -> ApiServerHandle {
    assert!(job.status.is_none());
    let expected = job.clone();
    let (result, handle) =
        reconcile_keeping_server(job, ctx.clone(), handle, |mut server| async move {
            server
                .fraud_applied_and_running(&expected, hpa, replicas)
                .await;
            server
        })
        .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert!(
        last_applied(ctx, "fraud").is_some(),
        "the Context remembers what it applied"
    );
    handle
}

#[tokio::test]
async fn an_unchanged_desired_state_is_not_applied_again_and_the_workload_is_observed() {
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let handle = reconcile_new_job(&ctx, handle, fraud(), Hpa::Applied, 6).await;
    let first = last_applied(&ctx, "fraud").unwrap();
    let job = with_status(fraud(), running_status());
    let expected = job.clone();
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 4)));
    let result = reconcile_with(job, ctx.clone(), handle, |mut server| async move {
        let job = expected;
        // Two of the six replicas have stopped being ready since.
        // No applies: the status comes from the GET.
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Degraded");
        assert_eq!(status["replicas"], 6);
        assert_eq!(status["readyReplicas"], 4);
        assert_eq!(status["consumerLag"], 42);
        let event = server.event(&job).await;
        assert_eq!(
            (&event["reason"], &event["type"]),
            (&json!("Degraded"), &json!("Warning"))
        );
        assert_eq!(event["note"], "Running -> Degraded: 4/6 ready");
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
    // Nothing was applied, so nothing new is remembered: the re-apply interval still counts
    // from the last apply (were it renewed on every look, it would never run out).
    assert_eq!(last_applied(&ctx, "fraud"), Some(first));
}

#[tokio::test]
async fn an_unchanged_desired_state_is_applied_again_after_the_reapply_interval() {
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let handle = reconcile_new_job(&ctx, handle, fraud(), Hpa::Applied, 6).await;
    let Some(long_ago) = Instant::now().checked_sub(REAPPLY) else {
        eprintln!("skipped: the monotonic clock is younger than REAPPLY");
        return;
    };
    let fingerprint = {
        let mut applied = ctx.applied.lock().unwrap();
        let (fingerprint, at) = applied.get_mut(&format!("{NS}/fraud")).unwrap();
        *at = long_ago;
        fingerprint.clone()
    };
    let job = with_status(fraud(), running_status());
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    let result = reconcile_with(job, ctx.clone(), handle, |mut server| async move {
        // Everything again, in case a child was changed by hand; the status is current.
        server
            .apply_children("fraud", true, Hpa::Applied, statefulset("fraud", 6, 6))
            .await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let (again, at) = last_applied(&ctx, "fraud").unwrap();
    assert_eq!(again, fingerprint, "the same desired state");
    assert!(at.elapsed() < REAPPLY, "remembered as applied now");
}

#[tokio::test]
async fn a_suspend_is_applied_at_once() {
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let handle = reconcile_new_job(&ctx, handle, fraud(), Hpa::Applied, 6).await;
    let (before, _) = last_applied(&ctx, "fraud").unwrap();
    let mut job = with_status(fraud(), running_status());
    job.spec.suspend = true;
    let expected = job.clone();
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    let result = reconcile_with(job, ctx.clone(), handle, |mut server| async move {
        let job = expected;
        let applied = server
            .apply_children("fraud", true, Hpa::Deleted, statefulset("fraud", 0, 0))
            .await;
        assert_eq!(applied.workload["spec"]["replicas"], 0, "scaled to zero");
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Suspended");
        assert_eq!(status["replicas"], 0);
        assert_eq!(server.event(&job).await["reason"], "Suspended");
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let (after, _) = last_applied(&ctx, "fraud").unwrap();
    assert_ne!(after, before, "the new desired state is remembered");
}

#[tokio::test]
async fn a_new_partitions_per_replica_is_applied_at_once() {
    // Without an autoscaler the replica count follows partitionsPerReplica: 12 / 2 = 6.
    let mut job = fraud();
    job.spec.autoscaling = None;
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let handle = reconcile_new_job(&ctx, handle, job.clone(), Hpa::Absent, 6).await;
    let mut job = with_status(job, running_status());
    job.spec.parallelism.partitions_per_replica = Some(3);
    let expected = job.clone();
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    let result = reconcile_with(job, ctx.clone(), handle, |mut server| async move {
        let job = expected;
        let applied = server
            .apply_children("fraud", true, Hpa::Absent, statefulset("fraud", 4, 4))
            .await;
        assert_eq!(
            applied.workload["spec"]["replicas"], 4,
            "12 partitions, 3 per replica"
        );
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["replicas"], 4);
        assert_eq!(status["readyReplicas"], 4);
        assert_eq!(status["replicasSummary"], "4/4 (12p)");
        // Still Running: no Event.
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_workload_deleted_by_hand_is_applied_again_at_once() {
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let handle = reconcile_new_job(&ctx, handle, fraud(), Hpa::Applied, 6).await;
    let before = last_applied(&ctx, "fraud").unwrap();
    let job = with_status(fraud(), running_status());
    let expected = job.clone();
    cache.statefulset("fraud", None);
    let result = reconcile_with(job, ctx.clone(), handle, |mut server| async move {
        let job = expected;
        // Created anew: no pod yet.
        let mut created = statefulset("fraud", 6, 0);
        created["metadata"]["generation"] = json!(1);
        created["status"] = json!({ "replicas": 0 });
        let applied = server
            .apply_children("fraud", true, Hpa::Applied, created)
            .await;
        assert_eq!(applied.workload["spec"]["replicas"], 6);
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Scaling");
        assert_eq!(status["readyReplicas"], 0);
        let event = server.event(&job).await;
        assert_eq!(
            event["note"],
            "Running -> Scaling: scaling from 0 to 6 replicas"
        );
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
    let after = last_applied(&ctx, "fraud").unwrap();
    assert_eq!(after.0, before.0, "the desired state did not change");
    assert!(after.1 > before.1, "yet it was applied again");
}

#[tokio::test]
async fn a_failed_apply_is_not_remembered() {
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let handle = reconcile_new_job(&ctx, handle, fraud(), Hpa::Applied, 6).await;
    let job = with_status(fraud(), running_status());
    // The StatefulSet was deleted by hand, and the apply that follows fails half-way.
    cache.statefulset("fraud", None);
    let (result, handle) =
        reconcile_keeping_server(job.clone(), ctx.clone(), handle, |mut server| async move {
            let core = format!("/api/v1/namespaces/{NS}");
            server.apply(&format!("{core}/serviceaccounts/fraud")).await;
            server.apply_pod_dependencies("fraud", true).await;
            let call = server
                .expect(Method::PATCH, &statefulset_path("fraud"), |_| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        status(500, "InternalError", "etcdserver: request timed out"),
                    )
                })
                .await;
            check_apply(&call);
            // The reconciler stops there: none of the other children is applied.
            server
        })
        .await;
    assert_eq!(result.unwrap_err().category(), "api");
    assert_eq!(last_applied(&ctx, "fraud"), None, "forgotten");
    // The StatefulSet is back (say, restored by hand) with the same desired state: a
    // remembered fingerprint would skip the applies, a forgotten one does not.
    cache.statefulset("fraud", Some(statefulset("fraud", 6, 6)));
    let result = reconcile_with(job, ctx.clone(), handle, |mut server| async move {
        server
            .apply_children("fraud", true, Hpa::Applied, statefulset("fraud", 6, 6))
            .await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert!(last_applied(&ctx, "fraud").is_some());
}

#[tokio::test]
async fn feature_api_runs_as_a_deployment_without_an_hpa() {
    let job: StreamJob = serde_yaml::from_str(
        r#"
apiVersion: trendstream.io/v1alpha1
kind: StreamJob
metadata:
  name: features
  namespace: shop
  uid: 7f0c1d2e-0000-4000-8000-000000000001
  generation: 1
  finalizers: [trendstream.io/cleanup]
spec:
  processor: feature-api
  redis: { url: "redis://redis:6379" }
  parallelism: { replicas: 3 }
"#,
    )
    .unwrap();
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let expected = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        let applied = server
            .apply_children("features", false, Hpa::Absent, deployment("features", 3, 3))
            .await;
        assert_eq!(applied.workload["kind"], "Deployment");
        assert_eq!(applied.workload["spec"]["replicas"], 3);
        // Ingress to the API from the job's own namespace only, by default.
        assert_eq!(applied.network_policy["kind"], "NetworkPolicy");
        assert_eq!(
            applied.network_policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
                ["matchExpressions"][0]["values"],
            serde_json::json!([NS])
        );
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["replicas"], 3);
        assert!(status.get("consumerLag").is_none(), "no lag for a server");
        assert_eq!(server.event(&job).await["reason"], "Running");
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

fn deleting(on_delete: &str, finalizers: &[&str]) -> StreamJob {
    let mut value = serde_json::to_value(fraud()).unwrap();
    value["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    value["metadata"]["finalizers"] = json!(finalizers);
    value["spec"]["checkpoint"] = json!({ "onDelete": on_delete });
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn deletion_with_on_delete_delete_removes_the_state_volumes() {
    let job = deleting("Delete", &[FINALIZER]);
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let expected = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        let call = server
            .expect(
                Method::DELETE,
                &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims"),
                |_| {
                    (
                        StatusCode::OK,
                        json!({
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaimList",
                            "metadata": {},
                            "items": [],
                        }),
                    )
                },
            )
            .await;
        let selector = call.query.get("labelSelector").expect("a label selector");
        let labels: BTreeSet<&str> = selector.split(',').collect();
        assert!(
            labels.contains("app.kubernetes.io/instance=fraud"),
            "only this job's claims: {selector}"
        );
        let event = server.event(&job).await;
        assert_eq!(event["reason"], "Deleted");
        assert_eq!(event["action"], "Cleanup");
        assert_eq!(
            event["note"],
            "state volumes deleted; children removed with the job"
        );
        let patch = server.job_json_patch(&job).await;
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/metadata/finalizers/0", "value": "trendstream.io/cleanup" },
                { "op": "remove", "path": "/metadata/finalizers/0" },
            ])
        );
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn deletion_with_on_delete_retain_keeps_the_state_volumes() {
    let job = deleting("Retain", &["example.com/other", FINALIZER]);
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let expected = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        let event = server.event(&job).await;
        assert_eq!(event["reason"], "Deleted");
        assert_eq!(
            event["note"],
            "state volumes and checkpoints retained; children removed with the job"
        );
        let patch = server.job_json_patch(&job).await;
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/metadata/finalizers/1", "value": "trendstream.io/cleanup" },
                { "op": "remove", "path": "/metadata/finalizers/1" },
            ])
        );
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_failed_volume_deletion_keeps_the_finalizer() {
    let job = deleting("Delete", &[FINALIZER]);
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        server
            .expect(
                Method::DELETE,
                &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims"),
                |_| {
                    (
                        StatusCode::FORBIDDEN,
                        status(403, "Forbidden", "persistentvolumeclaims is forbidden"),
                    )
                },
            )
            .await;
        // No Event and, above all, no finalizer removal.
        server
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.category(), "api");
    assert!(matches!(
        &err,
        Error::Finalizer(inner)
            if matches!(inner.as_ref(), kube::runtime::finalizer::Error::CleanupFailed(_))
    ));
}

#[tokio::test]
async fn an_api_error_fails_the_reconciliation_with_category_api() {
    let job = fraud();
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    cache.statefulset("fraud", None);
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        server
            .expect(
                Method::PATCH,
                &format!("/api/v1/namespaces/{NS}/serviceaccounts/fraud"),
                |_| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        status(500, "InternalError", "etcdserver: request timed out"),
                    )
                },
            )
            .await;
        // The reconciler stops at the first failure.
        server
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.category(), "api");
    assert!(matches!(
        &err,
        Error::Finalizer(inner)
            if matches!(
                inner.as_ref(),
                kube::runtime::finalizer::Error::ApplyFailed(Error::Kube(kube::Error::Api(status)))
                    if status.code == 500
            )
    ));
}

#[tokio::test]
async fn unknown_partitions_block_the_job_without_touching_its_children() {
    let mut job = fraud();
    job.spec.kafka.partitions = None;
    // The fixed inspector knows no topics: discovery fails.
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let expected = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let job = expected;
        let status = server.status_patch(&job).await;
        assert_eq!(status["phase"], "Failed");
        let degraded = condition(&status, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "PartitionsUnknown");
        let event = server.event(&job).await;
        assert_eq!(
            (&event["reason"], &event["type"]),
            (&json!("Failed"), &json!("Warning"))
        );
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_refused_event_does_not_fail_the_reconciliation() {
    let mut job = fraud();
    job.spec.kafka.partitions = None;
    let (ctx, handle, _cache) = context(kafka(None));
    let expected = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        server.status_patch(&expected).await;
        server
            .expect(Method::POST, EVENTS, |_| {
                (
                    StatusCode::FORBIDDEN,
                    status(403, "Forbidden", "events.events.k8s.io is forbidden"),
                )
            })
            .await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn error_policy_backs_off_exponentially_per_job_and_a_success_resets_it() {
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let job = Arc::new(fraud());
    let mut other = fraud();
    other.metadata.name = Some("orders".into());
    let other = Arc::new(other);
    let error = Error::Build(BuildError::MissingMetadata("uid"));

    let delays: Vec<Action> = (0..5)
        .map(|_| error_policy(job.clone(), &error, ctx.clone()))
        .collect();
    let expected: Vec<Action> = [1, 2, 4, 8, 16]
        .into_iter()
        .map(|s| Action::requeue(Duration::from_secs(s)))
        .collect();
    assert_eq!(delays, expected);
    // Another job has its own count.
    assert_eq!(
        error_policy(other.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );

    // A successful reconciliation resets the job's count.
    let new = (*job).clone();
    let echoed = new.clone();
    let result = reconcile_with(new, ctx.clone(), handle, |mut server| async move {
        server
            .fraud_applied_and_running(&echoed, Hpa::Applied, 6)
            .await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(
        error_policy(job, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    // ... and only that job's.
    assert_eq!(
        error_policy(other, &error, ctx),
        Action::requeue(Duration::from_secs(2))
    );
}

#[tokio::test]
async fn a_failed_reconciliation_does_not_reset_the_backoff() {
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let job = fraud();
    let error = Error::Build(BuildError::MissingMetadata("uid"));
    error_policy(Arc::new(job.clone()), &error, ctx.clone());
    error_policy(Arc::new(job.clone()), &error, ctx.clone());
    let result = reconcile_with(job.clone(), ctx.clone(), handle, |mut server| async move {
        server
            .expect(
                Method::PATCH,
                &format!("/api/v1/namespaces/{NS}/serviceaccounts/fraud"),
                |_| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        status(500, "InternalError", "etcdserver: leader changed"),
                    )
                },
            )
            .await;
        server
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(
        error_policy(Arc::new(job), &err, ctx),
        Action::requeue(Duration::from_secs(4))
    );
}

// --- Rollouts: stuck, rolled back, the stable spec ------------------------------------------

const BAD_IMAGE: &str = "registry.example/fraud-detector:does-not-exist";
const PODS: &str = "/api/v1/namespaces/shop/pods";

/// `sts` (a `statefulset()` fixture) built from job generation `spec_generation`, rolling from
/// revision `fraud-a` to `update` with `updated` pods at it and `ready` ready; `observed`
/// says whether its controller has seen its latest spec.
fn revisions(
    mut sts: Value,
    spec_generation: i64,
    update: &str,
    updated: i32,
    ready: i32,
    observed: bool,
) -> Value {
    sts["metadata"]["annotations"] =
        json!({ "trendstream.io/spec-generation": spec_generation.to_string() });
    let status = &mut sts["status"];
    status["currentRevision"] = json!("fraud-a");
    status["updateRevision"] = json!(update);
    status["updatedReplicas"] = json!(updated);
    status["readyReplicas"] = json!(ready);
    if !observed {
        status["observedGeneration"] = json!(6);
    }
    sts
}

/// The fraud job at generation 3 with `BAD_IMAGE`, `rollbackOnFailure`, whose generation 2 (the
/// image by default) was stable, and whose rollout of revision `fraud-b` has made no progress
/// since long ago.
fn stuck_job(rollback_on_failure: bool) -> StreamJob {
    let stable = serde_json::to_string(&fraud().spec).unwrap();
    let mut job = fraud();
    job.spec.image = Some(BAD_IMAGE.into());
    job.spec.rollout.rollback_on_failure = rollback_on_failure;
    let mut status = running_status();
    status["lastStableGeneration"] = json!(2);
    status["lastStableSpec"] = json!(stable);
    status["rollout"] = json!({
        "generation": 3,
        "revision": "fraud-b",
        "updatedReplicas": 1,
        "progressTime": "2025-01-01T00:00:00Z",
    });
    with_status(job, status)
}

/// A pod of revision `fraud-b` crash-looping.
fn crashing_pod() -> Value {
    json!({
        "metadata": { "name": "fraud-5", "namespace": NS },
        "status": {
            "conditions": [{ "type": "Ready", "status": "False" }],
            "containerStatuses": [{
                "name": "processor", "image": BAD_IMAGE, "imageID": "", "ready": false,
                "restartCount": 3,
                "state": { "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image" } },
            }],
        },
    })
}

impl ApiServerVerifier {
    /// The list of the job's pods at revision `fraud-b`, answered with `pods`.
    async fn pods_of_fraud_b(&mut self, pods: Vec<Value>) {
        let call = self
            .expect(Method::GET, PODS, |_| {
                (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods }),
                )
            })
            .await;
        assert_eq!(
            call.query.get("labelSelector").map(String::as_str),
            Some(format!("{SELECTOR},controller-revision-hash=fraud-b").as_str())
        );
    }
}

fn image(applied: &Applied) -> &Value {
    &applied.workload["spec"]["template"]["spec"]["containers"][0]["image"]
}

#[tokio::test]
async fn a_stuck_rollout_is_degraded_with_the_pods_reason_and_an_event() {
    let job = stuck_job(false);
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let echoed = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let stuck = revisions(statefulset("fraud", 6, 5), 3, "fraud-b", 1, 5, true);
        let applied = server
            .apply_children("fraud", true, Hpa::Applied, stuck)
            .await;
        assert_eq!(image(&applied), BAD_IMAGE, "the job's own spec");
        server.pods_of_fraud_b(vec![crashing_pod()]).await;
        let status = server.status_patch(&echoed).await;
        assert_eq!(status["phase"], "Degraded");
        let ready = condition(&status, "Ready");
        assert_eq!(ready["reason"], "RolloutStuck");
        assert_eq!(
            ready["message"],
            "rollout of revision fraud-b made no progress for 5m: 1 of 6 pods updated, 5 ready; \
             pod fraud-5: ImagePullBackOff (Back-off pulling image); 5/6 ready"
        );
        assert_eq!(condition(&status, "Degraded")["status"], "True");
        assert_eq!(status["rollback"], Value::Null, "rollbackOnFailure is off");
        assert_eq!(status["lastStableGeneration"], 2, "kept");
        let event = server.event(&echoed).await;
        assert_eq!(
            (&event["reason"], &event["type"]),
            (&json!("RolloutStuck"), &json!("Warning"))
        );
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn a_stuck_rollout_is_rolled_back_to_the_stable_spec_and_its_stuck_pods_replaced() {
    let job = stuck_job(true);
    let (ctx, handle, mut cache) = context(kafka(Some(42)));
    let echoed = job.clone();
    let first = echoed.clone();
    let written = Arc::new(Mutex::new(None));
    let keep = written.clone();
    let (result, handle) =
        reconcile_keeping_server(job, ctx.clone(), handle, |mut server| async move {
            let echoed = first;
            let stuck = revisions(statefulset("fraud", 6, 5), 3, "fraud-b", 1, 5, true);
            let applied = server
                .apply_children("fraud", true, Hpa::Applied, stuck)
                .await;
            assert_eq!(image(&applied), BAD_IMAGE);
            server.pods_of_fraud_b(vec![crashing_pod()]).await;
            // The stable spec's children, at once; the StatefulSet controller has not acted yet.
            let going_back = revisions(statefulset("fraud", 6, 5), 2, "fraud-b", 1, 5, false);
            let stable = server
                .apply_children("fraud", true, Hpa::Applied, going_back)
                .await;
            assert_eq!(
                image(&stable),
                &json!(format!(
                    "ghcr.io/trendstream/fraud-detector:{}",
                    env!("CARGO_PKG_VERSION")
                ))
            );
            assert_eq!(
                stable.workload["metadata"]["annotations"]["trendstream.io/spec-generation"],
                "2"
            );
            let status = server.status_patch(&echoed).await;
            assert_eq!(status["phase"], "Degraded");
            assert_eq!(condition(&status, "Ready")["reason"], "RolledBack");
            assert_eq!(status["rollout"], Value::Null, "merge patch clears it");
            let rollback = &status["rollback"];
            assert_eq!(
                (
                    &rollback["fromGeneration"],
                    &rollback["toGeneration"],
                    &rollback["fromRevision"]
                ),
                (&json!(3), &json!(2), &json!("fraud-b"))
            );
            assert!(
                rollback["reason"]
                    .as_str()
                    .unwrap()
                    .contains("ImagePullBackOff"),
                "{rollback}"
            );
            assert_eq!(server.event(&echoed).await["reason"], "RolledBack");
            *keep.lock().unwrap() = Some(status);
            server
        })
        .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));

    // The StatefulSet controller took the stable template up (its revision fraud-a again), one
    // pod still at fraud-b: the unready ones are deleted, nothing is applied again (the stable
    // spec stays), and the status, unchanged, is not written.
    let back = revisions(statefulset("fraud", 6, 5), 2, "fraud-a", 5, 5, true);
    cache.statefulset("fraud", Some(back));
    let status = written
        .lock()
        .unwrap()
        .take()
        .expect("the first pass wrote the status");
    let job = with_status(echoed, status);
    let ready_pod = json!({
        "metadata": { "name": "fraud-4", "namespace": NS },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] },
    });
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        server
            .pods_of_fraud_b(vec![ready_pod, crashing_pod()])
            .await;
        server
            .expect(Method::DELETE, &format!("{PODS}/fraud-5"), |_| {
                (StatusCode::OK, crashing_pod())
            })
            .await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn a_new_generation_after_a_rollback_tries_the_jobs_spec() {
    let mut job = stuck_job(true);
    let mut status = serde_json::to_value(job.status.take()).unwrap();
    status["rollout"] = Value::Null;
    status["rollback"] = json!({
        "fromGeneration": 3, "toGeneration": 2, "fromRevision": "fraud-b",
        "reason": "stuck", "time": "2025-01-01T00:00:00Z",
    });
    job = with_status(job, status);
    job.metadata.generation = Some(4);
    job.spec.image = Some("registry.example/fraud-detector:fixed".into());
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let echoed = job.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let rolling = revisions(statefulset("fraud", 6, 6), 4, "fraud-c", 0, 6, false);
        let applied = server
            .apply_children("fraud", true, Hpa::Applied, rolling)
            .await;
        assert_eq!(image(&applied), "registry.example/fraud-detector:fixed");
        let status = server.status_patch(&echoed).await;
        assert_eq!(
            status["rollback"],
            Value::Null,
            "ended by the new generation"
        );
        assert_eq!(status["phase"], "Deploying");
        assert_eq!(server.event(&echoed).await["reason"], "Deploying");
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
}

/// The status a new fraud job (generation 3) gets when its StatefulSet, built from
/// `spec_generation`, runs every replica ready.
async fn status_running_from(spec_generation: i64) -> Value {
    let job = fraud();
    let (ctx, handle, _cache) = context(kafka(Some(42)));
    let echoed = job.clone();
    let written = Arc::new(Mutex::new(Value::Null));
    let keep = written.clone();
    let result = reconcile_with(job, ctx, handle, |mut server| async move {
        let running = revisions(
            statefulset("fraud", 6, 6),
            spec_generation,
            "fraud-a",
            6,
            6,
            true,
        );
        server
            .apply_children("fraud", true, Hpa::Applied, running)
            .await;
        *keep.lock().unwrap() = server.status_patch(&echoed).await;
        server.event(&echoed).await;
        server
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let status = written.lock().unwrap().take();
    assert_eq!(status["phase"], "Running");
    status
}

#[tokio::test]
async fn running_on_its_own_generation_records_the_stable_spec() {
    let status = status_running_from(3).await;
    assert_eq!(status["lastStableGeneration"], 3);
    let spec: Value = serde_json::from_str(status["lastStableSpec"].as_str().unwrap()).unwrap();
    assert_eq!(spec, serde_json::to_value(fraud().spec).unwrap());
}

#[tokio::test]
async fn running_from_a_statefulset_of_another_generation_records_nothing() {
    // The cache may still hold the StatefulSet of the previous spec: its pods being ready says
    // nothing of this generation's.
    let status = status_running_from(2).await;
    assert_eq!(status["lastStableGeneration"], Value::Null);
    assert_eq!(status["lastStableSpec"], Value::Null);
}
