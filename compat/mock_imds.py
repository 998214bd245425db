#!/usr/bin/env python3
"""Throwaway IMDSv2 mock for testing compat/matrix --endpoint without the real daemon.

Usage: compat/mock_imds.py [--listen 127.0.0.1:1338] [--role demo] [--allow-v1]
Serves only what the AWS default credential chains and compat/matrix --endpoint ask for.
Loopback only; prints "listening on http://HOST:PORT" once ready.
"""
import argparse
import datetime
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
TOKENS = {}  # token -> expiry (monotonic)
LOCK = threading.Lock()
AKID = "ASIA" + secrets.token_hex(8).upper()
SECRET = secrets.token_urlsafe(30)
SESSION = secrets.token_urlsafe(120)


def iso(t):
    if ARGS.fault == "offset-times":
        return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-imds"

    def log_message(self, fmt, *a):
        if not ARGS.quiet:
            sys.stderr.write("mock-imds: %s %s\n" % (self.address_string(), fmt % a))

    def reply(self, code, body=b"", ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if self.path != "/latest/api/token":
            return self.reply(403)
        if "X-Forwarded-For" in self.headers:
            return self.reply(400)
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.reply(400)
        tok = secrets.token_urlsafe(42)
        with LOCK:
            TOKENS[tok] = time.monotonic() + int(ttl)
        hdrs = [] if ARGS.fault == "no-ttl-header" else [("X-aws-ec2-metadata-token-ttl-seconds", ttl)]
        self.reply(200, tok, headers=hdrs)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        self.reply(405)

    do_DELETE = do_PATCH = do_POST

    def do_GET(self):
        tok = self.headers.get("X-aws-ec2-metadata-token")
        if tok is not None:
            with LOCK:
                exp = TOKENS.get(tok)
            if exp is None or exp < time.monotonic():
                return self.reply(401)
        elif not ARGS.allow_v1:
            return self.reply(401)
        path = self.path.split("?", 1)[0]
        while "//" in path:
            path = path.replace("//", "/")
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        role = ARGS.role
        if path in ("/latest/meta-data/iam/security-credentials",
                    "/latest/meta-data/iam/security-credentials/"):
            return self.reply(200, role)
        if path.rstrip("/") == "/latest/meta-data/iam/security-credentials/" + role:
            doc = {"Code": "Success", "LastUpdated": iso(now), "Type": "AWS-HMAC",
                   "AccessKeyId": AKID, "SecretAccessKey": SECRET, "Token": SESSION,
                   "Expiration": iso(now + datetime.timedelta(
                       hours=-1 if ARGS.fault == "expired" else 1))}
            return self.reply(200, json.dumps(doc), "application/json")
        if path == "/latest/meta-data/placement/region":
            return self.reply(200, ARGS.region)
        if path.rstrip("/") == "/latest/meta-data/placement/availability-zone":
            return self.reply(200, ARGS.region + "a")
        if path == "/latest/meta-data/instance-id":
            return self.reply(200, "i-0123456789abcdef0")
        if path == "/latest/dynamic/instance-identity/document":
            doc = {"accountId": "123456789012", "architecture": "x86_64",
                   "availabilityZone": ARGS.region + "a", "imageId": "ami-00000000",
                   "instanceId": "i-0123456789abcdef0", "instanceType": "t3.micro",
                   "pendingTime": iso(now), "privateIp": "127.0.0.1",
                   "region": ARGS.region, "version": "2017-09-30"}
            return self.reply(200, json.dumps(doc, indent=2), "application/json")
        self.reply(404)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:1338")
    p.add_argument("--role", default="demo")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--allow-v1", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--fault", choices=["no-ttl-header", "offset-times", "expired"],
                   help="misbehave on purpose, to see that compat/matrix --endpoint notices")
    ARGS = p.parse_args()
    host, port = ARGS.listen.rsplit(":", 1)
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        sys.exit("mock-imds: loopback addresses only")
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    print("listening on http://%s:%d" % srv.server_address[:2], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
