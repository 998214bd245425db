"""The clients: each runs as its own program through its own default chain,
with no hostrole code (`env -i`, empty AWS config files, a temp HOME).

The SDK clients are long-lived probes (ProbeSession) that print one JSON line
per step; the AWS CLIs are a process per call (CliSession)."""
import atexit
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time

from . import config
from .config import (CLI_V2, GO1_BIN, GO_BIN, HERE, ISOLATED, NODE2_MODULES, NODE_MODULES, ROOT,
                     STEP_TIMEOUT_S, VENV)
from .report import last_error_line


class Ctx:
    """How clients run in one scenario."""

    def __init__(self, tmp, logs, endpoint=None, netns=None, region=True, sts=None, sink=None, extra=None):
        self.tmp, self.logs, self.endpoint, self.netns = tmp, logs, endpoint, netns
        self.region, self.sts, self.sink = region, sts, sink
        self.extra = dict(extra or {})
        self.n = 0

    def env(self, name, trailing_slash=False, extra=None):
        d = tempfile.mkdtemp(prefix=name + ".", dir=self.tmp)
        home = os.path.join(d, "home")
        os.makedirs(home)
        cfg, cred = os.path.join(d, "config"), os.path.join(d, "credentials")
        open(cfg, "w").close()
        open(cred, "w").close()
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "TMPDIR": d,
               "AWS_CONFIG_FILE": cfg, "AWS_SHARED_CREDENTIALS_FILE": cred,
               "NO_PROXY": "127.0.0.1,localhost,::1,169.254.169.254",
               "no_proxy": "127.0.0.1,localhost,::1,169.254.169.254"}
        if self.endpoint:
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.endpoint.rstrip("/") + ("/" if trailing_slash else "")
        if self.region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = "us-east-1"
        env.update(self.extra)
        env.update(extra or {})
        return env

    def argv(self, env, cmd, netns=None):
        netns = netns or self.netns
        return (["ip", "netns", "exec", netns] if netns else []) + \
            ["env", "-i"] + ["%s=%s" % kv for kv in env.items()] + cmd

    def record(self, name, cmd, env, text):
        if not self.logs:
            return
        self.n += 1
        with open(os.path.join(self.logs, "%03d-%s.log" % (self.n, name)), "w") as f:
            f.write("$ %s\n%s%s\n" % (" ".join(cmd), "".join("# %s=%s\n" % kv for kv in sorted(env.items())), text))

    def run(self, name, cmd, env):
        try:
            p = subprocess.run(["timeout", "-k", "2", str(STEP_TIMEOUT_S)] + self.argv(env, cmd),
                               capture_output=True, text=True, timeout=STEP_TIMEOUT_S + 5,
                               stdin=subprocess.DEVNULL)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            rc, out, err = 124, "", ""
        self.record(name, cmd, env, "# exit %d\n--- stdout\n%s\n--- stderr\n%s" % (rc, out, err))
        return rc, out, err


class ProbeSession:
    """A long-lived SDK client process speaking the probe protocol: one JSON
    line per step, the next step on a line of stdin."""

    def __init__(self, name, cmd, ctx, steps, extra=None, netns=None):
        self.name, self.ctx = name, ctx
        env = ctx.env(name, extra=dict(extra or {}, PROBE_STEPS=str(steps)))
        if ctx.sts:
            env["PROBE_STS_ENDPOINT"] = ctx.sts
        self.proc = subprocess.Popen(ctx.argv(env, cmd, netns), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        self.first = True
        self.cmd, self.env = cmd, env

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line)
        q.put(None)

    def step(self):
        if not self.first:
            try:
                self.proc.stdin.write("next\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        self.first = False
        t0 = time.monotonic()
        try:
            line = self.lines.get(timeout=STEP_TIMEOUT_S)
        except queue.Empty:
            line = "timeout"
        took = time.monotonic() - t0
        self.ctx.record(self.name, self.cmd, self.env, "--- step output\n%s\n--- stderr so far\n%s" % (
            line, "".join(self.err)[-4000:]))
        if line == "timeout":
            return {"fresh": {"error": "timed out after %d s" % STEP_TIMEOUT_S}, "held": None, "took": took}
        if line is None:
            return {"fresh": {"error": "probe exited: " + last_error_line("".join(self.err))},
                    "held": None, "took": took}
        r = json.loads(line)
        r["took"] = took
        return r

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class CliSession:
    """The AWS CLI: a new process per call, so `held` does not apply."""

    def __init__(self, name, ctx):
        self.name, self.ctx = name, ctx
        self.v2 = name == "awscli-v2"
        self.aws = CLI_V2 if self.v2 else os.path.join(VENV, "bin", "aws")
        env = ctx.env(name, trailing_slash=self.v2)
        rc, out, err = ctx.run(name + "-version", [self.aws, "--version"], env)
        self.version = (out or err).split(" ")[0].replace("aws-cli/", "aws-cli ")

    def step(self):
        t0 = time.monotonic()
        env = self.ctx.env(self.name, trailing_slash=self.v2)
        v = {}
        rc, out, err = self.ctx.run(self.name + "-list", [self.aws, "configure", "list"], env)
        for line in out.splitlines():
            f = line.split()
            if f and f[0] == "region":
                v["region"] = f[1] if len(f) >= 3 and f[1] != "<not" else None
                v["region_source"] = f[2] if len(f) >= 3 and f[1] != "<not" else None
            if f and f[0] == "access_key" and len(f) >= 3 and f[1] != "<not":
                v["source"] = f[2]
                v["akid_last4"] = f[1][-4:]
        if self.v2:
            rc, out, err = self.ctx.run(self.name + "-export",
                                        [self.aws, "configure", "export-credentials", "--format", "env"], env)
            if rc != 0:
                v["error"] = last_error_line(err or out)
            else:
                kv = dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))
                v.update(akid=kv.get("AWS_ACCESS_KEY_ID"), expiration=kv.get("AWS_CREDENTIAL_EXPIRATION"),
                         has_token=bool(kv.get("AWS_SESSION_TOKEN")))
        url = self.ctx.sts or (self.ctx.sink.url if self.ctx.sink and not self.v2 else None)
        if url and "error" not in v:
            env2 = dict(env, AWS_MAX_ATTEMPTS="1")
            before = len(self.ctx.sink.akids) if self.ctx.sink else 0
            rc, out, err = self.ctx.run(self.name + "-sts", [self.aws, "sts", "get-caller-identity",
                                                             "--endpoint-url", url, "--region", "us-east-1",
                                                             "--output", "json"], env2)
            if rc != 0:
                if self.v2 or self.ctx.sts:
                    v["sts_error"] = last_error_line(err or out)
                else:
                    v["error"] = last_error_line(err or out)
            else:
                if self.ctx.sts:
                    v["arn"] = json.loads(out)["Arn"]
                if not self.v2 and not self.ctx.sts and len(self.ctx.sink.akids) > before:
                    v["akid"], v["has_token"] = self.ctx.sink.akids[-1]
        return {"fresh": v, "held": None, "took": time.monotonic() - t0, "version": self.version}

    def close(self):
        pass


def cargo_lock_version(crate):
    try:
        with open(os.path.join(ROOT, "Cargo.lock")) as f:
            m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(crate), f.read())
            return m.group(1) if m else "?"
    except OSError:
        return "?"


_isolated = []


def isolated_netns():
    """An empty network namespace (loopback only) for this run, made on first
    use and deleted at exit: a client that would ask 169.254.169.254 whatever
    it is told runs there, so it never sends a packet off this host."""
    if not _isolated:
        name = "hostrole-compat-iso-%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", name], check=True)
        atexit.register(subprocess.run, ["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        _isolated.append(name)
    return _isolated[0]


def open_session(client, ctx, steps):
    netns = isolated_netns() if client in ISOLATED and not ctx.netns else None
    if client == "ruby":
        return ProbeSession(client, ["/usr/bin/ruby", os.path.join(HERE, "ruby", "creds.rb")], ctx, steps)
    if client == "php":
        return ProbeSession(client, ["/usr/bin/php", os.path.join(HERE, "php", "creds.php")], ctx, steps,
                            netns=netns)
    if client == "go-v1":
        return ProbeSession(client, [GO1_BIN], ctx, steps)
    if client == "js-v2":
        return ProbeSession(client, [shutil.which("node") or "/usr/bin/node", os.path.join(HERE, "js2", "creds.cjs")],
                            ctx, steps, extra={"NODE_PATH": NODE2_MODULES})
    if client in ("botocore", "boto3"):
        return ProbeSession(client, [os.path.join(VENV, "bin", "python"), os.path.join(HERE, "py_creds.py"), client],
                            ctx, steps)
    if client == "js-v3":
        return ProbeSession(client, [shutil.which("node") or "/usr/bin/node", os.path.join(HERE, "js", "creds.cjs")],
                            ctx, steps, extra={"NODE_PATH": NODE_MODULES})
    if client == "go-v2":
        return ProbeSession(client, [GO_BIN], ctx, steps)
    if client == "rust":
        s = ProbeSession(client, [config.RUST_PROBE], ctx, steps)
        s.version = "aws-config %s" % cargo_lock_version("aws-config")
        return s
    return CliSession(client, ctx)


def absent(clients, moto=False):
    """What `clients` (and moto_server, if `moto`) need that is not installed."""
    need = {"botocore": os.path.join(VENV, "bin", "python"), "boto3": os.path.join(VENV, "bin", "python"),
            "awscli-v1": os.path.join(VENV, "bin", "aws"), "awscli-v2": CLI_V2,
            "js-v3": os.path.join(NODE_MODULES, "@aws-sdk", "client-sts"), "go-v2": GO_BIN,
            "ruby": "/usr/share/rubygems-integration/all/gems/aws-sdk-core-3.168.1",
            "go-v1": GO1_BIN, "js-v2": os.path.join(NODE2_MODULES, "aws-sdk"),
            "php": "/usr/share/php/AsyncAws/Core"}
    out = [c for c in clients if c in need and not os.path.exists(need[c])]
    if moto and not os.path.exists(os.path.join(VENV, "bin", "moto_server")):
        out.append("moto_server")
    return out
