"""compat/matrix's command line and the scenario registry, without running
any client or daemon."""
import contextlib
import io
import os
import subprocess
import sys
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # compat/
sys.path.insert(0, HERE)

from hostrole_compat import cli, clients, scenarios  # noqa: E402
from hostrole_compat.config import CLIENTS, SCENARIOS  # noqa: E402

NO_RUST = [c for c in CLIENTS if c != "rust"]


def main_quiet(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = cli.main(argv)
    return rc, err.getvalue()


class NeedsBuild(unittest.TestCase):
    def test_nothing_named_builds(self):
        self.assertTrue(cli.needs_build(None, CLIENTS, {}))
        self.assertTrue(cli.needs_build(None, NO_RUST, {}))
        self.assertTrue(cli.needs_build("http://127.0.0.1:1338", ["rust"], {}))

    def test_an_endpoint_without_rust_needs_nothing(self):
        self.assertFalse(cli.needs_build("http://127.0.0.1:1338", NO_RUST, {}))

    def test_named_binaries_are_not_built(self):
        both = {"HOSTROLE_BIN": "/x/hostrole", "HOSTROLE_COMPAT_PROBE": "/x/compat_probe"}
        self.assertFalse(cli.needs_build(None, CLIENTS, both))
        self.assertFalse(cli.needs_build(None, NO_RUST, {"HOSTROLE_BIN": "/x/hostrole"}))
        self.assertFalse(cli.needs_build("http://127.0.0.1:1338", ["rust"], {"HOSTROLE_COMPAT_PROBE": "/x/p"}))

    def test_one_named_the_other_needed_builds(self):
        self.assertTrue(cli.needs_build(None, CLIENTS, {"HOSTROLE_BIN": "/x/hostrole"}))
        self.assertTrue(cli.needs_build(None, NO_RUST, {"HOSTROLE_COMPAT_PROBE": "/x/p"}))

    def test_the_paths_follow_the_environment(self):
        code = "from hostrole_compat import config as c; print(c.HOSTROLE); print(c.RUST_PROBE)"
        env = dict(os.environ, HOSTROLE_BIN="/x/hostrole", HOSTROLE_COMPAT_PROBE="/x/probe")
        out = subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True,
                             timeout=10, check=True).stdout
        self.assertEqual(out.split(), ["/x/hostrole", "/x/probe"])
        env = {k: v for k, v in os.environ.items() if k not in ("HOSTROLE_BIN", "HOSTROLE_COMPAT_PROBE",
                                                                 "CARGO_TARGET_DIR")}
        out = subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True,
                             timeout=10, check=True).stdout
        root = os.path.dirname(HERE)
        self.assertEqual(out.split(), [os.path.join(root, "target", "debug", "hostrole"),
                                       os.path.join(root, "target", "debug", "examples", "compat_probe")])


class Usage(unittest.TestCase):
    def test_unknown_client(self):
        self.assertEqual(main_quiet(["--only-clients", "boto3,boto4"]), (2, "matrix: unknown client(s): boto4\n"))

    def test_unknown_scenario(self):
        self.assertEqual(main_quiet(["--only-scenarios", "1,2a,11"]), (2, "matrix: unknown scenario(s): 11,2a\n"))

    def test_endpoint_not_on_loopback(self):
        for url in ("http://169.254.169.254", "https://127.0.0.1:1338", "http://10.0.0.1:80", "127.0.0.1:1338"):
            rc, err = main_quiet(["--endpoint", url])
            self.assertEqual(rc, 2, url)
            self.assertIn("--endpoint must be http:// on loopback", err)

    def test_named_binary_missing(self):
        with mock.patch.dict(os.environ, {"HOSTROLE_BIN": "/nonexistent/hostrole"}):
            self.assertEqual(main_quiet([]), (2, "matrix: not an executable file: HOSTROLE_BIN=/nonexistent/hostrole\n"))

    def test_clients_not_installed(self):
        with mock.patch.object(clients, "VENV", "/nonexistent"), mock.patch.object(clients, "GO_BIN", "/nonexistent"):
            self.assertEqual(main_quiet(["--only-clients", "boto3,go-v2,rust", "--only-scenarios", "1"]),
                             (3, "matrix: not installed: boto3, go-v2 (run compat/install)\n"))
            self.assertEqual(main_quiet(["--only-clients", "rust", "--only-scenarios", "4"]),
                             (3, "matrix: not installed: moto_server (run compat/install)\n"))


class Registry(unittest.TestCase):
    def test_every_scenario_row_has_one_runner(self):
        self.assertEqual(list(scenarios.RUNNERS), ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"])
        self.assertEqual(set(scenarios.RUNNERS), {k.rstrip("abcd") for k, _ in SCENARIOS})
        funcs = list(scenarios.RUNNERS.values())
        self.assertEqual(len(set(funcs)), len(funcs))
        for g, f in scenarios.RUNNERS.items():
            self.assertEqual(f.__name__, "scenario_" + g)
            self.assertTrue(f.__doc__)


if __name__ == "__main__":
    unittest.main()
