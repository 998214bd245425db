"""The compatibility matrix: real AWS clients, each through its own default
credential chain, against a running hostrole, scenario by scenario.

usage: compat/matrix [--write docs/compatibility.md] [--only-clients a,b]
                     [--only-scenarios 1,2] [--logs DIR]
       compat/matrix --endpoint http://127.0.0.1:1338 [--role NAME]

Rows are scenarios (see SCENARIOS), columns are clients (see CLIENTS). Each
scenario starts its own daemon (target/debug/hostrole, built here if needed)
on loopback, or inside a network namespace this script creates and deletes.
A cell is PASS, FAIL, or LIMIT: a documented limitation of the client itself,
which is asserted like any other result (if the client stops behaving that
way, the cell fails and the matrix must be updated).

With --endpoint, only scenario 1 runs, against an endpoint you started.

HOSTROLE_BIN and HOSTROLE_COMPAT_PROBE name a prebuilt daemon and aws-config
probe to use instead of target/debug's; with the ones a run needs named,
nothing is built.

Exit status: 0 every cell PASS or LIMIT; 1 a cell failed; 2 bad usage or the
harness could not set up a scenario; 3 clients not installed (compat/install).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from .clients import Ctx, absent
from .config import CLIENTS, ROOT, SCENARIOS, TITLES, log
from .daemon import reference
from .fakes import StsSink
from .report import Cell, differences, table, write_doc
from .scenarios import RUNNERS, Matrix


def needs_build(endpoint, clients, env=None):
    """Whether `cargo build` must run: the daemon is needed unless --endpoint
    names one, the aws-config probe if the rust client runs; either one named
    by HOSTROLE_BIN / HOSTROLE_COMPAT_PROBE is used as it is."""
    env = os.environ if env is None else env
    return (endpoint is None and not env.get("HOSTROLE_BIN")) or \
        ("rust" in clients and not env.get("HOSTROLE_COMPAT_PROBE"))


def build():
    p = subprocess.run(["cargo", "build", "--quiet", "--locked", "--bin", "hostrole", "--example", "compat_probe"],
                       cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(2)


def bad_overrides():
    """The HOSTROLE_BIN / HOSTROLE_COMPAT_PROBE settings that name no executable file."""
    return ["%s=%s" % (k, os.environ[k]) for k in ("HOSTROLE_BIN", "HOSTROLE_COMPAT_PROBE")
            if os.environ.get(k) and not (os.path.isfile(os.environ[k]) and os.access(os.environ[k], os.X_OK))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", metavar="FILE", help="write the matrix as markdown to FILE")
    ap.add_argument("--check", metavar="FILE",
                    help="fail unless the outcomes and client versions are those FILE records "
                         "(docs/compatibility.md); the run's own doc goes to --write")
    ap.add_argument("--only-clients", help="comma-separated subset of: " + ",".join(CLIENTS))
    ap.add_argument("--only-scenarios", help="comma-separated subset of: " + ",".join(RUNNERS))
    ap.add_argument("--logs", help="keep every client's command, environment and output here")
    ap.add_argument("--endpoint", help="only scenario 1, against this running endpoint (loopback)")
    ap.add_argument("--role", help="with --endpoint: the role name the endpoint must list")
    a = ap.parse_args(argv)

    clients = a.only_clients.split(",") if a.only_clients else CLIENTS
    if set(clients) - set(CLIENTS):
        print("matrix: unknown client(s): %s" % ",".join(sorted(set(clients) - set(CLIENTS))), file=sys.stderr)
        return 2
    groups = a.only_scenarios.split(",") if a.only_scenarios else list(RUNNERS)
    if set(groups) - set(RUNNERS):
        print("matrix: unknown scenario(s): %s" % ",".join(sorted(set(groups) - set(RUNNERS))), file=sys.stderr)
        return 2
    if a.endpoint and not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/?$", a.endpoint):
        print("matrix: --endpoint must be http:// on loopback, got %r" % a.endpoint, file=sys.stderr)
        return 2
    if bad_overrides():
        print("matrix: not an executable file: %s" % ", ".join(bad_overrides()), file=sys.stderr)
        return 2
    missing = absent(clients, moto="4" in groups)
    if missing:
        print("matrix: not installed: %s (run compat/install)" % ", ".join(missing), file=sys.stderr)
        return 3
    if needs_build(a.endpoint, clients):
        build()

    tmp = tempfile.mkdtemp(prefix="hostrole-matrix.")
    logs = a.logs or os.path.join(tmp, "logs")
    os.makedirs(logs, exist_ok=True)
    m = Matrix(clients, logs, tmp, sink=StsSink())
    t0 = time.monotonic()
    harness_failed = False
    try:
        if a.endpoint:
            try:
                ref = reference(a.endpoint)
            except Exception as e:  # noqa: BLE001 - whatever the endpoint got wrong
                print("matrix: %s: %s" % (a.endpoint, e), file=sys.stderr)
                shutil.rmtree(tmp, ignore_errors=True)
                return 1
            if a.role and ref["role"] != a.role:
                print("matrix: the endpoint lists role %r, expected %r" % (ref["role"], a.role), file=sys.stderr)
                shutil.rmtree(tmp, ignore_errors=True)
                return 1
            m.simple("1", Ctx(tmp, logs, endpoint=a.endpoint, sink=m.sink), ref)
            groups = ["1"]
        else:
            for g in groups:
                log("matrix: scenario %s" % g)
                try:
                    RUNNERS[g](m)
                except Exception as e:  # noqa: BLE001 - a scenario that cannot be set up fails the run
                    harness_failed = True
                    for key, _ in SCENARIOS:
                        if key.rstrip("abcd") == g:
                            for c in clients:
                                m.cells.setdefault((key, c), Cell("FAIL", "scenario could not run: %s" % e))
    finally:
        m.sink.close()
    elapsed = time.monotonic() - t0
    scenarios = [s for s in SCENARIOS if s[0].rstrip("abcd") in groups]
    print(table(m, scenarios))
    bad = 0
    for key, _ in scenarios:
        for c in clients:
            cell = m.cells.get((key, c))
            if cell is None or cell.status == "FAIL":
                bad += 1
                print("FAIL %s / %s: %s" % (key, c, cell.detail if cell else "not run"))
    for c in clients:
        print("%s: %s" % (TITLES[c], m.versions.get(c, "?")))
    if a.write:
        write_doc(os.path.join(os.getcwd(), a.write) if not os.path.isabs(a.write) else a.write, m, scenarios, elapsed)
        print("wrote %s" % a.write)
    drift = []
    if a.check:
        with open(a.check) as f:
            recorded = f.read()
        drift = differences(recorded, table(m, scenarios) + "\n" + "\n".join(
            "- %s: %s" % (TITLES[c], m.versions.get(c, "?")) for c in clients))
        for line in drift:
            print("differs from %s: %s" % (a.check, line))
        if drift:
            print("matrix: the outcomes or client versions differ from %s: if the change is meant "
                  "(new pins, a fixed client), run compat/matrix --write %s and commit it" % (a.check, a.check))
    n = len(scenarios) * len(clients)
    print("matrix: %d cells, %d failed, %.0f s (logs: %s)" % (n, bad, elapsed, logs))
    if not bad:
        shutil.rmtree(tmp, ignore_errors=True)
    return 2 if harness_failed else (1 if bad or drift else 0)
