"""Helpers for the simulator tests: a webhook receiver and small HTTP shortcuts."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from simulator import SimulatorConfig, SimulatorServer

#: One TLS context for every client (building one per client costs ~45 ms; all URLs are http anyway).
_TLS = ssl.create_default_context()


class Receiver:
    """A webhook endpoint: records (headers, raw body) and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None):
        self.requests: list[tuple[Any, bytes]] = []
        self.statuses = list(statuses or [])
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.requests.append((self.headers, body))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhooks/razorpay"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def received(self) -> list[tuple[Any, bytes]]:
        """Every request so far: (headers, exact body bytes)."""
        with self.lock:
            return list(self.requests)

    def events(self) -> list[str]:
        """The ``event`` field of every request so far, in arrival order."""
        return [json.loads(body)["event"] for _, body in self.received()]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def start(**config: Any) -> SimulatorServer:
    """A started simulator server with ``SimulatorConfig(**config)``."""
    return SimulatorServer(SimulatorConfig(**config)).start()


def api(srv: SimulatorServer, **kwargs: Any) -> httpx.Client:
    """An httpx client authenticated with the simulator's Razorpay keys."""
    auth = (srv.config.key_id, srv.config.key_secret)
    return httpx.Client(base_url=srv.base_url, auth=auth, timeout=5, verify=_TLS, **kwargs)


def plain(srv: SimulatorServer, **kwargs: Any) -> httpx.Client:
    """An httpx client without credentials (for auth and ``/_sim/`` calls)."""
    return httpx.Client(base_url=srv.base_url, timeout=5, verify=_TLS, **kwargs)


def new_order(srv: SimulatorServer, amount: int = 50000, **extra: Any) -> dict[str, Any]:
    """Create an INR order over HTTP and return its JSON."""
    with api(srv) as client:
        response = client.post("/v1/orders", json={"amount": amount, "currency": "INR", **extra})
    assert response.status_code == 200, response.text
    return response.json()


def get(srv: SimulatorServer, path: str) -> httpx.Response:
    """An authenticated GET."""
    with api(srv) as client:
        return client.get(path)
