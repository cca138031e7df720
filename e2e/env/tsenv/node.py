"""A real Kubernetes node on this machine: containerd with Debian's runc, the kubelet and
kube-proxy of the control plane's release, and a CNI bridge of the node's own.

Addresses: the node never uses eth0's. It has a bridge of its own (BRIDGE, NODE_IP in POD_CIDR);
NODE_IP is the node's InternalIP, the API server's advertise address, the pods' gateway, and the
address on which Kafka, Redis, PostgreSQL and the GCS emulator also listen so that pods reach
them. Pods get a route to the node and to the Service range only (no default route), and the
bridge plugin is not a gateway, so nothing turns on IP forwarding: pod traffic ends on this host.

Host paths: everything the node writes lives under ROOT and RUN (fixed, short paths: unix socket
paths are limited to 108 bytes), plus the few the kubelet always writes (/var/log/pods,
/var/log/containers, its cgroups). `cleanup` removes all of them, the pods' shims and mounts and
the bridge, whatever state a run was left in. One node runs on a machine at a time.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import install, paths, procs
from .log import say

NODE_NAME = "trendstream-node"
BRIDGE = "ts0"
NODE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
ROOT = Path("/var/lib/trendstream-node")
RUN = Path("/run/trendstream-node")
CONTAINERD_SOCKET = RUN / "containerd" / "containerd.sock"
KUBELET_PORT = 10250
# The sandbox ("pause") image: built here from the kubelet module's own pause.c, imported into
# containerd and pinned there, since no image can be pulled from outside.
PAUSE_IMAGE = "localhost/trendstream/pause:3.10"
# Paths the kubelet writes whatever its root directory; removed by `cleanup` only if `up` made them.
KUBELET_FIXED_PATHS = [Path("/var/log/pods"), Path("/var/log/containers"),
                       Path("/var/lib/kubelet")]
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Static local volumes: no dynamic provisioner runs on this node, so the default StorageClass
# (WaitForFirstConsumer, as GKE's) binds claims to pre-created `local` PersistentVolumes, the
# pattern of the local static provisioner. Released volumes are not reused: a test that deletes
# claims uses fresh ones.
VOLUME_COUNT = 96
STATE_FILE = "node.json"


def _run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- the bridge

def _bridge_exists() -> bool:
    return _run("ip", "link", "show", BRIDGE, check=False).returncode == 0


def create_bridge() -> dict[str, str]:
    """The node's bridge and address; the first step of `up`, so components can listen on it."""
    if _node_left():
        if _node_alive():
            raise RuntimeError(f"a node is already running on this machine (bridge {BRIDGE}, {ROOT}, {RUN}); "
                               "run e2e/env/down from the checkout that started it")
        # A run that ended without `down` (its processes killed with the machine's session):
        # nothing of it serves any more, so its leftovers are ours to remove.
        say(f"removing a node an earlier run left behind (bridge {BRIDGE}, {ROOT}, {RUN}; none of its "
            "processes is alive)")
        _remove_node(ROOT / STATE_FILE)
    ROOT.mkdir(parents=True)
    RUN.mkdir(parents=True)
    made = [str(p) for p in KUBELET_FIXED_PATHS if not p.exists()]
    # Also under ROOT: a later run from another checkout can clean up what this one leaves.
    for state in (paths.STATE / STATE_FILE, ROOT / STATE_FILE):
        state.write_text(json.dumps({"made": made}))
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    return {"NODE_IP": NODE_IP, "NODE_NAME": NODE_NAME, "POD_CIDR": POD_CIDR}


# ---------------------------------------------------------------- configuration files

def _containerd_config(bins: Path) -> str:
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    cri_images = "plugins.'io.containerd.cri.v1.images'"
    return f"""\
version = 3
root = '{ROOT / "containerd"}'
state = '{RUN / "containerd" / "state"}'
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = '{CONTAINERD_SOCKET}'
[plugins.'io.containerd.server.v1.ttrpc']
  address = '{CONTAINERD_SOCKET}.ttrpc'
[plugins.'io.containerd.internal.v1.opt']
  path = '{ROOT / "opt"}'
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'

[{cri_runtime}]
  # root here lacks CAP_SYS_RESOURCE: lowering an OOM score adjustment would fail every sandbox.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  enable_criu = false
  [{cri_runtime}.containerd]
    default_runtime_name = 'runc'
    [{cri_runtime}.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [{cri_runtime}.containerd.runtimes.runc.options]
        # Debian's runc: crun refuses this machine's hybrid cgroups.
        BinaryName = '{shutil.which("runc") or "/usr/sbin/runc"}'
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '{ROOT / "cni" / "net.d"}'

[{cri_images}]
  snapshotter = 'overlayfs'
  [{cri_images}.pinned_images]
    sandbox = '{PAUSE_IMAGE}'
  [{cri_images}.registry]
    config_path = '{ROOT / "containerd" / "certs.d"}'
"""


def _cni_config() -> str:
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "trendstream",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            # Not a gateway: the plugin would turn on IP forwarding. The node's address is on the
            # bridge already; pods route to it and to the Service range, nowhere else.
            "isGateway": False,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR, "rangeStart": "10.88.1.1", "rangeEnd": "10.88.255.254",
                             "gateway": NODE_IP}]],
                "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                "dataDir": str(ROOT / "cni" / "networks"),
            },
        }],
    }, indent=1)


def _registry_hosts(registry: str) -> str:
    """containerd's hosts.toml for the local registry: plain HTTP on loopback."""
    return f"""\
server = 'http://{registry}'
[host.'http://{registry}']
  capabilities = ['pull', 'resolve']
"""


def _kubelet_config(pki: Path, healthz_port: int) -> str:
    return f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1 (hybrid), managed through cgroupfs.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}
address: {NODE_IP}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
tlsCertFile: {pki / "kubelet-serving.crt"}
tlsPrivateKeyFile: {pki / "kubelet-serving.key"}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {pki / "ca.crt"}}}
authorization:
  mode: AlwaysAllow
# A shared test machine: evict only at the very edge, never collect images.
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
maxPods: 110
podPidsLimit: 4096
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
"""


def _volumes() -> str:
    docs = [f"""\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
"""]
    for i in range(VOLUME_COUNT):
        docs.append(f"""\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: node-pv-{i:03d}
spec:
  capacity: {{storage: 100Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  local: {{path: {ROOT / "volumes" / f"pv-{i:03d}"}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {{key: kubernetes.io/hostname, operator: In, values: [{NODE_NAME}]}}
""")
    return "---\n".join(docs)


# ---------------------------------------------------------------- the pause image

def _pause_archive(bins: Path) -> Path:
    """An OCI archive of the pause image, built once from the kubelet module's pause.c."""
    target = bins.parent / "pause.oci.tar"
    if target.exists():
        return target
    source = install.go_module_file("node", "k8s.io/kubernetes", "build/pause/linux/pause.c")
    work = bins.parent / "pause-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    _run("gcc", "-Os", "-static", "-DVERSION=3.10-trendstream", "-o", str(work / "pause"), str(source))
    (work / "Containerfile").write_text("FROM scratch\nCOPY pause /pause\nUSER 65535:65535\n"
                                        "ENTRYPOINT [\"/pause\"]\n")
    install.buildah("bud", "--timestamp", "0", "-t", PAUSE_IMAGE, "-f", str(work / "Containerfile"), str(work))
    tmp = target.with_suffix(".tmp")
    install.buildah("push", PAUSE_IMAGE, f"oci-archive:{tmp}:{PAUSE_IMAGE}")
    tmp.replace(target)
    shutil.rmtree(work, ignore_errors=True)
    return target


# ---------------------------------------------------------------- start

def start(k8s: dict, registry: str | None):
    """Starts containerd, the kubelet and kube-proxy once the control plane is up. `k8s` is what
    kubernetes.start returned (PKI, kubeconfig, kubectl); `registry` the local registry's address."""
    bins = install.go_tools("node")
    ctr_bins = install.go_tools("containerd")
    home = paths.STATE / "node"
    home.mkdir(parents=True)
    for d in ("containerd", "cni/net.d", "cni/networks", "kubelet", "volumes", "opt"):
        (ROOT / d).mkdir(parents=True, exist_ok=True)
    (RUN / "containerd").mkdir(parents=True, exist_ok=True)
    (ROOT / "cni" / "net.d" / "10-trendstream.conflist").write_text(_cni_config())
    if registry:
        hosts = ROOT / "containerd" / "certs.d" / registry
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(_registry_hosts(registry))
    for i in range(VOLUME_COUNT):
        volume = ROOT / "volumes" / f"pv-{i:03d}"
        volume.mkdir()
        # Pods run as a non-root user; a local volume is not chowned to their fsGroup.
        volume.chmod(0o1777)
    config = home / "containerd.toml"
    config.write_text(_containerd_config(ctr_bins))
    # containerd finds its shim on PATH.
    env = dict(os.environ, PATH=f"{ctr_bins}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    containerd = procs.spawn("containerd", [str(ctr_bins / "containerd"), "--config", str(config)], env=env)
    pki: Path = k8s["pki"]
    kubeconfig: Path = k8s["kubeconfig"]
    healthz_port = procs.free_port()

    def ctr(*args: str) -> str:
        return _run(str(ctr_bins / "ctr"), "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io",
                    *args).stdout

    def wait():
        procs.wait_until(containerd, "socket serving", lambda: bool(ctr("version")), 60)
        ctr("images", "import", "--all-platforms", str(_pause_archive(bins)))
        node_kubeconfig = home / "kubelet.kubeconfig"
        k8s["write_kubeconfig"](node_kubeconfig, "node")
        (home / "kubelet.yaml").write_text(_kubelet_config(pki, healthz_port))
        kubelet = procs.spawn("kubelet", [
            str(bins / "kubelet"), f"--config={home / 'kubelet.yaml'}", f"--kubeconfig={node_kubeconfig}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", f"--root-dir={ROOT / 'kubelet'}",
            "--v=1",
        ], env=env)
        proxy = procs.spawn("kube-proxy", [
            str(bins / "kube-proxy"), f"--kubeconfig={kubeconfig}", "--proxy-mode=iptables",
            f"--hostname-override={NODE_NAME}", f"--cluster-cidr={POD_CIDR}",
            f"--bind-address={NODE_IP}", f"--nodeport-addresses={NODE_IP}/32",
            f"--healthz-bind-address=127.0.0.1:{procs.free_port()}",
            f"--metrics-bind-address=127.0.0.1:{procs.free_port()}",
            # No conntrack tuning: this machine's sysctls are not ours to change.
            "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0", "--v=1",
        ])
        procs.wait_until(kubelet, f"node {NODE_NAME} Ready", lambda: "True" == k8s["kubectl"](
            "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        ).strip(), 120)
        k8s["kubectl"]("apply", "-f", "-", stdin=_volumes())
        procs.wait_until(proxy, "Service rules written", lambda: "KUBE-SERVICES" in _run(
            "iptables", "-t", "nat", "-S", "PREROUTING", check=False).stdout, 60)

    return {"NODE_CONTAINERD_SOCKET": str(CONTAINERD_SOCKET), "CTR": str(ctr_bins / "ctr")}, wait


# ---------------------------------------------------------------- cleanup

def stop_pods() -> None:
    """Before the processes stop: the kubelet first (it would restart containers), then every
    container and sandbox through containerd, so that no shim or workload outlives `down`."""
    started = procs.load_started()
    for entry in reversed(started):
        if entry.name in ("kubelet", "kube-proxy"):
            procs.stop(entry)
    ctr_entry = next((e for e in started if e.name == "containerd" and procs.is_ours(e)), None)
    if ctr_entry is None:
        return
    ctr_bin = install.go_tools("containerd") / "ctr"
    base = [str(ctr_bin), "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io"]
    tasks = _run(*base, "tasks", "ls", "-q", check=False).stdout.split()
    for task in tasks:
        _run(*base, "tasks", "kill", "-a", "-s", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 20
    for task in tasks:
        while time.monotonic() < deadline and _run(*base, "tasks", "delete", task, check=False).returncode:
            time.sleep(0.2)
    for container in _run(*base, "containers", "ls", "-q", check=False).stdout.split():
        _run(*base, "containers", "delete", container, check=False)


def _our_shims() -> list[int]:
    """Shim processes serving this node's containerd (they outlive containerd by design)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(CONTAINERD_SOCKET).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _unmount_all_under(*roots: Path) -> None:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        _run("umount", "-l", point, check=False)


def _kill_pod_processes() -> None:
    """Every process still in a pod's cgroup (a backstop: the containers were stopped already)."""
    pids_root = CGROUP_ROOT / "pids" / "kubepods"
    if not pids_root.is_dir():
        return
    for procs_file in pids_root.rglob("cgroup.procs"):
        for pid in procs_file.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _remove_cgroups() -> None:
    """The kubelet's `kubepods` hierarchy in every v1 controller (children before parents)."""
    for controller in CGROUP_ROOT.iterdir():
        top = controller / "kubepods"
        if not top.is_dir():
            continue
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                reverse=True) + [top]:
            try:
                directory.rmdir()
            except OSError:
                pass


def _remove_kube_chains() -> None:
    """The KUBE-* iptables chains the kubelet and kube-proxy made (kube-proxy --cleanup leaves
    the kubelet's), and the rules that jump to them."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            rules = _run(tool, "-t", table, "-S", check=False).stdout.splitlines()
            for rule in rules:
                words = rule.split()
                if words[:1] == ["-A"] and not words[1].startswith("KUBE-") and "-j" in words \
                        and words[words.index("-j") + 1].startswith("KUBE-"):
                    _run(tool, "-t", table, "-D", *words[1:], check=False)
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            for chain in chains:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-t", table, "-X", chain, check=False)


def _node_left() -> bool:
    return _bridge_exists() or ROOT.exists() or RUN.exists()


def _node_alive() -> bool:
    """Whether any process still serves a node: its containerd answering on the socket, a kubelet
    on its root directory, or a shim of its containerd."""
    if CONTAINERD_SOCKET.exists():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(str(CONTAINERD_SOCKET))
                return True
            except OSError:
                pass
    kubelet_root = f"--root-dir={ROOT / 'kubelet'}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if kubelet_root in (entry / "cmdline").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return bool(_our_shims())


def cleanup() -> None:
    """After the processes stopped: shims, mounts, cgroups, Service rules, the bridge, host paths.
    Without a state of this checkout's, only a node nothing serves any more is removed."""
    state = paths.STATE / STATE_FILE
    if not state.exists():
        if not _node_left() or _node_alive():
            return
        state = ROOT / STATE_FILE
    _remove_node(state)


def _remove_node(state: Path) -> None:
    made = json.loads(state.read_text()).get("made", []) if state.exists() else []
    for pid in _our_shims():
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _kill_pod_processes()
    _unmount_all_under(ROOT, RUN, *map(Path, made))
    deadline = time.monotonic() + 10
    _remove_cgroups()
    while time.monotonic() < deadline and any((c / "kubepods").exists() for c in CGROUP_ROOT.iterdir()):
        time.sleep(0.5)
        _remove_cgroups()
    proxy = install.go_tools("node") / "kube-proxy"
    if proxy.exists():
        _run(str(proxy), "--cleanup", check=False)
    _remove_kube_chains()
    if _bridge_exists():
        _run("ip", "link", "delete", BRIDGE, check=False)
    for path in [ROOT, RUN, *map(Path, made)]:
        shutil.rmtree(path, ignore_errors=True)
    (paths.STATE / STATE_FILE).unlink(missing_ok=True)
    left = [str(p) for p in (ROOT, RUN) if p.exists()]
    if left:
        say(f"node cleanup: could not remove {', '.join(left)}")
