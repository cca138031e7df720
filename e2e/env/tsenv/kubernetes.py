"""A real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler on 127.0.0.1 (the API server on the node's bridge address when the real node runs,
see node.py), and kwok, a separate component that plays the kubelet of one fake node, so that
Pods of Deployments and StatefulSets become Running and Ready without containers (benchmarks).

Authentication is by client certificates from a throw-away CA; the admin certificate is in group
system:masters. The kubeconfig embeds every certificate, so kubectl and kube-rs read it as is.
"""

import base64
import ssl
import subprocess
from pathlib import Path

from . import install, paths, procs
from . import pki as pki_tools
from .components import http_ok

NODE_NAME = "kwok-node-0"
SERVICE_CIDR = "10.96.0.0/16"


def _make_pki(pki: Path, node_ip: str | None) -> None:
    pki_tools.make_ca(pki)
    node_san = f"IP:{node_ip}," if node_ip else ""
    pki_tools.issue(pki, "apiserver", "/CN=kube-apiserver",
           f"IP:127.0.0.1,{node_san}IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
           "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")
    pki_tools.issue(pki, "admin", "/O=system:masters/CN=trendstream-admin")
    if node_ip:
        from .node import NODE_NAME
        # The kubelet's client identity (the Node authorizer's form), its serving certificate, and
        # the API server's client certificate for logs, exec and port-forward through the kubelet.
        pki_tools.issue(pki, "node", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        pki_tools.issue(pki, "kubelet-serving", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
               f"IP:{node_ip},DNS:{NODE_NAME}")
        pki_tools.issue(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    pki_tools.openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    pki_tools.openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(pki: Path, server: str, target: Path, user: str = "admin") -> None:
    target.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
  - name: trendstream-test
    cluster:
      server: {server}
      certificate-authority-data: {_b64(pki / 'ca.crt')}
users:
  - name: trendstream-admin
    user:
      client-certificate-data: {_b64(pki / f'{user}.crt')}
      client-key-data: {_b64(pki / f'{user}.key')}
contexts:
  - name: trendstream-test
    context:
      cluster: trendstream-test
      user: trendstream-admin
      namespace: default
current-context: trendstream-test
""")


NODE_MANIFEST = f"""\
apiVersion: v1
kind: Node
metadata:
  name: {NODE_NAME}
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: {NODE_NAME}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {{cpu: "64", memory: 256Gi, pods: "250", ephemeral-storage: 1Ti}}
  capacity: {{cpu: "64", memory: 256Gi, pods: "250", ephemeral-storage: 1Ti}}
"""

# Static volumes for StatefulSet volumeClaimTemplates: there is no storage provisioner without
# a kubelet, so the default StorageClass binds claims to pre-created PersistentVolumes.
STORAGE_CLASS = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
"""
VOLUME_COUNT = 64


def _volumes() -> str:
    docs = []
    for i in range(VOLUME_COUNT):
        docs.append(f"""\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: kwok-pv-{i:03d}
spec:
  capacity: {{storage: 100Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  hostPath: {{path: /tmp/kwok-pv-{i:03d}}}
""")
    return "---\n".join(docs)


def start(ctx: dict):
    """The control plane. With the real node (ctx["node_ip"]) the API server listens on the
    node's address, advertises it (the `kubernetes` Service's endpoint, which pods reach through
    kube-proxy) and reaches the kubelet with a client certificate. Puts into ctx["k8s"] what the
    node and kwok need."""
    node_ip = ctx.get("node_ip")
    bins = {m: install.go_tools(m) for m in ("etcd", "k8s")}
    home = paths.STATE / "k8s"
    pki = home / "pki"
    _make_pki(pki, node_ip)
    etcd_port, etcd_peer = procs.free_port(), procs.free_port()
    api_port, cm_port, sched_port = (procs.free_port() for _ in range(3))
    api_host = node_ip or "127.0.0.1"
    api_url = f"https://{api_host}:{api_port}"
    kubeconfig = home / "kubeconfig"
    _write_kubeconfig(pki, api_url, kubeconfig)
    kubectl = str(bins["k8s"] / "kubectl")

    etcd = procs.spawn("etcd", [
        str(bins["etcd"] / "etcd"), "--name", "test", "--data-dir", str(home / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-cluster", f"test=http://127.0.0.1:{etcd_peer}",
        "--listen-metrics-urls", f"http://127.0.0.1:{procs.free_port()}",
        "--unsafe-no-fsync", "--log-level", "warn",
    ])

    tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def kubectl_run(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), *args], input=stdin,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    ctx["k8s"] = {"pki": pki, "kubeconfig": kubeconfig, "kubectl": kubectl_run,
                  "write_kubeconfig": lambda target, user: _write_kubeconfig(pki, api_url, target, user)}
    if node_ip:
        endpoint = [f"--bind-address={node_ip}", f"--advertise-address={node_ip}",
                    f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                    f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                    f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                    "--kubelet-preferred-address-types=InternalIP"]
    else:
        # The `kubernetes` Service's endpoints would point at 127.0.0.1, which the Endpoints API
        # rejects; without a node nothing connects through that Service.
        endpoint = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                    "--endpoint-reconciler-type=none"]

    def wait():
        procs.wait_until(etcd, "etcd healthy", lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), 60)
        api = procs.spawn("kube-apiserver", [
            str(bins["k8s"] / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}", *endpoint, f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--v=1",
        ])
        procs.wait_until(api, "/readyz ok", lambda: http_ok(f"{api_url}/readyz", context=tls), 120)
        # Client rate limits well above the defaults (20 QPS), as on a production control plane:
        # hundreds of StatefulSets at once would otherwise queue behind them.
        common = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                  f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
                  "--bind-address=127.0.0.1", "--kube-api-qps=300", "--kube-api-burst=600"]
        cm = procs.spawn("kube-controller-manager", [
            str(bins["k8s"] / "kube-controller-manager"), *common, f"--secure-port={cm_port}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true", "--controllers=*",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--v=1",
        ])
        scheduler = procs.spawn("kube-scheduler", [
            str(bins["k8s"] / "kube-scheduler"), *common, f"--secure-port={sched_port}", "--v=1",
        ])
        for entry, port in ((cm, cm_port), (scheduler, sched_port)):
            procs.wait_until(entry, "/healthz ok", lambda p=port: http_ok(
                f"https://127.0.0.1:{p}/healthz", context=ssl._create_unverified_context()), 60)
        # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
        procs.wait_until(cm, "default ServiceAccount", lambda: bool(kubectl_run(
            "get", "serviceaccount", "default", "-n", "default", "-o", "name").strip()), 60)

    env = {"KUBECONFIG": str(kubeconfig), "KUBECTL": kubectl, "KUBE_APISERVER_URL": api_url}
    return env, wait


def start_kwok(ctx: dict):
    """kwok with one fake node, for scale benchmarks; after the control plane (ctx["k8s"])."""
    k8s = ctx["k8s"]
    kwok_bin = install.go_tools("kwok") / "kwok"
    kwok_port = procs.free_port()

    def wait():
        kwok = procs.spawn("kwok", [
            str(kwok_bin), f"--kubeconfig={k8s['kubeconfig']}", f"--config={install.kwok_stages()}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1", "--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok_port}",
        ])
        k8s["kubectl"]("apply", "-f", "-", stdin=NODE_MANIFEST)
        if not ctx.get("node_ip"):
            k8s["kubectl"]("apply", "-f", "-", stdin=STORAGE_CLASS + "---\n" + _volumes())
        procs.wait_until(kwok, f"node {NODE_NAME} Ready", lambda: "True" == k8s["kubectl"](
            "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        ).strip(), 60)

    return {"KWOK_NODE": NODE_NAME}, wait
