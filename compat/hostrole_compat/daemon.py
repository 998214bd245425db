"""The daemon under test, the network namespace of scenario 3, moto's STS, and
the endpoint's own answer (what a client must get) fetched with curl."""
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time

from . import config
from .config import IMDS_ADDR, VENV
from .report import expired


class Daemon:
    """`hostrole serve` in a temp state dir, on loopback or inside a netns."""

    def __init__(self, state, args, netns=None, listen="127.0.0.1:0", env=None, logs=None, name="d"):
        self.state, self.args, self.netns, self.listen = state, list(args), netns, listen
        self.env = dict(os.environ, HOSTROLE_LOG="info", **(env or {}))
        self.env.pop("AWS_PROFILE", None)
        self.control = os.path.join(state, "control.sock")
        self.logfile = open(os.path.join(logs or state, "daemon-%s.log" % name), "a")
        self.proc = None
        self.url = None
        self.start()

    def prefix(self):
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def start(self):
        cmd = self.prefix() + [config.HOSTROLE, "serve", "--state-dir", self.state, "--listen", self.listen,
                               "--control-socket", self.control, "--log-format", "json"] + self.args
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        found = queue.Queue()

        def pump():
            for line in self.proc.stderr:
                self.logfile.write(line)
                self.logfile.flush()
                if '"listening"' in line:
                    m = re.search(r'"addr":"([^"]+)"', line)
                    if m:
                        found.put(m.group(1))

        threading.Thread(target=pump, daemon=True).start()
        try:
            addr = found.get(timeout=20)
        except queue.Empty:
            self.stop()
            raise RuntimeError("hostrole did not start listening within 20 s (log: %s)" % self.logfile.name)
        self.listen = addr  # a restart binds the same port
        self.url = "http://" + addr

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def ctl(self, *args):
        """A client command against this daemon: its standard output."""
        p = subprocess.run([config.HOSTROLE] + list(args) + ["--control-socket", self.control],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("hostrole %s: exit %d: %s" % (args[0], p.returncode, p.stderr.strip()))
        return p.stdout

    def log_text(self):
        with open(self.logfile.name) as f:
            return f.read()

    def container_url(self, timeout=5):
        """The container endpoint's URL, from the `listening` line of the
        container listener (--container-listen)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text().splitlines():
                if '"listening"' in line and '"serves":"container"' in line:
                    return "http://%s/v1/credentials" % re.search(r'"addr":"([^"]+)"', line).group(1)
            if time.monotonic() > deadline:
                raise RuntimeError("no container listener in the log (%s)" % self.logfile.name)
            time.sleep(0.05)


class Netns:
    """A network namespace for this run, its loopback up with 169.254.169.254
    (or another address: fd00:ec2::254) on it, so a daemon inside can listen
    on the default IMDS endpoint.
    Deleted on leaving the `with` block."""

    def __init__(self, addr=IMDS_ADDR):
        self.name = "hostrole-compat-%d" % os.getpid()
        self.addr = addr

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
            if ":" in self.addr:  # IPv6: no duplicate address detection to wait for
                subprocess.run(["ip", "-n", self.name, "-6", "addr", "add", self.addr + "/128", "dev", "lo", "nodad"],
                               check=True)
            else:
                subprocess.run(["ip", "-n", self.name, "addr", "add", self.addr + "/32", "dev", "lo"], check=True)
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc):
        self.delete()

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


# --------------------------------------------------------------------------- the endpoint's own answer
def reference(url, prefix=()):
    """What the endpoint serves, fetched the IMDSv2 way with curl: role, key id, region."""
    def curl(args, head=False):
        cmd = list(prefix) + ["curl", "-gsS", "--noproxy", "*", "--max-time", "5", "-w", "\n%{http_code}"] + \
            (["-D", "-"] if head else []) + args
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        if p.returncode != 0:
            raise RuntimeError("curl %s: %s" % (args[-1], p.stderr.strip()))
        body, _, code = p.stdout.rpartition("\n")
        if head:  # the response headers come first, up to a blank line (text mode made CRLF a LF)
            headers, _, body = body.partition("\n\n")
            return int(code), body, headers
        return int(code), body

    base = url.rstrip("/")
    code, token, headers = curl(["-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 300",
                                 base + "/latest/api/token"], head=True)
    if code != 200:
        raise RuntimeError("PUT /latest/api/token: HTTP %d" % code)
    # IMDS says the token's lifetime in this header; aws-config and the Go SDK
    # refuse a token without it
    if not re.search(r"(?im)^x-aws-ec2-metadata-token-ttl-seconds:[ \t]*\d+[ \t]*$", headers):
        raise RuntimeError("PUT /latest/api/token: no X-aws-ec2-metadata-token-ttl-seconds header in the answer")
    hdr = ["-H", "X-aws-ec2-metadata-token: " + token]
    code, roles = curl(hdr + [base + "/latest/meta-data/iam/security-credentials/"])
    if code == 404:
        return {"role": None, "akid": None}
    if code != 200 or "\n" in roles or not roles:
        raise RuntimeError("role listing: HTTP %d %r" % (code, roles[:80]))
    code, body = curl(hdr + [base + "/latest/meta-data/iam/security-credentials/" + roles])
    if code == 404:  # the role is listed, its first credentials are still being fetched
        return {"role": roles, "akid": None}
    if code != 200:
        raise RuntimeError("credentials: HTTP %d" % code)
    doc = json.loads(body)
    for k in ("Expiration", "LastUpdated"):
        if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc[k]):
            raise RuntimeError("%s %r is not whole seconds with Z" % (k, doc[k]))
    if expired(doc["Expiration"]):
        raise RuntimeError("serves expired credentials (Expiration %s)" % doc["Expiration"])
    return {"role": roles, "akid": doc["AccessKeyId"], "token": doc["Token"], "expiration": doc["Expiration"]}


def wait_reference(url, want, prefix=(), timeout=20):
    """Polls until the served role is `want` (a name, or None for no role)."""
    deadline = time.monotonic() + timeout
    while True:
        ref = reference(url, prefix)
        if ref["role"] == want and (want is None or ref["akid"]):
            return ref
        if time.monotonic() > deadline:
            raise RuntimeError("endpoint serves role %r, expected %r after %d s" % (ref["role"], want, timeout))
        time.sleep(0.2)


# --------------------------------------------------------------------------- moto's STS (scenario 4)
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_moto():
    """moto_server on a free loopback port: (the process, its URL)."""
    port = free_port()
    proc = subprocess.Popen([os.path.join(VENV, "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, "http://127.0.0.1:%d" % port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                proc.wait()
                raise RuntimeError("moto_server did not start within 30 s")
            time.sleep(0.1)
