"""`up`, `down` and `install`: the commands behind e2e/env/up, e2e/env/down and e2e/env/install."""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from . import components, images, install, kubernetes, node, paths, procs
from .log import fail, phase, say

# In start order; each takes the shared context (the node's address, what the control plane and
# the registry tell the node) and returns its env-file entries and a readiness wait.
STARTERS = {
    "kafka": components.start_kafka,
    "redis": components.start_redis,
    "postgres": components.start_postgres,
    "gcs": components.start_gcs,
    "prometheus": components.start_prometheus,
    "registry": components.start_registry,
    "k8s": kubernetes.start,
    "node": lambda ctx: node.start(ctx["k8s"], ctx.get("registry")),
    "kwok": kubernetes.start_kwok,
}
ALL = list(STARTERS)
# kwok's fake node is for scale benchmarks (`e2e/env/up k8s kafka kwok`): where the real node
# runs, pods belong on it.
DEFAULT = [c for c in ALL if c != "kwok"]
NEEDS = {"node": ["k8s", "registry"], "kwok": ["k8s"]}


def _install(selected: list[str], shipping: bool = True) -> None:
    packages = list(install.BUILD_PACKAGES) + install.TEST_PACKAGES
    for name in selected:
        packages += install.COMPONENT_PACKAGES.get(name, [])
    install.apt_packages(packages)
    if "kafka" in selected:
        install.kafka()
    if "gcs" in selected:
        install.python_tools()
    install.api_test_tools()
    if shipping:
        install.shipping_tools()
    if "k8s" in selected:
        for module in ("etcd", "k8s"):
            install.go_tools(module)
    if "kwok" in selected:
        install.go_tools("kwok")
    if "registry" in selected:
        install.go_tools("registry")
    if "node" in selected:
        for module in ("containerd", "node"):
            install.go_tools(module)


def _read_env() -> dict[str, str]:
    values = {}
    for line in paths.ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def build_images(profile: str, only: list[str]) -> None:
    """Builds the service images from the binaries of a cargo profile, pushes them to the
    environment's registry and adds their references to the env file."""
    if not paths.ENV_FILE.exists():
        fail("the environment is not up (no env file); run e2e/env/up first")
    values = _read_env()
    # REGISTRY from the process environment: another cluster's registry (docs/testing.md).
    registry = os.environ.get("REGISTRY") or values.get("REGISTRY")
    if not registry:
        fail("no registry: run e2e/env/up with the registry component, or set REGISTRY")
    install.apt_packages(install.COMPONENT_PACKAGES["node"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or paths.CACHE / "cargo-target")
    with phase(f"images from the {profile} binaries in {target}"):
        values.update(images.build_and_push(registry, target / profile, only))
    _write_env(values)
    for key, value in sorted(values.items()):
        if key.startswith("IMAGE_"):
            say(f"  {key}={value}")


def _write_env(values: dict[str, str]) -> None:
    lines = ["# Written by e2e/env/up: addresses of the running test components.",
             "# Shell: set -a; . ./.e2e-env/env; set +a"]
    lines += [f"{key}={value}" for key, value in sorted(values.items())]
    tmp = paths.ENV_FILE.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(paths.ENV_FILE)


def up(selected: list[str]) -> None:
    running = [e.name for e in procs.load_started() if procs.is_ours(e)]
    if running:
        fail(f"the environment is already up ({', '.join(running)}); run e2e/env/down first")
    start = time.monotonic()
    with phase("install (cached after the first run)"):
        _install(selected, shipping=False)
    shutil.rmtree(paths.STATE, ignore_errors=True)
    paths.LOGS.mkdir(parents=True)
    values: dict[str, str] = {"TRENDSTREAM_ENV_DIR": str(paths.STATE),
                              "SCHEMATHESIS": str(install.api_test_tools() / "schemathesis")}
    values.update(install.shipping_tools(build=False))
    ctx: dict = {}
    try:
        if "node" in selected:
            # First: the other components listen on the node's address too.
            with phase("create the node's bridge"):
                values.update(node.create_bridge())
            ctx.update(node_ip=node.NODE_IP, pod_cidr=node.POD_CIDR)
        waits = []
        with phase("start components"):
            for name in selected:
                env, wait = STARTERS[name](ctx)
                values.update(env)
                waits.append((name, wait))
        for name, wait in waits:
            with phase(f"wait for {name}"):
                wait()
    except BaseException as err:
        say(f"start-up failed: {err}")
        say("stopping what was started")
        _down()
        raise SystemExit(1) from None
    _write_env(values)
    say(f"environment up in {time.monotonic() - start:.1f}s; env file: {paths.ENV_FILE}")
    for key, value in sorted(values.items()):
        say(f"  {key}={value}")


def _down() -> list[str]:
    node.stop_pods()
    left = procs.stop_all()
    components.cleanup_postgres()
    node.cleanup()
    return left


def down() -> None:
    started = procs.load_started()
    if not started:
        node.cleanup()
        say("nothing to stop")
        return
    with phase(f"stop {', '.join(e.name for e in reversed(started))}"):
        left = _down()
    if left:
        fail(f"still running after SIGKILL: {', '.join(left)}")
    paths.ENV_FILE.unlink(missing_ok=True)


def status() -> None:
    try:
        for entry in procs.load_started():
            state = "running" if procs.is_ours(entry) else "gone"
            print(f"{entry.name:26} pid {entry.pid:7} {state}", flush=True)
    except BrokenPipeError:  # the reader (e.g. `grep -q`) has all it wanted
        sys.stdout = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="e2e/env", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("up", "install"):
        p = sub.add_parser(command)
        p.add_argument("components", nargs="*", metavar="COMPONENT",
                       help=f"any of {', '.join(ALL)} (default: all but kwok)")
    spawn = sub.add_parser("spawn", help="start a long-running command that `down` will stop")
    spawn.add_argument("name")
    spawn.add_argument("argv", nargs=argparse.REMAINDER)
    build = sub.add_parser("images", help="build the service images and push them to the registry")
    build.add_argument("--profile", default="release", help="the cargo profile whose binaries go in")
    build.add_argument("names", nargs="*", metavar="IMAGE", help=f"any of {', '.join(images.IMAGES)}")
    sub.add_parser("down")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    unknown = set(getattr(args, "components", [])) - set(ALL)
    if unknown:
        parser.error(f"unknown component(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    chosen = set(getattr(args, "components", [])) or set(DEFAULT)
    for name in list(chosen):
        chosen.update(NEEDS.get(name, []))
    selected = [c for c in ALL if c in chosen]
    if args.command == "up":
        up(selected)
    elif args.command == "install":
        with phase("install"):
            _install(selected)
    elif args.command == "spawn":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            parser.error("spawn needs a command after the name")
        entry = procs.spawn(args.name, argv)
        say(f"{args.name} started, pid {entry.pid}, log {entry.log}")
    elif args.command == "images":
        unknown_images = set(args.names) - set(images.IMAGES)
        if unknown_images:
            parser.error(f"unknown image(s) {', '.join(sorted(unknown_images))}")
        build_images(args.profile, args.names)
    elif args.command == "down":
        down()
    else:
        status()


if __name__ == "__main__":
    main(sys.argv[1:])
