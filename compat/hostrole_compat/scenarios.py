"""The scenarios: each a function of the run (a Matrix) that starts its own
daemon, runs every client against it and fills in the run's cells. RUNNERS
maps each scenario group of config.SCENARIOS to its function."""
import os
import re
import tempfile

from .clients import Ctx, open_session
from .config import ACCOUNT, IMDS_ADDR, IMDS_ADDR6, REGION, ROLE_A, ROLE_B, ZONE, LIMITS
from .daemon import Daemon, Netns, reference, start_moto, wait_reference
from .fakes import ForceV1Proxy
from .rolesanywhere import PROFILE_ARN, TRUST_ANCHOR_ARN, FakeRolesAnywhere, Pki
from .report import CONTAINER_SOURCES, Cell, got_served, limit_or, no_credentials


class Matrix:
    """One run: its clients, the cells and client versions it found so far,
    and the STS look-alike (`sink`) that CLI v1 signs its calls to."""

    def __init__(self, clients, logs, tmp, sink=None):
        self.clients, self.logs, self.tmp, self.sink = clients, logs, tmp, sink
        self.cells = {}
        self.versions = {}

    def state(self, name):
        d = tempfile.mkdtemp(prefix="state-%s." % name, dir=self.tmp)
        os.chmod(d, 0o700)
        return d

    def sessions(self, ctx, steps):
        out = {}
        for c in self.clients:
            out[c] = open_session(c, ctx, steps)
        return out

    def step_all(self, sessions):
        res = {}
        for c, s in sessions.items():
            r = s.step()
            res[c] = r
            ver = r.get("version") or getattr(s, "version", None)
            if ver:
                self.versions[c] = ver
        return res

    def close_all(self, sessions):
        for s in sessions.values():
            s.close()

    def run_once(self, ctx):
        """Each client once, in a session of its own; the results by client."""
        sessions = self.sessions(ctx, 1)
        try:
            return self.step_all(sessions)
        finally:
            self.close_all(sessions)

    def limited(self, key, c, v):
        """For a client with a documented limitation here (config.LIMITS) that
        leaves it with no credentials: its cell, LIMIT if it got none and says
        so, else FAIL. False for any other client."""
        if (key, c) not in LIMITS:
            return False
        self.cells[(key, c)] = limit_or(key, c, no_credentials(v), "got key %s" % v.get("akid"),
                                        "it reports: %s" % " ".join((v.get("error") or "").split())[:120])
        return True

    def simple(self, key, ctx, ref, check=None, sources=None):
        """One fetch per client; the cell passes if it gets what `ref` serves
        (and what `check` asks of the result, if given), from a provider
        named in `sources` (the instance role's by default)."""
        for c, r in self.run_once(ctx).items():
            v = r["fresh"]
            if self.limited(key, c, v):
                continue
            if c == "awscli-v1" and ctx.sts:
                # CLI v1 cannot print its key id; against a real STS, `check`
                # judges the keys by the signed call's answer
                why = v.get("error")
                how = "no key id shown (CLI v1)"
            else:
                why = got_served(v, ref, sources) if sources else got_served(v, ref)
                how = "got the served key id, session token and expiry" if v.get("akid") else \
                    "got the served key (`aws configure list` shows its last 4 characters, type iam-role)"
            if check and not why:
                why = check(c, v)
            if v.get("arn"):
                how += "; GetCallerIdentity says %s" % v["arn"]
            self.cells[(key, c)] = Cell("FAIL", why) if why else Cell("PASS", how)


def scenario_1(m):
    """IMDSv2 required, the endpoint from AWS_EC2_METADATA_SERVICE_ENDPOINT."""
    d = Daemon(m.state("1"), ["--issuer", "local", "--role-arn", ROLE_A], logs=m.logs, name="1")
    try:
        ref = reference(d.url)
        m.simple("1", Ctx(m.tmp, m.logs, endpoint=d.url, sink=m.sink), ref)
    finally:
        d.stop()


def scenario_2(m):
    """IMDSv1 allowed: 2a, the client's default (v2) path; 2b, the client
    forced onto v1 by a proxy that refuses the token PUT with 403."""
    d = Daemon(m.state("2"), ["--issuer", "local", "--role-arn", ROLE_A, "--imds-v1", "allowed"],
               logs=m.logs, name="2")
    proxy = None
    try:
        ref = reference(d.url)
        m.simple("2a", Ctx(m.tmp, m.logs, endpoint=d.url, sink=m.sink), ref)
        proxy = ForceV1Proxy(d.url)
        ctx = Ctx(m.tmp, m.logs, endpoint=proxy.url, sink=m.sink)
        for c in m.clients:
            s = open_session(c, ctx, 1)
            before = (proxy.token_puts, proxy.gets_without_token, proxy.gets_with_token)
            try:
                r = m.step_all({c: s})[c]
            finally:
                s.close()
            puts = proxy.token_puts - before[0]
            v1_gets = proxy.gets_without_token - before[1]
            v2_gets = proxy.gets_with_token - before[2]
            v = r["fresh"]
            why = got_served(v, ref)
            if ("2b", c) in LIMITS:
                failed_cleanly = bool(v.get("error")) and not v.get("akid") and v1_gets == 0
                m.cells[("2b", c)] = limit_or(
                    "2b", c, failed_cleanly, "got %s with %d v1 GETs" % (v.get("akid"), v1_gets),
                    "after a 403 on the token PUT it reports: %s" % (v.get("error") or "")[:120])
                continue
            if not why and v1_gets == 0:
                why = "no tokenless GET reached the endpoint: the client did not use v1"
            if not why and puts == 0:
                why = "the client never tried the token PUT"
            m.cells[("2b", c)] = Cell("FAIL", why) if why else Cell(
                "PASS", "got the served key over v1 (token PUT refused %d time(s), then GETs without a token)"
                % puts)
    finally:
        if proxy:
            proxy.close()
        d.stop()


def scenario_3(m):
    """The default endpoint with no variable: the daemon on 169.254.169.254:80
    in a network namespace the run creates and deletes."""
    with Netns() as ns:
        d = None
        try:
            d = Daemon(m.state("3"), ["--issuer", "local", "--role-arn", ROLE_A, "--region", REGION],
                       netns=ns.name, listen=IMDS_ADDR + ":80", logs=m.logs, name="3")
            ref = reference("http://" + IMDS_ADDR, ns.prefix())
            # CLI v1 signs its call to the sink, which is on the host's loopback:
            # in the namespace it would be unreachable, so v1 shows its key via configure list.
            m.simple("3", Ctx(m.tmp, m.logs, netns=ns.name), ref)
        finally:
            if d:
                d.stop()


def scenario_4(m):
    """`--issuer sts` at moto: the served keys sign sts:GetCallerIdentity."""
    moto_proc, moto = start_moto()
    base = {"AWS_ACCESS_KEY_ID": "AKIDHOSTBASE00000000", "AWS_SECRET_ACCESS_KEY": "base-secret-for-moto",
            "AWS_REGION": "us-east-1"}
    d = None
    try:
        d = Daemon(m.state("4"), ["--issuer", "sts", "--sts-endpoint", moto, "--role-arn", ROLE_A,
                                  "--session-name", "compat"], env=base, logs=m.logs, name="4")
        # the first AssumeRole may outlast the daemon's start-up grace under load
        ref = wait_reference(d.url, "demo")
        want = "arn:aws:sts::%s:assumed-role/demo/compat" % ACCOUNT

        def check(c, v):
            if v.get("sts_error"):
                return "GetCallerIdentity: " + v["sts_error"]
            if v.get("arn") != want:
                return "GetCallerIdentity says %r, expected %s" % (v.get("arn"), want)
            return None

        m.simple("4", Ctx(m.tmp, m.logs, endpoint=d.url, sts=moto), ref, check)
    finally:
        if d:
            d.stop()
        moto_proc.kill()
        moto_proc.wait()


def scenario_5(m):
    """The region from IMDS, with no region configured in the client."""
    d = Daemon(m.state("5"), ["--issuer", "local", "--role-arn", ROLE_A, "--region", REGION,
                                 "--availability-zone", ZONE], logs=m.logs, name="5")
    try:
        ctx = Ctx(m.tmp, m.logs, endpoint=d.url, region=False, sink=m.sink)
        for c, r in m.run_once(ctx).items():
            v = r["fresh"]
            # async-aws says when its region is only its built-in default
            region = None if v.get("region_default") else (v.get("region") or None)
            if ("5", c) in LIMITS:
                m.cells[("5", c)] = limit_or("5", c, region is None, "resolved region %r" % region,
                                                "resolved region: none")
            elif region == REGION:
                src = " (configure list: %s)" % v["region_source"] if v.get("region_source") else ""
                m.cells[("5", c)] = Cell("PASS", "region %s%s" % (region, src))
            else:
                m.cells[("5", c)] = Cell("FAIL", "resolved region %r, endpoint serves %s" % (region, REGION))
    finally:
        d.stop()


def scenario_6(m):
    """`replace` and `disassociate` under running clients: 6a, a client that
    asks again gets the new role; 6b, one that asks after disassociate fails
    cleanly with no credentials."""
    d = Daemon(m.state("6"), ["--issuer", "local", "--role-arn", ROLE_A], logs=m.logs, name="6")
    try:
        ctx = Ctx(m.tmp, m.logs, endpoint=d.url, sink=m.sink)
        sessions = m.sessions(ctx, 3)
        try:
            ref_a = reference(d.url)
            r0 = m.step_all(sessions)
            d.ctl("replace", ROLE_B)
            ref_b = wait_reference(d.url, "other")
            r1 = m.step_all(sessions)
            d.ctl("disassociate")
            wait_reference(d.url, None)
            r2 = m.step_all(sessions)
        finally:
            m.close_all(sessions)
        for c in m.clients:
            # `&`, not `and`: both cells are filled in
            if m.limited("6a", c, r1[c]["fresh"]) & m.limited("6b", c, r2[c]["fresh"]):
                continue
            first = got_served(r0[c]["fresh"], ref_a)
            why = first and "before replace: " + first
            why = why or got_served(r1[c]["fresh"], ref_b)
            held = r1[c].get("held")
            held_txt = ""
            if held:
                held_txt = "; a provider held from before still returns the old key until it refreshes" \
                    if held.get("akid") == ref_a["akid"] else "; a provider held from before gets %s" % (
                    "the new key too" if held.get("akid") == ref_b["akid"] else held.get("error"))
            m.cells[("6a", c)] = Cell("FAIL", why) if why else Cell(
                "PASS", "a new chain in the same process gets the new role's key%s" % held_txt)
            v, took = r2[c]["fresh"], r2[c]["took"]
            if v.get("akid"):
                why = "after disassociate it still got key %s" % v["akid"]
            elif not v.get("error"):
                why = "no error and no credentials"
            elif not re.search(r"credential|no ec2 imds role|not found|404|roleName request returned error",
                               v["error"], re.I):
                why = "unexpected error: " + v["error"]
            elif took > 10:
                why = "took %.1f s to fail" % took
            else:
                why = None
            held = r2[c].get("held")
            held_txt = ""
            if held and held.get("akid"):
                held_txt = "; a provider held from before still returns the old key (%s)" % (
                    "aws-config's IMDS provider returns its last credentials when a fetch fails"
                    if c == "rust" else "cached by the SDK until near its expiry")
            elif held:
                held_txt = "; a provider held from before fails too"
            m.cells[("6b", c)] = Cell("FAIL", why) if why else Cell(
                "PASS", "fails promptly: %s%s" % (" ".join(v["error"].split())[:140], held_txt))
    finally:
        d.stop()


def scenario_7(m):
    """A daemon restart between two fetches of one long-lived client process."""
    d = Daemon(m.state("7"), ["--issuer", "local", "--role-arn", ROLE_A], logs=m.logs, name="7")
    try:
        ctx = Ctx(m.tmp, m.logs, endpoint=d.url, sink=m.sink)
        sessions = m.sessions(ctx, 2)
        try:
            ref0 = reference(d.url)
            r0 = m.step_all(sessions)
            d.restart()
            ref1 = reference(d.url)
            r1 = m.step_all(sessions)
        finally:
            m.close_all(sessions)
        for c in m.clients:
            if m.limited("7", c, r1[c]["fresh"]):
                continue
            why = got_served(r0[c]["fresh"], ref0)
            why = why and "before restart: " + why
            why = why or got_served(r1[c]["fresh"], ref1)
            held = r1[c].get("held")
            if not why and held is not None:
                if held.get("error"):
                    why = "the long-lived provider failed after the restart: " + held["error"]
                elif c == "rust" and held.get("akid") != ref1["akid"]:
                    why = "the long-lived provider (kept token) returned %s, not the new key %s" % (
                        held.get("akid"), ref1["akid"])
            detail = "one process: after the restart a new chain gets the new key"
            if c == "rust":
                detail += ", and the held provider fetches it too (a real fetch, not a cache)"
            elif held:
                detail += "; the held provider keeps its cached key, without error"
            if c.startswith("awscli"):
                detail = "a process per call (the CLI): the call after the restart gets the new key"
            m.cells[("7", c)] = Cell("FAIL", why) if why else Cell("PASS", detail)
    finally:
        d.stop()


def scenario_8(m):
    """`--issuer roles-anywhere`: the daemon holds a certificate, no access
    key, and exchanges it at a fake endpoint that verifies the SigV4-X509
    signature with Python cryptography; every client gets what it issued,
    from one CreateSession in all."""
    pki = Pki(tempfile.mkdtemp(prefix="pki.", dir=m.tmp))
    fake = FakeRolesAnywhere(pki, m.logs)
    d = None
    try:
        d = Daemon(m.state("8"), ["--issuer", "roles-anywhere", "--role-arn", ROLE_A, "--region", REGION,
                                  "--certificate", pki.host[0], "--private-key", pki.host[1],
                                  "--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN,
                                  "--roles-anywhere-endpoint", fake.url],
                   env={"SSL_CERT_FILE": pki.tls_ca[0], "NO_PROXY": "127.0.0.1"}, logs=m.logs, name="8")
        ref = wait_reference(d.url, "demo")

        def check(c, v):
            calls = fake.calls()
            ok = [x for x in calls if x.get("outcome") == "ok"]
            if len(calls) != 1 or len(ok) != 1:
                return "expected one verified CreateSession in all, the fake saw %r" % calls
            if ok[0]["access_key_id"] != ref["akid"] or ok[0]["serial"] != str(0x5A17):
                return "the served key is not the one issued to the host's certificate: %r" % ok[0]
            return None

        m.simple("8", Ctx(m.tmp, m.logs, endpoint=d.url, sink=m.sink), ref, check)
        for c in m.clients:
            cell = m.cells[("8", c)]
            if cell.status == "PASS":
                cell.detail += "; issued by one ECDSA-signed CreateSession the fake verified"
    finally:
        if d:
            d.stop()
        fake.close()


# Clients that ask the container endpoint but read no token file: 401.
SENDS_NO_TOKEN_FROM_A_FILE = {"awscli-v2", "go-v2", "go-v1"}
# What the daemon logs for such a request.
NO_TOKEN = "refused: no Authorization token"


def container_ctx(m, url, token_file=None, token=None):
    """Clients with only the container provider to find credentials: its
    variables set (the token in a file, in the environment, or both), IMDS
    disabled and, should a client ask it anyway, pointed at a loopback port
    where nothing listens."""
    extra = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": url, "AWS_EC2_METADATA_DISABLED": "true"}
    if token_file:
        extra["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = token_file
    if token:
        extra["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    return Ctx(m.tmp, m.logs, endpoint="http://127.0.0.1:9", sink=m.sink, extra=extra)


def token_file(m, name, token):
    """A token file as a consumer gets it: the token with no newline (botocore,
    Go and Rust refuse a token that ends in one)."""
    path = os.path.join(tempfile.mkdtemp(prefix="token.", dir=m.tmp), name)
    with open(path, "w") as f:
        f.write(token)
    os.chmod(path, 0o644)
    return path


def refused_cleanly(m, key, d, ctx, what, logged):
    """Each client alone, so that the daemon's refusal lines (`logged`) are
    its own: a cell passes when the client got no key, failed within 15 s,
    and the daemon refused it with 403 (some clients report only that no
    provider had credentials)."""
    for c in m.clients:
        before = d.log_text().count(logged)
        s = open_session(c, ctx, 1)
        try:
            r = m.step_all({c: s})[c]
        finally:
            s.close()
        refusals = d.log_text().count(logged) - before
        v, took = r["fresh"], r["took"]
        if (key, c) in LIMITS:  # a client that never asks the container endpoint
            m.cells[(key, c)] = limit_or(key, c, no_credentials(v) and refusals == 0,
                                         "got key %s, %d refusal(s)" % (v.get("akid"), refusals),
                                         "it asked nothing and got no credentials")
            continue
        if v.get("akid"):
            why = "%s, it still got key %s" % (what, v["akid"])
        elif not v.get("error"):
            why = "no error and no credentials"
        elif refusals == 0:
            why = "the daemon logged no %r refusal for it: %s" % (logged, v["error"][:200])
        elif took > 15:
            why = "took %.1f s to fail" % took
        else:
            why = None
        m.cells[(key, c)] = Cell("FAIL", why) if why else Cell(
            "PASS", "refused with 403 (%d request(s)); the client says: %s" % (
                refusals, " ".join(v["error"].split())[:140]))


def scenario_9(m):
    """The container credentials endpoint (--container-listen) through each
    client's own container provider and AWS_CONTAINER_CREDENTIALS_FULL_URI:
    9a a consumer's token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, 9d in
    AWS_CONTAINER_AUTHORIZATION_TOKEN, each gets the role; 9b a wrong token
    and 9c a revoked one (in both) get a 403 and nothing else."""
    d = Daemon(m.state("9"), ["--issuer", "local", "--role-arn", ROLE_A,
                              "--container-listen", "127.0.0.1:0"], logs=m.logs, name="9")
    try:
        url = d.container_url()
        ref = reference(d.url)
        token = d.ctl("container-token", "create", "app").strip()
        good = token_file(m, "app", token)
        ctx = container_ctx(m, url, token_file=good)
        for c in m.clients:  # each alone, so that the daemon's refusals are its own
            before = d.log_text().count(NO_TOKEN)
            s = open_session(c, ctx, 1)
            try:
                v = m.step_all({c: s})[c]["fresh"]
            finally:
                s.close()
            unsent = d.log_text().count(NO_TOKEN) - before
            if ("9a", c) in LIMITS:
                asked = c in SENDS_NO_TOKEN_FROM_A_FILE
                m.cells[("9a", c)] = limit_or(
                    "9a", c, no_credentials(v) and (unsent > 0) == asked,
                    "got %s, %d request(s) without a token" % (v.get("akid"), unsent),
                    "the daemon refused %d request(s) without a token" % unsent if asked else
                    "it asked nothing and got no credentials")
                continue
            why = got_served(v, ref, CONTAINER_SOURCES)
            m.cells[("9a", c)] = Cell("FAIL", why) if why else Cell(
                "PASS", "got the served key from the container endpoint with the token file")
        m.simple("9d", container_ctx(m, url, token=token), ref, sources=CONTAINER_SOURCES)
        wrong = "hrct-" + "A" * 43
        refused_cleanly(m, "9b", d, container_ctx(m, url, token_file(m, "wrong", wrong), wrong),
                        "with a wrong token", "refused: unknown token")
        d.ctl("container-token", "revoke", "app")
        refused_cleanly(m, "9c", d, container_ctx(m, url, good, token), "after revoke",
                        "refused: the consumer's token is revoked")
    finally:
        d.stop()


def scenario_10(m):
    """IPv6 endpoint mode: the daemon on [fd00:ec2::254]:80 in a network
    namespace the run creates and deletes, and every client told only
    AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6."""
    with Netns(IMDS_ADDR6) as ns:
        d = None
        try:
            d = Daemon(m.state("10"), ["--issuer", "local", "--role-arn", ROLE_A, "--region", REGION],
                       netns=ns.name, listen="[%s]:80" % IMDS_ADDR6, logs=m.logs, name="10")
            ref = reference("http://[%s]" % IMDS_ADDR6, ns.prefix())
            ctx = Ctx(m.tmp, m.logs, netns=ns.name, extra={"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"})
            m.simple("10", ctx, ref)
        finally:
            if d:
                d.stop()


# Scenario group -> its function; a row "2a" or "2b" of config.SCENARIOS is
# filled in by group "2".
RUNNERS = {
    "1": scenario_1,
    "2": scenario_2,
    "3": scenario_3,
    "4": scenario_4,
    "5": scenario_5,
    "6": scenario_6,
    "7": scenario_7,
    "8": scenario_8,
    "9": scenario_9,
    "10": scenario_10,
}
