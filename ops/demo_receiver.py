"""The billing backend's endpoint for ``make demo``: receives order events and verifies each with the
``standardwebhooks`` library, as a receiver would."""

from __future__ import annotations

import base64
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class DemoReceiver(ThreadingHTTPServer):
    """The billing backend's endpoint (the demo's, and the end-to-end test's): verifies each delivery, keeps
    every arrival in order (``arrivals``) and the first of each ``webhook-id`` (``events``); answers 503 while
    ``down``."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Verify)
        self.secret = secret or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.webhook, self.lock = Webhook(self.secret), threading.Lock()
        self.events: dict[str, dict] = {}
        self.arrivals: list[tuple[str, dict]] = []
        self.refused = self.repeats = 0
        self.down = False
        threading.Thread(target=self.serve_forever, name="demo-billing-receiver", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/billing/recon-events"


class _Verify(BaseHTTPRequestHandler):
    server: DemoReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        try:
            event = self.server.webhook.verify(body, dict(self.headers.items()))
        except WebhookVerificationError:
            self.server.refused += 1
            status = 401
        else:
            status = 503 if self.server.down else 204
            if not self.server.down:
                with self.server.lock:
                    self.server.repeats += self.headers["webhook-id"] in self.server.events
                    self.server.events.setdefault(self.headers["webhook-id"], event)
                    self.server.arrivals.append((self.headers["webhook-id"], event))
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass
