"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok, which plays the kubelet of one fake node so that Pods of Deployments
and StatefulSets get scheduled and become Running and Ready without containers.

Authentication is by client certificates from a throw-away CA; the admin certificate is in group
system:masters. The kubeconfig embeds every certificate, so kubectl and kube-rs read it as is.
"""

import base64
import ssl
import subprocess
from pathlib import Path

from . import install, paths, procs
from .components import http_ok

NODE_NAME = "kwok-node-0"
SERVICE_CIDR = "10.96.0.0/16"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(pki: Path, name: str, subject: str, sans: str | None = None) -> None:
    """A key and a certificate signed by the CA in `pki`."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / f"{name}.key"),
             "-subj", subject, "-out", str(pki / f"{name}.csr"))
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
    lines.append("extendedKeyUsage=serverAuth,clientAuth")
    if sans:
        lines.append(f"subjectAltName={sans}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"),
             "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "30", "-sha256",
             "-extfile", str(ext), "-out", str(pki / f"{name}.crt"))


def _make_pki(pki: Path) -> None:
    pki.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "ca.key"),
             "-subj", "/CN=trendstream-test-ca", "-days", "30", "-out", str(pki / "ca.crt"))
    _issue(pki, "apiserver", "/CN=kube-apiserver",
           "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
           "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")
    _issue(pki, "admin", "/O=system:masters/CN=trendstream-admin")
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(pki: Path, port: int, target: Path) -> None:
    target.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
  - name: trendstream-test
    cluster:
      server: https://127.0.0.1:{port}
      certificate-authority-data: {_b64(pki / 'ca.crt')}
users:
  - name: trendstream-admin
    user:
      client-certificate-data: {_b64(pki / 'admin.crt')}
      client-key-data: {_b64(pki / 'admin.key')}
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
volumeBindingMode: Immediate
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


def start():
    bins = {m: install.go_tools(m) for m in ("etcd", "k8s", "kwok")}
    home = paths.STATE / "k8s"
    pki = home / "pki"
    _make_pki(pki)
    etcd_port, etcd_peer = procs.free_port(), procs.free_port()
    api_port, cm_port, sched_port, kwok_port = (procs.free_port() for _ in range(4))
    kubeconfig = home / "kubeconfig"
    _write_kubeconfig(pki, api_port, kubeconfig)
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

    def wait():
        procs.wait_until(etcd, "etcd healthy", lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), 60)
        api = procs.spawn("kube-apiserver", [
            str(bins["k8s"] / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            # The `kubernetes` Service's endpoints would point at 127.0.0.1, which the Endpoints
            # API rejects; nothing in the tests connects through that Service.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--v=1",
        ])
        procs.wait_until(api, "/readyz ok",
                         lambda: http_ok(f"https://127.0.0.1:{api_port}/readyz", context=tls), 120)
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
        kwok = procs.spawn("kwok", [
            str(bins["kwok"] / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={install.kwok_stages()}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1", "--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok_port}",
        ])
        for entry, port in ((cm, cm_port), (scheduler, sched_port)):
            procs.wait_until(entry, "/healthz ok", lambda p=port: http_ok(
                f"https://127.0.0.1:{p}/healthz", context=ssl._create_unverified_context()), 60)
        kubectl_run("apply", "-f", "-", stdin=NODE_MANIFEST)
        kubectl_run("apply", "-f", "-", stdin=STORAGE_CLASS + "---\n" + _volumes())
        procs.wait_until(kwok, f"node {NODE_NAME} Ready", lambda: "True" == kubectl_run(
            "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        ).strip(), 60)
        # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
        procs.wait_until(cm, "default ServiceAccount", lambda: bool(kubectl_run(
            "get", "serviceaccount", "default", "-n", "default", "-o", "name").strip()), 60)

    env = {"KUBECONFIG": str(kubeconfig), "KUBECTL": kubectl, "KWOK_NODE": NODE_NAME,
           "KUBE_APISERVER_URL": f"https://127.0.0.1:{api_port}"}
    return env, wait
