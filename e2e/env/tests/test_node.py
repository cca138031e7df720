"""Tests of the real node's configuration: pods reach the node and the Service range only, and
the settings this machine needs are in place."""

import ipaddress
import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tsenv import node  # noqa: E402


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


if __name__ == "__main__":
    unittest.main()
