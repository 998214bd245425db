#!/usr/bin/env python3
"""A fake IAM Roles Anywhere endpoint that checks what the real one checks.

It verifies a CreateSession request independently of hostrole's own code,
with Python's `cryptography`: it rebuilds SigV4-X509's canonical request
from the bytes received, checks the signature with the certificate's public
key (RSA PKCS#1 v1.5 or ECDSA, over SHA-256), the certificate's chain up to
one of the trust-anchor CAs (each link's signature and validity), the
Credential's serial number and scope, and the request date's skew. It
answers in the real response shape.

Usage:
  fake_rolesanywhere.py --ca CA.pem [--ca ...] --trust-anchor-arn ARN
                        [--profile-arn ARN] [--region R] [--port N]
                        [--tls-cert C --tls-key K] [--log FILE]
                        [--mode ok|throttle|denied|error|slow|empty]
                        [--slow-seconds S] [--expires-in S]

It prints "listening on PORT" once ready. Modes can be changed while it
runs: POST /__fake/mode with the mode's name as the body. "throttle"
answers 429 ThrottlingException with "Retry-After: 41". Every CreateSession
is written to --log as one JSON line (outcome, serial, role, algorithm,
instance properties, session name), never with a secret.
"""

import argparse
import base64
import datetime as dt
import hashlib
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

MAX_SKEW = dt.timedelta(minutes=5)
MODES = ("ok", "throttle", "denied", "error", "slow", "empty")


class Refused(Exception):
    def __init__(self, status, kind, message, retry_after=None):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.retry_after = retry_after


def uri_encode(s):
    return urllib.parse.quote(s, safe="-_.~")


def canonical_query(raw):
    pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
    return "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(pairs))


def now_utc():
    return dt.datetime.now(dt.timezone.utc)


def parse_authorization(value):
    alg, _, rest = value.partition(" ")
    fields = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        return alg, fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as e:
        raise Refused(403, "AccessDeniedException", f"Authorization lacks {e}")


def check_validity(cert, at, what):
    if not (cert.not_valid_before_utc <= at < cert.not_valid_after_utc):
        raise Refused(403, "AccessDeniedException", f"Untrusted certificate. {what} is not valid now")


class Verifier:
    def __init__(self, cas, region):
        self.cas = cas
        self.region = region

    def chain_to_anchor(self, leaf, intermediates, at):
        current = leaf
        pool = list(intermediates)
        for _ in range(len(pool) + 1):
            for ca in self.cas:
                if self.issued_by(current, ca):
                    check_validity(ca, at, "the trust anchor")
                    return
            parent = next((c for c in pool if self.issued_by(current, c)), None)
            if parent is None:
                break
            check_validity(parent, at, "an intermediate")
            pool.remove(parent)
            current = parent
        raise Refused(403, "AccessDeniedException", "Untrusted certificate. Insufficient certificate")

    @staticmethod
    def issued_by(cert, issuer):
        try:
            cert.verify_directly_issued_by(issuer)
            return True
        except (ValueError, TypeError, InvalidSignature):
            return False

    def verify(self, method, path, query, headers, body):
        auth = headers.get("authorization")
        if not auth:
            raise Refused(403, "AccessDeniedException", "Missing Authorization")
        alg, credential, signed, signature = parse_authorization(auth)
        serial, _, scope = credential.partition("/")
        date, region, service, terminator = (scope.split("/") + ["", "", "", ""])[:4]
        amz_date = headers.get("x-amz-date", "")
        try:
            when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise Refused(403, "AccessDeniedException", "X-Amz-Date is missing or malformed")
        if abs(now_utc() - when) > MAX_SKEW:
            raise Refused(403, "AccessDeniedException", "Signature expired: the request date is too far from now")
        if date != amz_date[:8] or service != "rolesanywhere" or terminator != "aws4_request":
            raise Refused(403, "AccessDeniedException", f"Credential scope {scope!r} is wrong")
        if region != self.region:
            raise Refused(403, "AccessDeniedException", f"Credential should be scoped to region {self.region}")
        names = signed.split(";")
        for needed in ("host", "x-amz-date", "x-amz-x509"):
            if needed not in names:
                raise Refused(403, "AccessDeniedException", f"{needed} is not signed")
        if "x-amz-x509-chain" in headers and "x-amz-x509-chain" not in names:
            raise Refused(403, "AccessDeniedException", "x-amz-x509-chain is not signed")
        try:
            leaf = x509.load_der_x509_certificate(base64.b64decode(headers["x-amz-x509"], validate=True))
            chain = [
                x509.load_der_x509_certificate(base64.b64decode(c, validate=True))
                for c in headers.get("x-amz-x509-chain", "").split(",")
                if c
            ]
        except (ValueError, KeyError) as e:
            raise Refused(403, "AccessDeniedException", f"X-Amz-X509 is not a certificate: {e}")
        if str(leaf.serial_number) != serial:
            raise Refused(403, "AccessDeniedException", "Credential does not name the certificate's serial number")
        at = now_utc()
        check_validity(leaf, at, "the certificate")
        self.chain_to_anchor(leaf, chain, at)

        canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
        canonical_request = "\n".join(
            [method, path, canonical_query(query), canonical_headers, signed, hashlib.sha256(body).hexdigest()]
        )
        string_to_sign = "\n".join(
            [alg, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
        ).encode()
        key = leaf.public_key()
        try:
            raw = bytes.fromhex(signature)
            if alg == "AWS4-X509-RSA-SHA256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(raw, string_to_sign, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "AWS4-X509-ECDSA-SHA256" and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(raw, string_to_sign, ec.ECDSA(hashes.SHA256()))
            else:
                raise Refused(403, "AccessDeniedException", f"{alg} does not fit the certificate's key")
        except (InvalidSignature, ValueError):
            raise Refused(403, "AccessDeniedException", "Signature does not match")
        return leaf, alg


class Fake:
    def __init__(self, args):
        cas = []
        for path in args.ca:
            with open(path, "rb") as f:
                cas.extend(x509.load_pem_x509_certificates(f.read()))
        self.verifier = Verifier(cas, args.region)
        self.trust_anchor_arn = args.trust_anchor_arn
        self.profile_arn = args.profile_arn
        self.max_duration = args.profile_max_duration
        self.mode = args.mode
        self.slow_seconds = args.slow_seconds
        self.expires_in = args.expires_in
        self.log_path = args.log
        self.lock = threading.Lock()

    def record(self, entry):
        if not self.log_path:
            return
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def create_session(self, handler, path, query, headers, body):
        entry = {"mode": self.mode}
        claimed = headers.get("authorization", "").partition("Credential=")[2].partition("/")[0]
        entry["claimed_serial"] = claimed
        try:
            leaf, alg = self.verifier.verify("POST", path, query, headers, body)
            entry.update(serial=str(leaf.serial_number), algorithm=alg)
            try:
                doc = json.loads(body or b"{}")
            except ValueError:
                raise Refused(400, "ValidationException", "The body is not JSON")
            params = dict(urllib.parse.parse_qsl(query))
            for k in ("profileArn", "roleArn", "trustAnchorArn"):
                params.setdefault(k, doc.get(k))
            entry.update(
                role=params["roleArn"],
                instance_properties=doc.get("instanceProperties"),
                role_session_name=doc.get("roleSessionName"),
                duration=doc.get("durationSeconds"),
            )
            if params["trustAnchorArn"] != self.trust_anchor_arn:
                raise Refused(403, "AccessDeniedException", "Untrusted certificate. Unknown trust anchor")
            if self.profile_arn and params["profileArn"] != self.profile_arn:
                raise Refused(404, "ResourceNotFoundException", "Profile not found")
            if not params["roleArn"] or ":role/" not in params["roleArn"]:
                raise Refused(400, "ValidationException", "roleArn is not a role")
            duration = int(doc.get("durationSeconds") or 3600)
            if not 900 <= duration <= 43200:
                raise Refused(400, "ValidationException", "durationSeconds out of range")
            mode = self.mode
            if mode == "throttle":
                raise Refused(429, "ThrottlingException", "Rate exceeded", retry_after="41")
            if mode == "denied":
                raise Refused(403, "AccessDeniedException", "Unable to assume role for the given profile")
            if mode == "error":
                raise Refused(500, "InternalServerException", "Internal failure")
            if mode == "slow":
                time.sleep(self.slow_seconds)
            duration = self.expires_in or min(duration, self.max_duration)
            expiration = (now_utc() + dt.timedelta(seconds=duration)).replace(microsecond=0)
            key_id = "ASIA" + secrets.token_hex(8).upper()
            entry.update(outcome="ok", access_key_id=key_id)
            credential_set = [] if mode == "empty" else [{
                "assumedRoleUser": {
                    "arn": params["roleArn"].replace(":iam:", ":sts:").replace(":role/", ":assumed-role/") + "/" + str(leaf.serial_number),
                    "assumedRoleId": "AROA" + secrets.token_hex(8).upper() + ":" + str(leaf.serial_number),
                },
                "credentials": {
                    "accessKeyId": key_id,
                    "secretAccessKey": secrets.token_urlsafe(30),
                    "sessionToken": secrets.token_urlsafe(120),
                    "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "packedPolicySize": 0,
                "roleArn": params["roleArn"],
                "sourceIdentity": leaf.subject.rfc4514_string(),
            }]
            self.record(entry)
            handler.answer(201, {"credentialSet": credential_set, "subjectArn": self.trust_anchor_arn.rsplit(":", 1)[0] + ":subject/" + secrets.token_hex(8)})
        except Refused as r:
            entry.update(outcome="refused", status=r.status, error=r.message)
            self.record(entry)
            handler.answer(r.status, {"message": r.message}, error_type=r.kind, retry_after=r.retry_after)


def make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, doc, error_type=None, retry_after=None):
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if error_type:
                self.send_header("x-amzn-ErrorType", error_type)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path, _, query = self.path.partition("?")
            if path == "/__fake/mode":
                mode = body.decode().strip()
                if mode not in MODES:
                    return self.answer(400, {"message": f"modes: {MODES}"})
                fake.mode = mode
                return self.answer(200, {"mode": mode})
            if path != "/sessions":
                return self.answer(404, {"message": "no such operation"}, "UnknownOperationException")
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.create_session(self, path, query, headers, body)

    return Handler


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ca", action="append", required=True, help="trust anchor CA certificate(s), PEM")
    p.add_argument("--trust-anchor-arn", required=True)
    p.add_argument("--profile-arn")
    p.add_argument("--region", default="eu-west-1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--log")
    p.add_argument("--mode", choices=MODES, default="ok")
    p.add_argument("--slow-seconds", type=float, default=30.0)
    p.add_argument("--profile-max-duration", type=int, default=3600)
    p.add_argument("--expires-in", type=int, default=0,
                   help="credentials expire this many seconds after issue, whatever was asked "
                        "(to see refreshes within a test)")
    args = p.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Fake(args)))
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
