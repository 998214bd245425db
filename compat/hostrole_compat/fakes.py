"""Loopback stand-ins some scenarios put beside the daemon: a proxy that
forces clients onto IMDSv1, and an STS look-alike that shows CLI v1's key id."""
import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# --------------------------------------------------------------------------- v1-forcing proxy
class ForceV1Proxy:
    """Loopback proxy in front of the daemon that answers the token PUT with 403
    (as IMDS does when tokens are disabled), so a client falls back to v1, and
    passes every GET through. Records whether any GET carried a token."""

    def __init__(self, upstream):
        host, port = upstream.replace("http://", "").rsplit(":", 1)
        self.token_puts = 0
        self.gets_with_token = 0
        self.gets_without_token = 0
        me = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, body, headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                me.token_puts += 1
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                self.reply(403, b"Forbidden", [("Content-Type", "text/plain")])

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token"):
                    me.gets_with_token += 1
                else:
                    me.gets_without_token += 1
                c = http.client.HTTPConnection(host, int(port), timeout=10)
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
                fwd["Host"] = host
                c.request("GET", self.path, headers=fwd)
                r = c.getresponse()
                body = r.read()
                c.close()
                self.reply(r.status, body, [(k, v) for k, v in r.getheaders()
                                            if k.lower() not in ("content-length", "connection", "transfer-encoding")])

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# --------------------------------------------------------------------------- STS sink (CLI v1 key id)
class StsSink:
    """Loopback STS look-alike for `aws sts get-caller-identity --endpoint-url`:
    records the key id in the signature, so CLI v1 (which has no
    `configure export-credentials`) shows which credentials it used."""

    def __init__(self):
        self.akids = []
        sink = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = re.search(r"Credential=([A-Z0-9]+)/", self.headers.get("Authorization", ""))
                sink.akids.append((m.group(1) if m else None, bool(self.headers.get("X-Amz-Security-Token"))))
                out = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                       b"<GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/sink/x</Arn>"
                       b"<UserId>AROASINK:x</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
                       b"<ResponseMetadata><RequestId>0</RequestId></ResponseMetadata>"
                       b"</GetCallerIdentityResponse>")
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
