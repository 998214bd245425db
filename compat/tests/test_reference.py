"""The endpoint's own answer, fetched by daemon.reference(), against
compat/mock_imds.py: the clean mock passes, each of its faults is caught,
and a client result taken from the mock is judged as it should be."""
import contextlib
import io
import json
import os
import select
import socket
import subprocess
import sys
import time
import unittest
import urllib.request
from unittest import mock

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # compat/
sys.path.insert(0, HERE)

from hostrole_compat import cli  # noqa: E402
from hostrole_compat.daemon import reference, wait_reference  # noqa: E402
from hostrole_compat.report import got_served  # noqa: E402

MOCK = os.path.join(HERE, "mock_imds.py")


class Mock:
    """compat/mock_imds.py on a free loopback port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, MOCK, "--listen", "127.0.0.1:0", "--quiet"] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on http://"):
            self.close()
            raise RuntimeError("mock_imds did not start: %r" % line)
        self.url = line.split()[-1]

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def client_fetch(url):
    """The credentials document the IMDSv2 way, as an SDK would read it."""
    put = urllib.request.Request(url + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    token = opener.open(put, timeout=5).read().decode()
    h = {"X-aws-ec2-metadata-token": token}
    base = url + "/latest/meta-data/iam/security-credentials/"
    role = opener.open(urllib.request.Request(base, headers=h), timeout=5).read().decode()
    doc = json.loads(opener.open(urllib.request.Request(base + role, headers=h), timeout=5).read())
    return {"akid": doc["AccessKeyId"], "has_token": bool(doc["Token"]), "expiration": doc["Expiration"]}


def main_quiet(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = cli.main(argv)
    return rc, err.getvalue()


class CleanMock(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = Mock("--role", "demo")

    @classmethod
    def tearDownClass(cls):
        cls.mock.close()

    def test_reference(self):
        ref = reference(self.mock.url)
        self.assertEqual(ref["role"], "demo")
        self.assertRegex(ref["akid"], r"^ASIA[0-9A-F]{16}$")
        self.assertTrue(ref["token"])
        self.assertRegex(ref["expiration"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(reference(self.mock.url + "/")["akid"], ref["akid"])

    def test_a_client_holding_the_served_keys_passes(self):
        ref = reference(self.mock.url)
        self.assertIsNone(got_served(client_fetch(self.mock.url), ref))
        self.assertIn("got AccessKeyId ASIAOTHER", got_served(dict(client_fetch(self.mock.url), akid="ASIAOTHER"), ref))

    def test_wait_reference(self):
        self.assertEqual(wait_reference(self.mock.url, "demo", timeout=2)["role"], "demo")
        t0 = time.monotonic()
        with self.assertRaisesRegex(RuntimeError, r"serves role 'demo', expected 'other' after 1 s"):
            wait_reference(self.mock.url, "other", timeout=1)
        self.assertLess(time.monotonic() - t0, 5)

    def test_endpoint_role_mismatch_fails_the_run(self):
        with mock.patch.dict(os.environ, {"HOSTROLE_COMPAT_PROBE": "/bin/true"}):
            rc, err = main_quiet(["--endpoint", self.mock.url, "--only-clients", "rust", "--role", "admin"])
        self.assertEqual(rc, 1)
        self.assertIn("the endpoint lists role 'demo', expected 'admin'", err)


class Faults(unittest.TestCase):
    def check_fault(self, fault, message):
        with Mock("--fault", fault) as m:
            with self.assertRaisesRegex(RuntimeError, message):
                reference(m.url)
            # and compat/matrix --endpoint fails on it before any client runs
            with mock.patch.dict(os.environ, {"HOSTROLE_COMPAT_PROBE": "/bin/true"}):
                rc, err = main_quiet(["--endpoint", m.url, "--only-clients", "rust"])
            self.assertEqual(rc, 1)
            self.assertRegex(err, message)
            return client_fetch(m.url)

    def test_offset_times(self):
        self.check_fault("offset-times", r"(Expiration|LastUpdated) '[^']+\+00:00' is not whole seconds with Z")

    def test_expired(self):
        v = self.check_fault("expired", r"serves expired credentials \(Expiration \S+Z\)")
        # a client that got those keys holds expired credentials
        self.assertRegex(got_served(v, {"akid": v["akid"]}), r"^holds expired credentials")

    def test_no_ttl_header(self):
        self.check_fault("no-ttl-header", r"no X-aws-ec2-metadata-token-ttl-seconds header")

    def test_nothing_listening(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaisesRegex(RuntimeError, r"^curl http://127\.0\.0\.1:%d/latest/api/token: " % port):
            reference("http://127.0.0.1:%d" % port)


if __name__ == "__main__":
    unittest.main()
