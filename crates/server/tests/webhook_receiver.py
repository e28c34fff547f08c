"""A webhook receiver for the test suite: a real HTTP server on loopback
that checks every delivery with the official Standard Webhooks verifier
(PyPI `standardwebhooks`) and remembers what it got.

    .venv/bin/python webhook_receiver.py      # prints "listening <port>"

Deliveries: POST /hooks/<name>. Each is recorded with its headers, body and,
for every secret configured for <name>, whether `Webhook(secret).verify`
accepted it. Then the endpoint's behaviour decides the answer:

    PUT  /_control/endpoints/<name>   {"secrets": {"label": "whsec_…"},   # keys left out keep their value
                                       "fail_first": N,   # answer `status` to the first N requests
                                       "status": 500,
                                       "hold": false,     # keep requests unanswered until released
                                       "redirect": false, # answer 307 to /hooks/<name>-redirected
                                       "body_bytes": 0}   # answer 200 with this many bytes
    POST /_control/endpoints/<name>/release             # answer the held requests (200)
    GET  /_control/endpoints/<name>   {"requests": n, "unique_ids": n, "deliveries": [...]}

Exit status 3 when `standardwebhooks` is missing.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    print("missing standardwebhooks", flush=True)
    sys.exit(3)

LOCK = threading.Lock()
ENDPOINTS = {}


class Endpoint:
    def __init__(self):
        self.secrets = {}
        self.fail_first = 0
        self.status = 500
        self.hold = False
        self.released = threading.Event()
        self.redirect = False
        self.body_bytes = 0
        self.deliveries = []

    def configure(self, config):
        """Applies the keys given; the others keep their values."""
        if "secrets" in config:
            self.secrets = dict(config["secrets"])
        if "fail_first" in config:
            self.fail_first = int(config["fail_first"])
        if "status" in config:
            self.status = int(config["status"])
        if "redirect" in config:
            self.redirect = bool(config["redirect"])
        if "body_bytes" in config:
            self.body_bytes = int(config["body_bytes"])
        if "hold" in config:
            hold = bool(config["hold"])
            if hold and not self.hold:
                self.released = threading.Event()
            if not hold:
                self.released.set()
            self.hold = hold

    def summary(self):
        ids = {d["webhook_id"] for d in self.deliveries}
        return {
            "requests": len(self.deliveries),
            "unique_ids": len(ids),
            "deliveries": self.deliveries,
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, payload):
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["_control", "endpoints"]:
            config = json.loads(self.body() or b"{}")
            with LOCK:
                endpoint_for(parts[2]).configure(config)
            return self.answer(200, {})
        self.answer(404, {"error": "no such control route"})

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["_control", "endpoints"]:
            with LOCK:
                summary = endpoint_for(parts[2]).summary()
            return self.answer(200, summary)
        self.answer(404, {"error": "no such route"})

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        body = self.body()
        if len(parts) == 4 and parts[:2] == ["_control", "endpoints"] and parts[3] == "release":
            with LOCK:
                ep = endpoint_for(parts[2])
                ep.hold = False
                ep.released.set()
            return self.answer(200, {})
        if len(parts) != 2 or parts[0] != "hooks":
            return self.answer(404, {"error": "no such route"})
        headers = {k.lower(): v for k, v in self.headers.items()}
        text = body.decode("utf-8", "replace")
        with LOCK:
            ep = endpoint_for(parts[1])
            secrets = dict(ep.secrets)
        verified, errors = {}, {}
        for label, secret in secrets.items():
            try:
                Webhook(secret).verify(text, headers)
                verified[label] = True
            except Exception as e:  # the verifier's verdict, whatever it raises
                verified[label] = False
                errors[label] = f"{type(e).__name__}: {e}"
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        with LOCK:
            index = len(ep.deliveries)
            ep.deliveries.append({
                "webhook_id": headers.get("webhook-id"),
                "webhook_timestamp": headers.get("webhook-timestamp"),
                "webhook_signature": headers.get("webhook-signature"),
                "headers": headers,
                "body": text,
                "json": parsed,
                "verified": verified,
                "errors": errors,
                "answered": None,
            })
            hold, released = ep.hold, ep.released
            failing = index < ep.fail_first
            status = ep.status
            redirect, body_bytes = ep.redirect, ep.body_bytes
        if hold:
            released.wait(timeout=120)
        code = 307 if redirect else status if failing else 200
        with LOCK:
            ep.deliveries[index]["answered"] = code
        try:
            if redirect:
                self.send_response(307)
                self.send_header("location", f"/hooks/{parts[1]}-redirected")
                self.send_header("content-length", "0")
                self.end_headers()
            elif body_bytes and not failing:
                self.answer(200, b"x" * body_bytes)
            else:
                self.answer(code, b"failing on purpose" if failing else b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass


def endpoint_for(name):
    """The endpoint called `name`, created on first use (call with LOCK held)."""
    return ENDPOINTS.setdefault(name, Endpoint())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
