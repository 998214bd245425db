"""hostrole benchmark: hostrole against nginx serving the same credential
document as a static file, on loopback, driven by the same load tool (wrk).
Prints its figures and writes docs/benchmarks.md and docs/benchmarks-latency.png.
Run through bench/run, which installs what it needs."""

import asyncio
import datetime
import http.server
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "hostrole")
ROLE = "arn:aws:iam::123456789012:role/demo"
DOC_PATH = "/latest/meta-data/iam/security-credentials/demo"
DURATION = os.environ.get("BENCH_DURATION", "3s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = [1, 16, 256]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def req(port, method, path, headers=None, timeout=5):
    """One request on a fresh connection; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def token(port):
    return req(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})[1]


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def start_hostrole(state, port, extra=(), env=None):
    """hostrole as the package runs it: systemd holds the listening socket
    and passes it (systemd-socket-activate execs hostrole in its place,
    with only the environment named by -E)."""
    setenv = [f"-E{k}={v}" for k, v in (env or {}).items()]
    return subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *setenv,
         BIN, "serve", "--state-dir", state,
         "--control-socket", os.path.join(state, "c.sock"), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for_credentials(port, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            t = token(port)
            status, body = req(port, "GET", DOC_PATH, {"X-aws-ec2-metadata-token": t})
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        time.sleep(0.001)
    raise SystemExit("hostrole did not serve credentials in time")


def wrk_script(workdir, pattern):
    """A wrk script: the load pattern (if any) followed by the JSON report."""
    parts = [os.path.join(ROOT, "bench", name) for name in (pattern, "wrk-report.lua") if name]
    path = os.path.join(workdir, f"{pattern or 'plain'}.lua")
    with open(path, "w") as out:
        for part in parts:
            with open(part) as f:
                out.write(f.read() + "\n")
    return path


def wrk(port, conns, script, headers=()):
    threads = 1 if conns == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{DURATION}", "-s", script]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{DOC_PATH}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_nginx(workdir, port, doc):
    root = os.path.join(workdir, "www")
    os.makedirs(os.path.join(root, "latest/meta-data/iam/security-credentials"), exist_ok=True)
    with open(os.path.join(root, DOC_PATH.lstrip("/")), "w") as f:
        f.write(doc)
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes auto;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  default_type text/plain;
  client_body_temp_path {workdir}/tmp;
  server {{
    listen 127.0.0.1:{port} reuseport;
    root {root};
    location = /latest/api/token {{ return 200 "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; }}
    location = /latest/meta-data/iam/security-credentials/ {{ return 200 "demo"; }}
  }}
}}
""")
    # nginx workers run unprivileged: the web root must be readable to them.
    os.chmod(workdir, 0o755)
    for d, _, files in os.walk(root):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    proc = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if req(port, "GET", DOC_PATH)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.02)
    stop(proc)
    raise SystemExit(f"nginx did not start; see {workdir}/error.log")


def nginx_rss_kib(master):
    pids = [master.pid]
    out = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout
    pids += [int(p) for p in out.split()]
    return sum(rss_kib(p) for p in pids)


# --- STS economy: a fake STS that holds the refresh call while clients load ---

class FakeSts(http.server.BaseHTTPRequestHandler):
    calls = 0
    lifetime_s = 20
    hold_s = 0.0
    holding = threading.Event()
    released = threading.Event()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        FakeSts.calls += 1
        if FakeSts.calls >= 2:
            FakeSts.holding.set()
            time.sleep(FakeSts.hold_s)
            FakeSts.released.set()
        exp = (datetime.datetime.now(datetime.timezone.utc)
               + datetime.timedelta(seconds=FakeSts.lifetime_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        n = FakeSts.calls
        body = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>ASIAFAKESTS{n:09d}</AccessKeyId>
<SecretAccessKey>{'s' * 40}</SecretAccessKey><SessionToken>{'t' * 300}</SessionToken>
<Expiration>{exp}</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROAFAKE:bench</AssumedRoleId>
<Arn>arn:aws:sts::123456789012:assumed-role/demo/bench</Arn></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>r-{n}</RequestId></ResponseMetadata>
</AssumeRoleResponse>""".encode()
        self.send_response(200)
        self.send_header("content-type", "text/xml")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


async def one_fetch(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    tok = data.partition(b"\r\n\r\n")[2].decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {DOC_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"X-aws-ec2-metadata-token: {tok}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    # A connection closed without an answer counts as status 0.
    parts = data.split()
    return int(parts[1]) if len(parts) > 1 else 0


async def burst(port, n, at_once=400):
    # At most `at_once` connections open together: one user may hold 512.
    gate = asyncio.Semaphore(at_once)

    async def gated():
        async with gate:
            return await one_fetch(port)

    return await asyncio.gather(*(gated() for _ in range(n)))


def sts_economy(workdir):
    sts_port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", sts_port), FakeSts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeSts.hold_s = 3.0
    port = free_port()
    env = dict(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    state = tempfile.mkdtemp(dir=workdir)
    proc = start_hostrole(state, port, ["--issuer", "sts", "--region", "us-east-1",
                                        "--sts-endpoint", f"http://127.0.0.1:{sts_port}",
                                        "--role-arn", ROLE], env)
    try:
        wait_for_credentials(port)
        # The 20 s session refreshes after 8-10 s; the fake STS holds that call.
        if not FakeSts.holding.wait(30):
            raise SystemExit("no refresh call within 30 s")
        # Calls since the prefetch: the refresh being held, plus any the
        # burst caused.
        statuses = asyncio.run(burst(port, 1000))
        overlapped = not FakeSts.released.is_set()
        during = FakeSts.calls - 1
    finally:
        stop(proc)
        server.shutdown()
    return {"fetches": len(statuses), "ok": statuses.count(200), "sts_calls_during": during,
            "burst_within_refresh": overlapped, "sts_calls_total": FakeSts.calls}


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {platform.release()}"


def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except OSError:
        return "?"


def cpu_seconds(pids):
    """User and system CPU time of `pids` so far."""
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def merge(results):
    """Several wrk runs of one pair as one: the median of each figure."""
    return {
        "rps": statistics.median(r["rps"] for r in results),
        "percentiles": {q: statistics.median(r["percentiles"][q] for r in results)
                        for q in results[0]["percentiles"]},
        "cpu_us": statistics.median(r["cpu_us"] for r in results),
    }


def load_runs(workdir, hostroles, nginx, nport, toks, results):
    """The wrk runs against every server (each hostrole in `hostroles`, a
    {name: (process, port)}, with its token in `toks`, and nginx), ROUNDS times, the servers taking
    turns to go first; also samples hostrole's memory. Returns the median
    figures of each (pattern, connections, server) and the per-round pairs
    of each hostrole with nginx, whose ratios the targets use: on a shared
    machine a ratio taken within one round is steadier than a ratio of
    medians."""
    report = wrk_script(workdir, None)
    sdk = wrk_script(workdir, "wrk-sdk-pattern.lua")
    paced = wrk_script(workdir, "wrk-paced.lua")
    loads = [(p, c) for c in CONNECTIONS for p in ("a", "b", "paced") if p != "paced" or c == 16]
    script = {"a": (report, True), "b": (sdk, False), "paced": (paced, True)}
    servers = [(name, port) for name, (_, port) in hostroles.items()] + [("nginx", nport)]
    nginx_pids = [nginx.pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(nginx.pid)], capture_output=True, text=True).stdout.split()]
    pids = {name: [proc.pid] for name, (proc, _) in hostroles.items()}
    pids["nginx"] = nginx_pids
    hostrole = hostroles["hostrole"][0]
    rounds = {name: {load: [] for load in loads} for name in hostroles}
    for i in range(ROUNDS):
        for pattern, conns in loads:
            path, auth = script[pattern]
            pair = {}
            k = i % len(servers)
            for name, port in servers[k:] + servers[:k]:
                before = cpu_seconds(pids[name])
                tok = toks.get(name, toks["hostrole"])
                headers = [f"X-aws-ec2-metadata-token: {tok}"] if auth else []
                pair[name] = run = wrk(port, conns, path, headers)
                run["cpu_us"] = (cpu_seconds(pids[name]) - before) / run["requests"] * 1e6
                if (name, pattern, conns, i) == ("hostrole", "a", 256, 0):
                    results["rss_load_kib"] = rss_kib(hostrole.pid)
                    results["rss_peak_kib"] = rss_kib(hostrole.pid, "VmHWM")
                    results["nginx_rss_load_kib"] = nginx_rss_kib(nginx)
            n = pair["nginx"]
            line = f"round {i + 1} ({pattern}) {conns:>3} conns: nginx {n['rps']:>9.0f} req/s p99 {n['percentiles']['99']:>6} us"
            for name in hostroles:
                h = pair[name]
                rounds[name][(pattern, conns)].append((h, n))
                line += f" | {name} {h['rps']:>9.0f} req/s p99 {h['percentiles']['99']:>6} us ratio {h['rps'] / n['rps']:.2f}"
            print(line, flush=True)
    runs = {}
    for name in hostroles:
        for (pattern, conns), pairs in rounds[name].items():
            runs[(pattern, conns, name)] = merge([h for h, _ in pairs])
            runs[(pattern, conns, "nginx")] = merge([n for _, n in pairs])
    return runs, rounds


def main():
    workdir = tempfile.mkdtemp(prefix="hostrole-bench-")
    results = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "hostrole": version([BIN, "--version"]), "nginx": version(["nginx", "-v"]),
               "wrk": version(["wrk", "--version"])}
    print("machine:", results["machine"])

    # Start-up: process start to first served credential (local issuer).
    startups = []
    for _ in range(7):
        state = tempfile.mkdtemp(dir=workdir)
        port = free_port()
        t0 = time.monotonic()
        p = start_hostrole(state, port, ["--issuer", "local", "--role-arn", ROLE])
        try:
            wait_for_credentials(port)
            startups.append((time.monotonic() - t0) * 1000)
        finally:
            stop(p)
    results["startup_ms"] = statistics.median(startups)
    print(f"start-up to first credential: {results['startup_ms']:.1f} ms (median of 7)")

    # hostrole as packaged, and with each serving thread pinned to a CPU.
    pinned_config = os.path.join(workdir, "pinned.toml")
    with open(pinned_config, "w") as f:
        f.write("pin-threads = true\n")
    hostroles = {}
    nginx = None
    try:
        for name, extra in (("hostrole", []), ("pinned", ["--config", pinned_config])):
            state = tempfile.mkdtemp(dir=workdir)
            port = free_port()
            hostroles[name] = (start_hostrole(state, port, ["--issuer", "local", "--role-arn", ROLE, *extra]), port)
        doc = json.dumps(wait_for_credentials(hostroles["hostrole"][1]), indent=2)
        wait_for_credentials(hostroles["pinned"][1])
        # Each daemon has its own token key.
        toks = {name: token(port) for name, (_, port) in hostroles.items()}
        time.sleep(0.5)
        results["rss_idle_kib"] = rss_kib(hostroles["hostrole"][0].pid)
        nport = free_port()
        nginx = start_nginx(workdir, nport, doc)
        results["nginx_rss_idle_kib"] = nginx_rss_kib(nginx)
        runs, rounds = load_runs(workdir, hostroles, nginx, nport, toks, results)
    finally:
        for proc, _ in hostroles.values():
            stop(proc)
        if nginx is not None:
            stop(nginx)


    results["sts"] = sts_economy(workdir)
    print("STS economy:", results["sts"])
    with open(os.path.join(ROOT, ".cache", "fleet.txt")) as f:
        results["fleet"] = f.read().strip()
    print(results["fleet"])

    write_docs(results, runs, rounds)


HEADER = [
    "| load | conns | hostrole req/s | nginx req/s | ratio | hostrole p50 / p99 / p99.9 (µs) | nginx p50 / p99 / p99.9 (µs) | server CPU per request, hostrole / nginx (µs) |",
    "|---|---|---|---|---|---|---|---|",
]


def write_docs(r, runs, rounds):
    docs = os.path.join(ROOT, "docs")
    os.makedirs(docs, exist_ok=True)
    plot(runs, os.path.join(docs, "benchmarks-latency.png"))
    mib = lambda kib: kib / 1024
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run`; do not edit by hand. hostrole is compared with nginx serving the same",
        "credential document as a static file, both on loopback, driven by the same load tool (wrk)",
        "on the same machine. The machine is shared: read the ratios, taken in one run, rather than",
        "the absolute figures.",
        "",
        f"- run: {r['date']}",
        f"- machine: {r['machine']}",
        f"- {r['hostrole']}; {r['nginx']}; {r['wrk']}",
        f"- each load run: {DURATION}, in {ROUNDS} rounds, the servers taking turns to go first;"
        " wrk uses 1 thread for 1 connection, else 2",
        "",
        "## Throughput and latency",
        "",
        "(a) keep-alive GETs of the credential document with a valid token (what long-lived SDK clients do);",
        "(b) the botocore/JS pattern: PUT token, GET listing, GET credentials, each on a fresh connection",
        "(requests/s counts all three requests); (paced) as (a) at 16 connections, each paced to about one",
        "request per millisecond, so that latency shows service time rather than queueing: wrk and both",
        "servers share this machine's two cores, and the unpaced runs saturate them.",
        "Requests/s and latencies are the median over the rounds; a ratio is the median of the",
        "ratios taken within each round, and so are the tail ratios under Targets.",
        "",
        *HEADER,
    ]
    a16h, a16n = runs[("a", 16, "hostrole")], runs[("a", 16, "nginx")]
    ratio = lambda p, c, name="hostrole": statistics.median(
        h["rps"] / n["rps"] for h, n in rounds[name][(p, c)])
    tail = lambda p, c, q, name="hostrole": statistics.median(
        h["percentiles"][q] / n["percentiles"][q] for h, n in rounds[name][(p, c)])

    def table(name):
        for pattern in ("a", "b", "paced"):
            for conns in CONNECTIONS:
                if (pattern, conns, name) not in runs:
                    continue
                h, n = runs[(pattern, conns, name)], runs[(pattern, conns, "nginx")]
                pcs = lambda r: " / ".join(f"{r['percentiles'][q]:.0f}" for q in ("50", "99", "99.9"))
                lines.append(
                    f"| ({pattern}) | {conns} | {h['rps']:.0f} | {n['rps']:.0f} | {ratio(pattern, conns, name):.2f} | "
                    f"{pcs(h)} | {pcs(n)} | {h['cpu_us']:.1f} / {n['cpu_us']:.1f} |")

    def sdk_and_tail_targets(name, prefix):
        """The (b) and tail target rows for one hostrole."""
        rows = []
        for c in (1, 16, 256):
            b = ratio("b", c, name)
            rows.append(f"| {prefix}(b) SDK pattern ≥ nginx at {c} connection(s) | ratio {b:.2f} | {'yes' if b >= 1.0 else 'no'} |")
        for c in (1, 16, 256):
            p99, p999, a = tail("a", c, "99", name), tail("a", c, "99.9", name), ratio("a", c, name)
            met = p99 <= 1.2 and p999 <= 1.2 and a >= 1.0
            rows.append(f"| {prefix}(a) p99 / p99.9 within 1.2× nginx at {c} connection(s), throughput ≥ nginx | "
                        f"{p99:.2f}× / {p999:.2f}×, throughput {a:.2f} | {'yes' if met else 'no'} |")
        return rows

    table("hostrole")
    lines += [
        "",
        "With `pin-threads = true` (each serving thread pinned to a CPU of its own, and a keep-alive",
        "connection given to the thread on its caller's CPU), against nginx in the same rounds:",
        "",
        *HEADER,
    ]
    table("pinned")
    p16h = runs[("paced", 16, "hostrole")]
    lines += [
        "",
        "![latency distribution at 16 connections](benchmarks-latency.png)",
        "",
        "Both servers run a worker per core: nginx's processes (`worker_processes auto`), hostrole's",
        "single-threaded runtimes, each accepting on the same socket; a connection stays on the",
        "thread that serves it (no task moves between threads), and a keep-alive connection goes to",
        "the thread holding fewest.",
        "",
        "Saturated, with wrk and the servers sharing two cores, the tail is set by where threads run.",
        "A request waits when the thread that answers it is runnable but sharing a core with another",
        "busy thread: a time slice, a millisecond or more. With `pin-threads = true` each hostrole",
        "thread stays on one CPU, and a keep-alive connection goes to the thread on the CPU its",
        "packets come in on (`SO_INCOMING_CPU`; on loopback, the caller's). Each wrk thread and the",
        "hostrole thread answering it then take turns on one core, each sleeping while the other",
        "runs, instead of waiting for each other's slices on two. It is not the default: a pinned",
        "thread cannot move off a CPU that other work keeps busy.",
        "",
        "(b) opens a connection per request, so it measures what a connection costs. hostrole runs",
        "as the package runs it, on a listening socket that systemd holds (here",
        "`systemd-socket-activate`). A request that is whole when its connection is accepted and asks",
        "to close (`Connection: close`, as these clients send) is read, answered and closed at accept:",
        "four system calls (accept4, recvfrom, writev, close), no epoll registration, no task, and no",
        "lookup of the caller's uid, which only a connection that waits (for its slot) or the",
        "allow-list needs. Anything else goes to hyper with the bytes already read. When most new",
        "connections come before their requests (7 in 10 at 16 connections here, 1 in 20 at 1), the",
        "socket defers accepting until a connection has data (TCP_DEFER_ACCEPT, nginx's `deferred`, off",
        "in nginx's default configuration used here) for a second at a time; a lone client keeps the",
        "accept that overlaps its writing. At 1 connection (b) is a ping-pong of wake-ups between wrk",
        "and the server across the two cores: its ratio moves",
        "by several percent from run to run. A p99.9 of 102 ms once seen in (b) at 256 connections was",
        "the listen queue: the runtime's default of 128 overflowed, the kernel dropped the handshake's",
        "last ACK (`TcpExtListenOverflows`) and the request waited for a retransmission (200 ms",
        "minimum). hostrole asks for 4096 (capped by `net.core.somaxconn`), as the packaged socket",
        "unit does through systemd's default `Backlog=`.",
        "",
        "## Memory and start-up",
        "",
        "| figure | hostrole | nginx (master + workers) |",
        "|---|---|---|",
        f"| RSS idle | {mib(r['rss_idle_kib']):.1f} MiB | {mib(r['nginx_rss_idle_kib']):.1f} MiB |",
        f"| RSS at 256 connections | {mib(r['rss_load_kib']):.1f} MiB (peak {mib(r['rss_peak_kib']):.1f} MiB) | {mib(r['nginx_rss_load_kib']):.1f} MiB |",
        f"| process start to first served credential (local issuer, median of 7) | {r['startup_ms']:.1f} ms | |",
        "",
        "## STS economy",
        "",
        f"A fake STS issues 20-second sessions and holds the refresh call for 3 s; meanwhile 1,000 clients",
        f"fetch credentials, 400 at a time (PUT token + GET document each; one user may hold 512",
        f"connections, past which its least recently active one is closed). {r['sts']['ok']} of "
        f"{r['sts']['fetches']} fetches got credentials; from the refresh moment to the end of the burst STS saw"
        f" **{r['sts']['sts_calls_during']}** call(s) (the refresh itself; the burst "
        f"{'ended while it was still in flight' if r['sts']['burst_within_refresh'] else 'outlasted it'}).",
        "",
        "## Fleet model",
        "",
        "`cargo bench --bench fleet` simulates a fleet running hostrole's own scheduling code",
        "(`next_refresh_delay`, `retry_delay`, the call budget, `restored_refresh_delay` for kept",
        "credentials) against both quotas a fleet meets, each modelled as the service's token bucket:",
        "",
        r["fleet"],
        "",
        "A cold boot costs one call per host whatever the session length; against Roles Anywhere's 10/s",
        "the boot wave is throttled and served over the following minutes (throttled calls count as calls).",
        "The first refresh after a start is spread over 90% of the time to the refresh by each host's",
        "machine id (never sooner than a tenth of it, so a start is not followed by a second call at once),",
        "so the steady state stays spread; with kept credentials a fleet-wide upgrade adds no call. The",
        "busiest second of random arrivals is several times their mean: the quota comparison uses the",
        "busiest minute, and the throttled column shows whether the token bucket ever refused a call.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| (a) throughput ≥ nginx at 16 connections | ratio {ratio('a', 16):.2f} | {'yes' if ratio('a', 16) >= 1.0 else 'no'} |",
        f"| (a) p99 under 1 ms at 16 connections, saturated | {a16h['percentiles']['99']:.0f} µs (nginx {a16n['percentiles']['99']:.0f} µs) | {'yes' if a16h['percentiles']['99'] < 1000 else 'no'} |",
        f"| (a) p99 under 1 ms at 16 connections, paced | {p16h['percentiles']['99']:.0f} µs | {'yes' if p16h['percentiles']['99'] < 1000 else 'no'} |",
        f"| RSS idle ≤ 10 MiB | {mib(r['rss_idle_kib']):.1f} MiB | {'yes' if r['rss_idle_kib'] <= 10 * 1024 else 'no'} |",
        f"| RSS at 256 connections ≤ 20 MiB | {mib(r['rss_peak_kib']):.1f} MiB peak | {'yes' if r['rss_peak_kib'] <= 20 * 1024 else 'no'} |",
        *sdk_and_tail_targets("hostrole", ""),
        *sdk_and_tail_targets("pinned", "with `pin-threads = true`: "),
        f"| one STS call for 1,000 concurrent fetches at the refresh moment | {r['sts']['sts_calls_during']} | {'yes' if r['sts']['sts_calls_during'] == 1 and r['sts']['burst_within_refresh'] else 'no'} |",
        "",
    ]
    with open(os.path.join(docs, "benchmarks.md"), "w") as f:
        f.write("\n".join(lines))
    print("wrote docs/benchmarks.md and docs/benchmarks-latency.png")


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, style in (("hostrole", "-o"), ("pinned", "-^"), ("nginx", "--s")):
        p = runs[("a", 16, name)]["percentiles"]
        keys = sorted(p, key=float)
        xs = [1 / (1 - float(k) / 100) for k in keys]
        label = "hostrole, pin-threads" if name == "pinned" else name
        ax.plot(xs, [p[k] for k in keys], style, label=label)
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - float(k) / 100) for k in ["50", "90", "99", "99.9", "99.99"]])
    ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
    ax.set_ylabel("latency (µs)")
    ax.set_title("keep-alive GET of the credential document, 16 connections")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
