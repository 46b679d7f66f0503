"""httpx event hooks that count and time every gateway request, by endpoint template and status class."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

import httpx

from gateways import registry
from worker.metrics import GATEWAY_LATENCY, GATEWAY_RATE_LIMITED, GATEWAY_REQUESTS


def id_segment(prefixes: Iterable[str]) -> re.Pattern[str]:
    """A path segment that is an id: one of the gateway's ``id_prefixes`` (``pay_``, ``gl_``) and more."""
    return re.compile(rf"^(?:{'|'.join(re.escape(prefix) for prefix in prefixes)})[\w.-]+$")


#: Path segments that are any registered gateway's ids become ``{id}``: labels stay bounded.
ID_SEGMENT = id_segment(prefix for adapter in registry.ADAPTERS for prefix in adapter.id_prefixes)


def endpoint_of(request: httpx.Request, id_pattern: re.Pattern[str] = ID_SEGMENT) -> str:
    segments = ["{id}" if id_pattern.match(part) else part for part in request.url.path.split("/")]
    return f"{request.method} {'/'.join(segments)}"


def metrics_hooks(gateway: str) -> dict[str, list]:
    """httpx event hooks for ``gateway``'s client; its ids are known by its adapter's ``id_prefixes``."""
    ids = id_segment(registry.BY_NAME[gateway].id_prefixes) if gateway in registry.BY_NAME else ID_SEGMENT

    def on_request(request: httpx.Request) -> None:
        request.extensions["recon_started"] = time.perf_counter()

    def on_response(response: httpx.Response) -> None:
        request = response.request
        endpoint = endpoint_of(request, ids)
        started = request.extensions.get("recon_started")
        if started is not None:
            GATEWAY_LATENCY.labels(gateway, endpoint).observe(time.perf_counter() - started)
        GATEWAY_REQUESTS.labels(gateway, endpoint, f"{response.status_code // 100}xx").inc()
        if response.status_code == 429:
            GATEWAY_RATE_LIMITED.labels(gateway, "remote").inc()

    return {"request": [on_request], "response": [on_response]}
