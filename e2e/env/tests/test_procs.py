"""Tests of the process bookkeeping behind e2e/env/up and down: stopping takes the whole group
a component forked, and never signals a process that up did not start."""

import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tsenv import paths, procs  # noqa: E402


class ProcsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        state = Path(self.dir.name)
        self.saved = (paths.PIDS_FILE, paths.LOGS)
        paths.PIDS_FILE = state / "pids.json"
        paths.LOGS = state / "logs"

    def tearDown(self):
        for entry in procs.load_started():
            procs.stop(entry, grace=1)
        paths.PIDS_FILE, paths.LOGS = self.saved
        self.dir.cleanup()

    def test_stop_all_stops_the_leader_and_the_children_it_forked(self):
        # A shell that forks a child which ignores SIGTERM: SIGKILL must still take it.
        entry = procs.spawn("forker", ["sh", "-c", "(trap '' TERM; sleep 300) & sleep 300"])
        deadline = time.monotonic() + 5
        while len(procs.group_members(entry.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        members = procs.group_members(entry.pid)
        self.assertGreaterEqual(len(members), 2, members)
        left = procs.stop_all(grace=1)
        self.assertEqual(left, [])
        for pid in members:
            self.assertIsNone(procs.start_time(pid), f"pid {pid} survived")
        self.assertFalse(paths.PIDS_FILE.exists())

    def test_a_recorded_pid_that_is_not_ours_any_more_is_left_alone(self):
        bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            # Same PID, different start time: what a recycled PID looks like.
            stale = procs.Started(name="stale", pid=bystander.pid, start="1", log="/dev/null")
            self.assertFalse(procs.is_ours(stale))
            procs.stop(stale, grace=1)
            self.assertIsNone(bystander.poll(), "a process up did not start was signalled")
        finally:
            bystander.kill()
            bystander.wait()

    def test_free_ports_are_bindable_on_loopback(self):
        port = procs.free_port()
        self.assertFalse(procs.tcp_open(port))

    def test_wait_until_reports_the_log_of_a_process_that_died(self):
        entry = procs.spawn("dies", ["sh", "-c", "echo boom-marker; exit 3"])
        with self.assertRaises(RuntimeError) as raised:
            procs.wait_until(entry, "never", lambda: False, timeout=10)
        self.assertIn("boom-marker", str(raised.exception))


if __name__ == "__main__":
    unittest.main()
