"""Tests of the real node's configuration: pods reach the node and the Service range only, and
the settings this machine needs are in place."""

import ipaddress
import json
import shutil
import socket
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tsenv import node, paths  # noqa: E402


class NodeConfigTest(unittest.TestCase):
    def test_pods_route_to_the_node_and_services_only(self):
        bridge = json.loads(node._cni_config())["plugins"][0]
        # A gateway bridge would turn on IP forwarding; masquerading would hide pods behind eth0.
        self.assertFalse(bridge["isGateway"])
        self.assertFalse(bridge["ipMasq"])
        routes = bridge["ipam"]["routes"]
        self.assertEqual(routes, [{"dst": node.SERVICE_CIDR, "gw": node.NODE_IP}])
        pod_range = ipaddress.ip_network(node.POD_CIDR)
        (subnet,) = bridge["ipam"]["ranges"][0]
        self.assertEqual(ipaddress.ip_network(subnet["subnet"]), pod_range)
        self.assertIn(ipaddress.ip_address(node.NODE_IP), pod_range)
        # Pod addresses never include the node's own.
        self.assertGreater(ipaddress.ip_address(subnet["rangeStart"]), ipaddress.ip_address(node.NODE_IP))

    def test_containerd_settings_this_machine_needs(self):
        config = node._containerd_config(Path("/nowhere"))
        self.assertIn("restrict_oom_score_adj = true", config)
        self.assertIn("SystemdCgroup = false", config)
        self.assertIn(f"sandbox = '{node.PAUSE_IMAGE}'", config)
        self.assertIn("imports = []", config)

    def test_kubelet_on_cgroup_v1_with_the_nodes_address(self):
        config = node._kubelet_config(Path("/pki"), 1234)
        for line in ("failCgroupV1: false", "cgroupDriver: cgroupfs", "failSwapOn: false",
                     f"address: {node.NODE_IP}", "healthzBindAddress: 127.0.0.1"):
            self.assertIn(line, config)

    def test_volumes_belong_to_the_node_and_wait_for_their_pod(self):
        manifests = node._volumes()
        self.assertIn("volumeBindingMode: WaitForFirstConsumer", manifests)
        self.assertEqual(manifests.count("kind: PersistentVolume\n"), node.VOLUME_COUNT)
        self.assertEqual(manifests.count(f"values: [{node.NODE_NAME}]"), node.VOLUME_COUNT)


class LeftoverNodeTest(unittest.TestCase):
    """A node whose processes died with an earlier session (CI runs on such a machine) is removed
    by the next `up` or `down`; a node something still serves is left alone."""

    def setUp(self):
        tmp = Path(tempfile.mkdtemp(dir="/tmp"))  # short: a unix socket path is limited to 108 bytes
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.root, self.run_dir, self.checkout = tmp / "lib", tmp / "run", tmp / "checkout"
        for d in (self.root, self.run_dir / "containerd", self.checkout):
            d.mkdir(parents=True)
        self.socket_path = self.run_dir / "containerd" / "containerd.sock"
        patches = [mock.patch.object(node, "ROOT", self.root), mock.patch.object(node, "RUN", self.run_dir),
                   mock.patch.object(node, "CONTAINERD_SOCKET", self.socket_path),
                   mock.patch.object(paths, "STATE", self.checkout),
                   mock.patch.object(node, "_bridge_exists", return_value=False),
                   mock.patch.object(node, "_remove_kube_chains"), mock.patch.object(node, "_remove_cgroups"),
                   mock.patch.object(node, "_kill_pod_processes"),
                   mock.patch.object(node.install, "go_tools", return_value=self.checkout / "no-tools")]
        for patcher in patches:
            patcher.start()
            self.addCleanup(patcher.stop)
        (self.root / node.STATE_FILE).write_text(json.dumps({"made": []}))

    def test_a_node_nothing_serves_is_removed_without_this_checkouts_state(self):
        self.socket_path.touch()  # a socket file whose containerd is gone
        self.assertFalse(node._node_alive())
        node.cleanup()
        self.assertFalse(self.root.exists())
        self.assertFalse(self.run_dir.exists())

    def test_a_node_whose_containerd_answers_is_left_alone(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(self.socket_path))
            server.listen(8)
            self.assertTrue(node._node_alive())
            node.cleanup()
            self.assertTrue(self.root.exists())
            with self.assertRaisesRegex(RuntimeError, "already running"):
                node.create_bridge()


if __name__ == "__main__":
    unittest.main()
