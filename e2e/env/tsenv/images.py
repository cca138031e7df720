"""Service images built here and pushed to the environment's registry.

Each image is the repository's Dockerfile at `--target local`: the host-built binary on a Debian
base made with debootstrap (the build host's release, so the binary finds the libraries it was
linked against). The tag is a digest of the image's inputs (base, Dockerfile, binary), as
skaffold's inputDigest policy: the same inputs give the same tag, and an image the registry
already has is not built again. Nothing is pulled from outside.
"""

import hashlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from . import install, paths
from .log import phase

# Image name -> the binary it runs.
IMAGES = {
    "trendstream-operator": "trendstream-operator",
    "cdc-processor": "cdc-processor",
    "pg-capture": "pg-capture",
    "session-aggregator": "session-aggregator",
    "fraud-detector": "fraud-detector",
    "revenue-calculator": "revenue-calculator",
    "feature-api": "feature-api",
    "loadgen": "loadgen",
}
# The base: the shared libraries the binaries link (libstdc++ for RocksDB, OpenSSL and zlib for
# librdkafka) and CA certificates; the build host's Debian release.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ["ca-certificates", "libssl3", "zlib1g", "libstdc++6", "libgcc-s1"]
BASE_NAME = "localhost/trendstream/debian-base"
# What a minimal Debian needs no longer once it is an image (package caches, documentation).
BASE_PRUNE = ["var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
              "usr/share/locale"]


def _mirror() -> str:
    """The Debian mirror apt uses on this machine."""
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if source.exists():
            for line in source.read_text().splitlines():
                words = line.split()
                if words[:1] == ["URIs:"] and "security" not in words[1]:
                    return words[1]
                if words[:1] == ["deb"] and "security" not in words[1]:
                    return words[1]
    return "http://deb.debian.org/debian"


def base_image() -> str:
    """The Debian base image in buildah's storage (built once per package list)."""
    key = hashlib.sha256(json.dumps([BASE_SUITE, BASE_PACKAGES, BASE_PRUNE]).encode()).hexdigest()[:12]
    name = f"{BASE_NAME}:{key}"
    if install.buildah("images", "-q", "--filter", f"reference={name}").strip():
        return name
    with phase(f"build the Debian {BASE_SUITE} base image with debootstrap (cached afterwards)"):
        work = Path(tempfile.mkdtemp(prefix="trendstream-base-", dir=install.BUILDAH_ROOT.parent))
        try:
            rootfs = work / "rootfs"
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                            BASE_SUITE, str(rootfs), _mirror()], check=True, capture_output=True)
            for sub in BASE_PRUNE:
                shutil.rmtree(rootfs / sub, ignore_errors=True)
            subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(work / "rootfs.tar"), "."],
                           check=True)
            shutil.rmtree(rootfs)
            (work / "Containerfile").write_text("FROM scratch\nADD rootfs.tar /\n")
            install.buildah("bud", "--timestamp", "0", "-t", name, "-f", str(work / "Containerfile"), str(work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return name


def _tag(base_id: str, binary: Path) -> str:
    digest = hashlib.sha256()
    digest.update(base_id.encode())
    digest.update((paths.REPO / "Dockerfile").read_bytes())
    with open(binary, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _in_registry(registry: str, repository: str, tag: str) -> bool:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def build_and_push(registry: str, binaries: Path, only: list[str] | None = None) -> dict[str, str]:
    """Builds each image from `binaries/<binary>` and pushes it to `registry`; returns the
    env-file entries IMAGE_<NAME>=<registry>/trendstream/<name>:<tag>."""
    base = base_image()
    base_id = install.buildah("images", "-q", "--no-trunc", base).strip()
    # The base itself, for smoke tests that need a shell in a container.
    base_ref = f"{registry}/trendstream/debian-base:{base.rsplit(':', 1)[1]}"
    if not _in_registry(registry, "trendstream/debian-base", base.rsplit(":", 1)[1]):
        install.buildah("push", "--tls-verify=false", base, f"docker://{base_ref}")
    refs = {"IMAGE_DEBIAN_BASE": base_ref}
    for image, binary in IMAGES.items():
        if only and image not in only:
            continue
        path = binaries / binary
        if not path.exists():
            raise RuntimeError(f"{path} is missing: build it first (cargo build --bins)")
        repository = f"trendstream/{image}"
        tag = _tag(base_id, path)
        ref = f"{registry}/{repository}:{tag}"
        if not _in_registry(registry, repository, tag):
            with phase(f"image {image}:{tag}"):
                context = Path(tempfile.mkdtemp(prefix=f"trendstream-{image}-", dir=install.BUILDAH_ROOT.parent))
                try:
                    # Without debug information: a smaller image to push and pull; the
                    # symbols stay, so backtraces still name functions.
                    subprocess.run(["objcopy", "--strip-debug", str(path), str(context / "app")], check=True)
                    install.buildah("bud", "--timestamp", "0", "--target", "local", "--layers=false",
                                    "--build-arg", f"LOCAL_BASE_IMAGE={base}", "--build-arg", f"BINARY={binary}",
                                    "-f", str(paths.REPO / "Dockerfile"), "-t", ref, str(context))
                    install.buildah("push", "--tls-verify=false", ref, f"docker://{ref}")
                    # The registry has it now; buildah's copy would only fill the disk.
                    install.buildah("rmi", ref)
                finally:
                    shutil.rmtree(context, ignore_errors=True)
        refs[f"IMAGE_{image.upper().replace('-', '_')}"] = ref
    return refs
