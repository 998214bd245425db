"""Scenario 8's parts: a CA and host certificate made by openssl, and the
verifying fake Roles Anywhere endpoint (compat/fake_rolesanywhere.py) over
HTTPS on loopback, with its own TLS CA."""
import json
import os
import subprocess

from .config import ACCOUNT, HERE, VENV

TRUST_ANCHOR_ARN = "arn:aws:rolesanywhere:eu-west-2:%s:trust-anchor/5c1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" % ACCOUNT
PROFILE_ARN = "arn:aws:rolesanywhere:eu-west-2:%s:profile/6a2b3c4d-5e6f-7a8b-9c0d-e1f2a3b4c5d6" % ACCOUNT


def openssl(*args):
    out = subprocess.run(["openssl"] + list(args), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args[:2]), out.stderr.strip()))


class Pki:
    """Keys and certificates in `dir`: a trust-anchor CA and the host's
    certificate issued by it, and a TLS CA with the fake's server certificate."""

    def __init__(self, dir):
        self.dir = dir
        self.anchor = self.ca("anchor")
        self.host = self.leaf("host", self.anchor, "basicConstraints=critical,CA:FALSE\n"
                              "keyUsage=critical,digitalSignature\n")
        self.tls_ca = self.ca("tls-ca")
        self.tls = self.leaf("tls", self.tls_ca, "basicConstraints=critical,CA:FALSE\n"
                             "keyUsage=critical,digitalSignature,keyEncipherment\n"
                             "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def key(self, name):
        path = self.path(name + ".key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        os.chmod(path, 0o600)
        return path

    def ca(self, name):
        key = self.key(name)
        cert = self.path(name + ".pem")
        openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=" + name, "-days", "2",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert)
        return cert, key

    def leaf(self, name, issuer, extensions):
        key = self.key(name)
        csr, cert, ext = self.path(name + ".csr"), self.path(name + ".pem"), self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write(extensions)
        openssl("req", "-new", "-key", key, "-subj", "/CN=" + name, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", issuer[0], "-CAkey", issuer[1], "-set_serial", "0x5A17",
                "-days", "2", "-sha256", "-extfile", ext, "-out", cert)
        return cert, key


class FakeRolesAnywhere:
    """The verifying fake on a free loopback port, over HTTPS."""

    def __init__(self, pki, logs):
        self.log = os.path.join(pki.dir, "rolesanywhere.jsonl")
        self.errors = open(os.path.join(logs, "fake-rolesanywhere.log"), "a")
        self.proc = subprocess.Popen(
            [os.path.join(VENV, "bin", "python"), os.path.join(HERE, "fake_rolesanywhere.py"),
             "--ca", pki.anchor[0], "--trust-anchor-arn", TRUST_ANCHOR_ARN, "--profile-arn", PROFILE_ARN,
             "--region", "eu-west-2", "--tls-cert", pki.tls[0], "--tls-key", pki.tls[1], "--log", self.log],
            stdout=subprocess.PIPE, stderr=self.errors, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.close()
            raise RuntimeError("the fake Roles Anywhere endpoint did not start: %r" % line)
        self.url = "https://127.0.0.1:%s" % line.split()[-1]

    def calls(self):
        try:
            with open(self.log) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.errors.close()
