"""Starting and stopping the component processes.

Each component runs in a session (and process group) of its own, so that stopping it also stops
the children it forked (PostgreSQL backends) and nothing else. Every PID is recorded with its
kernel start time: `down` signals a recorded PID only while it still is the process `up` started,
never a recycled PID that now belongs to someone else.
"""

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .log import say


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None for a process that is gone or a
    zombie (dead, merely not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the other fields follow its closing paren.
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def start_time(pid: int) -> str | None:
    """The kernel's start time of a live `pid` (field 22 of /proc/PID/stat)."""
    fields = _stat(pid)
    return fields[19] if fields else None


def group_members(pgid: int) -> list[int]:
    """Live PIDs whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


@dataclass
class Started:
    name: str
    pid: int
    start: str
    log: str
    # The signal that asks for an orderly stop (PostgreSQL: SIGINT, its "fast" shutdown, which
    # does not wait for clients to disconnect).
    stop_signal: int = signal.SIGTERM


# Popen handles of the processes this Python process started, so they are reaped when they exit
# (a dead, unreaped child would otherwise linger as a zombie until `up` exits).
_children: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def load_started() -> list[Started]:
    if not paths.PIDS_FILE.exists():
        return []
    return [Started(**entry) for entry in json.loads(paths.PIDS_FILE.read_text())]


def _save_started(started: list[Started]) -> None:
    tmp = paths.PIDS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps([s.__dict__ for s in started], indent=1))
    tmp.replace(paths.PIDS_FILE)


def spawn(name: str, argv: list[str], *, cwd: Path | None = None, env: dict | None = None,
          user: str | None = None, stop_signal: int = signal.SIGTERM) -> Started:
    """Starts `argv` in a new session with output to logs/<name>.log and records its PID."""
    paths.LOGS.mkdir(parents=True, exist_ok=True)
    log_path = paths.LOGS / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, user=user, group=user,
        )
    _children[proc.pid] = proc
    entry = Started(name=name, pid=proc.pid, start=start_time(proc.pid) or "", log=str(log_path),
                    stop_signal=int(stop_signal))
    started = load_started()
    started.append(entry)
    _save_started(started)
    return entry


def is_ours(entry: Started) -> bool:
    _reap()
    return start_time(entry.pid) == entry.start


def log_tail(entry: Started, lines: int = 40) -> str:
    try:
        text = Path(entry.log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(entry: Started, what: str, check, timeout: float) -> None:
    """Polls `check()` until it is true; fails early, with the log tail, if the process died."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if not is_ours(entry):
            raise RuntimeError(f"{entry.name} exited while waiting for {what}; log {entry.log}:\n"
                               f"{log_tail(entry)}")
        try:
            if check():
                return
        except Exception as err:  # the check talks to a server that may not be up yet
            last_error = err
        time.sleep(0.25)
    raise RuntimeError(f"{entry.name}: {what} not reached within {timeout:.0f}s "
                       f"(last error: {last_error}); log {entry.log}:\n{log_tail(entry)}")


def tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(entry: Started, grace: float = 15.0) -> None:
    """The stop signal to the component's process group, SIGKILL after `grace` seconds."""
    if not is_ours(entry):
        # Gone already, or its PID now belongs to another process: not ours to signal.
        return
    _signal_group(entry.pid, entry.stop_signal)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_members(entry.pid):
        _reap()
        time.sleep(0.2)
    if group_members(entry.pid):
        say(f"{entry.name}: still running after {grace:.0f}s, sending SIGKILL")
        _signal_group(entry.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and group_members(entry.pid):
            _reap()
            time.sleep(0.1)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_all(grace: float = 15.0) -> list[str]:
    """Stops every recorded component, newest first; returns the names of any still running."""
    started = load_started()
    for entry in reversed(started):
        stop(entry, grace)
    _reap()
    left = [e.name for e in started if group_members(e.pid)]
    if not left:
        paths.PIDS_FILE.unlink(missing_ok=True)
    return left
