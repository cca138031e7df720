"""`up` records the shipping tools only once `install` has built them all, and never builds them."""

import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tsenv import install, paths  # noqa: E402


class ShippingToolsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.saved = paths.CACHE
        paths.CACHE = Path(self.dir.name)

    def tearDown(self):
        paths.CACHE = self.saved
        self.dir.cleanup()

    def test_nothing_installed_records_nothing_and_builds_nothing(self):
        with mock.patch.object(install.subprocess, "run", side_effect=AssertionError("built")):
            self.assertEqual(install.shipping_tools(build=False), {})
        self.assertEqual(list(paths.CACHE.iterdir()), [])

    def test_all_installed_records_every_tool(self):
        with mock.patch.object(install.subprocess, "run", side_effect=AssertionError("built")):
            for name in ("go-helm", "go-kubeconform"):
                module = name.removeprefix("go-")
                target, _ = install._cached(name, install.paths.ENV_DIR / "go" / module / "go.mod",
                                            install.paths.ENV_DIR / "go" / module / "go.sum")
                target.mkdir()
                install._mark_complete(target)
            for name, requirements in (("venv-checkov", "requirements-checkov.txt"),
                                       ("venv-shipping", "requirements-shipping.txt")):
                target, _ = install._cached(name, install.paths.ENV_DIR / requirements)
                target.mkdir()
                install._mark_complete(target)
            for target in (install._opentofu_dir(), install._schema_sources_dir()):
                target.mkdir()
                install._mark_complete(target)
            tools = install.shipping_tools(build=False)
        self.assertEqual(set(tools), {"HELM", "KUBECONFORM", "TOFU", "CHECKOV", "SHIPPING_PYTHON",
                                      "HADOLINT", "SHIPPING_SCHEMAS"})
        self.assertTrue(all(value.startswith(str(paths.CACHE)) for value in tools.values()), tools)


if __name__ == "__main__":
    unittest.main()
