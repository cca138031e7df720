"""`up`, `down` and `install`: the commands behind e2e/env/up, e2e/env/down and e2e/env/install."""

import argparse
import shutil
import sys
import time

from . import components, install, kubernetes, paths, procs
from .log import fail, phase, say

STARTERS = {
    "kafka": components.start_kafka,
    "redis": components.start_redis,
    "postgres": components.start_postgres,
    "gcs": components.start_gcs,
    "prometheus": components.start_prometheus,
    "k8s": kubernetes.start,
}
ALL = list(STARTERS)


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
        for module in ("etcd", "k8s", "kwok"):
            install.go_tools(module)


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
    try:
        waits = []
        with phase("start components"):
            for name in selected:
                env, wait = STARTERS[name]()
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
    left = procs.stop_all()
    components.cleanup_postgres()
    return left


def down() -> None:
    started = procs.load_started()
    if not started:
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
                       help=f"any of {', '.join(ALL)} (default: all)")
    spawn = sub.add_parser("spawn", help="start a long-running command that `down` will stop")
    spawn.add_argument("name")
    spawn.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("down")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    unknown = set(getattr(args, "components", [])) - set(ALL)
    if unknown:
        parser.error(f"unknown component(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    selected = [c for c in ALL if c in getattr(args, "components", [])] or ALL
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
    elif args.command == "down":
        down()
    else:
        status()


if __name__ == "__main__":
    main(sys.argv[1:])
