"""Installs what the environment and the build need, once, caching under ~/.cache/trendstream.

Debian packages come from apt; Kafka's jars from Maven Central through mvn; the GCS emulator from
PyPI into a virtualenv; etcd, the Kubernetes control plane and kwok are built from their Go
modules (wrapper modules under e2e/env/go). Each cached artefact lives in a directory named by a
hash of the file that pins it, so a changed pin builds anew and an unchanged one is reused.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from . import paths
from .log import phase, say

# Debian packages: what the Rust build needs (rdkafka's bundled librdkafka is built with cmake)
# and the servers the environment runs.
BUILD_PACKAGES = ["cmake", "g++", "pkg-config", "zlib1g-dev", "libcurl4-openssl-dev", "libssl-dev", "libclang-dev",
                  "make", "openssl"]
COMPONENT_PACKAGES = {
    "redis": ["redis-server"],
    "postgres": ["postgresql"],
    "prometheus": ["prometheus"],
    "kafka": ["maven", "default-jre-headless"],
    "gcs": ["python3-venv"],
    # The real node: Debian's runc and CNI plugins, iptables for kube-proxy, buildah for images
    # and debootstrap for their Debian base, a static libc for the pause binary.
    "node": ["runc", "containernetworking-plugins", "iptables", "conntrack", "buildah", "debootstrap",
             "libc6-dev", "gcc"],
}
# Debian packages the tests and benchmarks run: a headless browser and its WebDriver for the
# dashboard test, wrk and redis-benchmark (redis-tools) for the feature-api benchmark.
TEST_PACKAGES = ["chromium", "chromium-driver", "wrk", "redis-tools", "python3-venv"]


def _missing_packages(packages: list[str]) -> list[str]:
    missing = []
    for package in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                capture_output=True, text=True)
        if "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def _tool_present(package: str) -> bool:
    """Tools the machine may have from outside Debian (Java, Maven, Python venv)."""
    if package == "maven":
        return shutil.which("mvn") is not None
    if package == "default-jre-headless":
        return shutil.which("java") is not None
    if package == "python3-venv":
        return subprocess.run(["python3", "-c", "import venv, ensurepip"],
                              capture_output=True).returncode == 0
    return False


def apt_packages(packages: list[str]) -> None:
    missing = [p for p in _missing_packages(packages) if not _tool_present(p)]
    if not missing:
        return
    with phase(f"apt-get install {' '.join(missing)}"):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                       check=True, env=env, stdout=subprocess.DEVNULL)


def _pin_hash(*files: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def _cached(name: str, *pins: Path) -> tuple[Path, bool]:
    """The cache directory for `name` at these pins, and whether a build there completed."""
    target = paths.CACHE / f"{name}-{_pin_hash(*pins)}"
    return target, (target / ".complete").exists()


def _mark_complete(target: Path) -> None:
    (target / ".complete").write_text("")


def kafka() -> Path:
    """Kafka's jars (broker and runtime dependencies), resolved by Maven. Returns the libs dir."""
    pom = paths.ENV_DIR / "kafka" / "pom.xml"
    target, done = _cached("kafka", pom)
    libs = target / "libs"
    if not done:
        with phase("resolve Apache Kafka from Maven Central"):
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                            "-DincludeScope=runtime", f"-DoutputDirectory={libs}"], check=True)
            _mark_complete(target)
    return libs


def _virtualenv(name: str, requirements: Path) -> Path:
    """A virtualenv with the PyPI packages pinned in `requirements`. Returns its bin dir."""
    target, done = _cached(name, requirements)
    if not done:
        with phase(f"install PyPI packages of {requirements.name} into a virtualenv"):
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["python3", "-m", "venv", str(target)], check=True)
            subprocess.run([str(target / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            "-r", str(requirements)], check=True)
            _mark_complete(target)
    return target / "bin"


def python_tools() -> Path:
    """A virtualenv with the PyPI tools the environment runs (the GCS emulator)."""
    return _virtualenv("venv", paths.ENV_DIR / "requirements.txt")


def api_test_tools() -> Path:
    """A virtualenv with the PyPI tools the API tests run (schemathesis), kept apart from the
    environment's so their pins cannot conflict."""
    return _virtualenv("venv-api-tests", paths.ENV_DIR / "requirements-api-tests.txt")


# Go wrapper modules and the commands each one builds.
GO_TOOLS = {
    "etcd": ["go.etcd.io/etcd/server/v3"],
    "k8s": ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes/cmd/kubectl"],
    "kwok": ["sigs.k8s.io/kwok/cmd/kwok"],
    "helm": ["helm.sh/helm/v3/cmd/helm"],
    "kubeconform": ["github.com/yannh/kubeconform/cmd/kubeconform"],
    # The real node: kubelet and kube-proxy of the control plane's release, containerd with its
    # runc shim, and the local OCI registry images are pushed to.
    "node": ["k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"],
    "containerd": ["github.com/containerd/containerd/v2/cmd/containerd",
                   "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
                   "github.com/containerd/containerd/v2/cmd/ctr"],
    "registry": ["github.com/distribution/distribution/v3/cmd/registry"],
}
# Build settings beyond the defaults: containerd is built static and without the snapshotters
# that need C libraries (btrfs, devmapper, zfs); the node uses overlayfs or native.
GO_BUILD_FLAGS = {
    "containerd": (["-tags=no_btrfs no_devmapper no_zfs"], {"CGO_ENABLED": "0"}),
}


def go_tools(module: str) -> Path:
    """Builds the commands of one wrapper module under e2e/env/go. Returns the bin dir."""
    source = paths.ENV_DIR / "go" / module
    target, done = _cached(f"go-{module}", source / "go.mod", source / "go.sum")
    if not done:
        if shutil.which("go") is None:
            raise RuntimeError("the Go toolchain is needed to build the Kubernetes test control plane; "
                               "install Go 1.26 or newer")
        with phase(f"build {module} from its Go module (cached afterwards)"):
            bin_dir = target / "bin"
            bin_dir.mkdir(parents=True, exist_ok=True)
            flags, env = GO_BUILD_FLAGS.get(module, ([], {}))
            subprocess.run(["nice", "-n", "10", "go", "build", "-trimpath", "-ldflags=-s -w", *flags,
                            "-o", f"{bin_dir}/"] + GO_TOOLS[module], cwd=source, check=True,
                           env=dict(os.environ, **env))
            if module == "etcd":
                # etcd's main package is its server module's root, go.etcd.io/etcd/server/v3,
                # which `go build` names "server".
                (bin_dir / "server").rename(bin_dir / "etcd")
            if module == "kwok":
                _kwok_stages(source, target / "stages.yaml")
            _mark_complete(target)
    return target / "bin"


# kwok's own stage sets: nodes initialise at once and keep a lease; pods become Ready at once,
# complete, and go away when deleted.
KWOK_STAGES = ["node/fast", "node/heartbeat-with-lease", "pod/fast"]


def _kwok_stages(source: Path, target: Path) -> None:
    """Concatenates the stage YAML that the kwok module ships into one --config file."""
    module_dir = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"], cwd=source,
                                check=True, capture_output=True, text=True).stdout.strip()
    documents = []
    for stage_set in KWOK_STAGES:
        directory = Path(module_dir) / "kustomize" / "stage" / stage_set
        kustomization = (directory / "kustomization.yaml").read_text()
        for line in kustomization.splitlines():
            if line.startswith("- "):
                documents.append((directory / line[2:].strip()).read_text())
    target.write_text("---\n".join(documents))


def kwok_stages() -> Path:
    return go_tools("kwok").parent / "stages.yaml"


def _module_dir(module: str, cwd: Path | None = None) -> Path:
    """The source of `module` ("path@version", or a dependency of the module in `cwd`) in Go's
    module cache, downloaded when missing."""
    if cwd is not None:
        # `go list -m` names the directory only once the module is downloaded.
        subprocess.run(["go", "mod", "download", module], cwd=cwd, check=True)
        out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", module], cwd=cwd, check=True,
                             capture_output=True, text=True).stdout.strip()
        if not out:
            raise RuntimeError(f"{module} has no directory in the module cache after download")
        return Path(out)
    info = json.loads(subprocess.run(["go", "mod", "download", "-json", module], check=True,
                                     capture_output=True, text=True).stdout)
    if "Error" in info:
        raise RuntimeError(info["Error"])
    return Path(info["Dir"])


# OpenTofu for `tofu fmt -check` on terraform/ (the same HCL formatter as Terraform's). Terraform
# itself cannot be built from the module proxy: its go.mod replaces nested modules of its own
# repository with local directories, which module zips leave out. OpenTofu's module is whole; it
# is built in its own directory so that its go.mod's replace directive (its HCL fork) holds.
OPENTOFU = "github.com/opentofu/opentofu@v1.12.6"


def _opentofu_dir() -> Path:
    return paths.CACHE / f"opentofu-{hashlib.sha256(OPENTOFU.encode()).hexdigest()[:12]}"


def opentofu() -> Path:
    """Returns the tofu binary."""
    target = _opentofu_dir()
    if not (target / ".complete").exists():
        with phase(f"build {OPENTOFU} from its Go module (cached afterwards)"):
            shutil.rmtree(target, ignore_errors=True)
            (target / "bin").mkdir(parents=True)
            subprocess.run(["nice", "-n", "10", "go", "build", "-trimpath", "-ldflags=-s -w",
                            "-o", str(target / "bin" / "tofu"), "./cmd/tofu"],
                           cwd=_module_dir(OPENTOFU), check=True)
            _mark_complete(target)
    return target / "bin" / "tofu"


# Schemas the shipping tests validate against, each from the Go module that ships it:
# (module, or a dependency of a wrapper module under go/; file in it; name in the cache).
SCHEMA_SOURCES = [
    # The API the test environment serves, in the release it runs.
    ("k8s.io/kubernetes", "k8s", "api/openapi-spec/swagger.json", "kubernetes-swagger.json"),
    # kubeconform's own CRD-to-JSON-schema conversion.
    ("github.com/yannh/kubeconform", "kubeconform", "scripts/openapi2jsonschema.py", "openapi2jsonschema.py"),
    ("github.com/argoproj/argo-cd/v3@v3.5.7", None, "manifests/crds/application-crd.yaml", "argocd-application-crd.yaml"),
    ("github.com/argoproj/argo-cd/v3@v3.5.7", None, "manifests/crds/appproject-crd.yaml", "argocd-appproject-crd.yaml"),
    ("github.com/prometheus-operator/prometheus-operator@v0.85.0", None,
     "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml", "prometheusrule-crd.yaml"),
    # skaffold.yaml's schema: the newest one skaffold ships.
    ("github.com/GoogleContainerTools/skaffold/v2@v2.16.1", None, "docs-v2/content/en/schemas/v4beta13.json",
     "skaffold-v4beta13.json"),
]


def _schema_sources_dir() -> Path:
    pins = repr(SCHEMA_SOURCES).encode() + b"".join(
        (paths.ENV_DIR / "go" / wrapper / "go.mod").read_bytes() for _, wrapper, _, _ in SCHEMA_SOURCES if wrapper)
    return paths.CACHE / f"schema-sources-{hashlib.sha256(pins).hexdigest()[:12]}"


def schema_sources() -> Path:
    """A directory with the files of SCHEMA_SOURCES."""
    target = _schema_sources_dir()
    if not (target / ".complete").exists():
        with phase("fetch the shipping tests' schemas from their Go modules"):
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for module, wrapper, file, name in SCHEMA_SOURCES:
                source = _module_dir(module, paths.ENV_DIR / "go" / wrapper if wrapper else None)
                shutil.copyfile(source / file, target / name)
            _mark_complete(target)
    return target


def shipping_tools(build: bool = True) -> dict[str, str]:
    """What the shipping tests (e2e/tests/shipping.rs) run, as env-file entries: Helm, kubeconform,
    OpenTofu, checkov and the Python checks' virtualenv (hadolint, python-hcl2, jsonschema), and
    the schema sources. Without `build`, only when all of them are installed already: `up` (and so
    `make demo`) does not wait for these builds, `install` (and so `make test`) does."""
    tools = {
        "HELM": lambda: go_tools("helm") / "helm",
        "KUBECONFORM": lambda: go_tools("kubeconform") / "kubeconform",
        "TOFU": opentofu,
        "CHECKOV": lambda: _virtualenv("venv-checkov", paths.ENV_DIR / "requirements-checkov.txt") / "checkov",
        "SHIPPING_PYTHON": lambda: _virtualenv("venv-shipping", paths.ENV_DIR / "requirements-shipping.txt") / "python",
        "HADOLINT": lambda: _virtualenv("venv-shipping", paths.ENV_DIR / "requirements-shipping.txt") / "hadolint",
        "SHIPPING_SCHEMAS": schema_sources,
    }
    if not build and not _shipping_tools_installed():
        return {}
    return {key: str(locate()) for key, locate in tools.items()}


def _shipping_tools_installed() -> bool:
    go = paths.ENV_DIR / "go"
    done = [
        _cached("go-helm", go / "helm" / "go.mod", go / "helm" / "go.sum")[1],
        _cached("go-kubeconform", go / "kubeconform" / "go.mod", go / "kubeconform" / "go.sum")[1],
        _cached("venv-checkov", paths.ENV_DIR / "requirements-checkov.txt")[1],
        _cached("venv-shipping", paths.ENV_DIR / "requirements-shipping.txt")[1],
        (_opentofu_dir() / ".complete").exists(),
        (_schema_sources_dir() / ".complete").exists(),
    ]
    return all(done)


def go_module_file(wrapper: str, module: str, file: str) -> Path:
    """A file of `module`, a dependency of the wrapper module e2e/env/go/<wrapper>."""
    return _module_dir(module, paths.ENV_DIR / "go" / wrapper) / file


# buildah's storage: under the cache, so base layers survive between runs; vfs, which works on
# any filesystem, as the machine's notes prescribe.
BUILDAH_ROOT = paths.CACHE / "containers"


def buildah(*args: str) -> str:
    """Runs buildah with this environment's storage; returns its stdout, raising with its stderr."""
    argv = ["buildah", "--root", str(BUILDAH_ROOT / "storage"), "--runroot", str(BUILDAH_ROOT / "run"),
            "--storage-driver", "vfs", *args]
    result = subprocess.run(argv, capture_output=True, text=True,
                            env=dict(os.environ, BUILDAH_ISOLATION="chroot"))
    if result.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args[:2])} failed:\n{result.stderr[-4000:]}")
    return result.stdout
