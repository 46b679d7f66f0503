"""httpx event hooks that count and time every gateway request, by endpoint template and status class."""

from __future__ import annotations

import re
import time

import httpx

from worker.metrics import GATEWAY_LATENCY, GATEWAY_RATE_LIMITED, GATEWAY_REQUESTS

#: Path segments that are ids (``order_…``, ``pay_…``, ``gl_…``) become ``{id}``: labels stay bounded.
ID_SEGMENT = re.compile(r"^(order|pay|rfnd|gl|plink|cust)_[\w.-]+$")


def endpoint_of(request: httpx.Request) -> str:
    segments = ["{id}" if ID_SEGMENT.match(part) else part for part in request.url.path.split("/")]
    return f"{request.method} {'/'.join(segments)}"


def metrics_hooks(gateway: str) -> dict[str, list]:
    def on_request(request: httpx.Request) -> None:
        request.extensions["recon_started"] = time.perf_counter()

    def on_response(response: httpx.Response) -> None:
        request = response.request
        endpoint = endpoint_of(request)
        started = request.extensions.get("recon_started")
        if started is not None:
            GATEWAY_LATENCY.labels(gateway, endpoint).observe(time.perf_counter() - started)
        GATEWAY_REQUESTS.labels(gateway, endpoint, f"{response.status_code // 100}xx").inc()
        if response.status_code == 429:
            GATEWAY_RATE_LIMITED.labels(gateway, "remote").inc()

    return {"request": [on_request], "response": [on_response]}
