"""The simulator's FastAPI app: Razorpay's ``/v1`` API plus the ``/_sim/`` control API.

Fault knobs (latency, 429, 5xx, timeouts) apply to ``/v1`` only, before authentication, the
way a load balancer or rate limiter in front of the real API would act. A "timeout" is
processed normally and answered only after ``timeout_sleep_s``, so the client gives up on a
request whose effect happened (the nasty case for retries).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateways.simulator.core import Simulator
from gateways.simulator.razorpay_routes import build_router
from gateways.simulator.razorpay_rules import RazorpayApiError, SimulatorError, error_body

_HTML = "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n</body>\r\n</html>\r\n"
_SERVER_ERROR_BODIES: dict[int, tuple[str, str]] = {
    500: ("SERVER_ERROR", "The server encountered an error. The incident has been reported to admins."),
    504: ("GATEWAY_ERROR", "Gateway timed out. Please try again."),
}
_SERVER_ERROR_HTML = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}


def server_error_response(status: int) -> Response:
    """A 5xx as Razorpay's edge returns it: JSON for 500/504, an HTML page for 502/503."""
    if status in _SERVER_ERROR_HTML:
        return HTMLResponse(_HTML.format(_SERVER_ERROR_HTML[status]), status_code=status)
    code, description = _SERVER_ERROR_BODIES[status]
    return JSONResponse(error_body(code, description), status_code=status)


def _rate_limited() -> Response:
    return JSONResponse(error_body("BAD_REQUEST_ERROR", "Too many requests"), status_code=429)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise SimulatorError("the body is not valid JSON", status=400) from None
    if not isinstance(data, dict):
        raise SimulatorError("the body must be a JSON object", status=400)
    return data


def create_app(sim: Simulator) -> FastAPI:
    """A FastAPI app serving ``sim`` (Razorpay under ``/v1``, control under ``/_sim``)."""
    app = FastAPI(title="gateway simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = sim

    @app.middleware("http")
    async def inject_faults(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        cfg = sim.config
        if cfg.latency_ms:
            await asyncio.sleep(cfg.latency_ms / 1000)
        fault = sim.draw_fault()
        if fault == 429:
            return _rate_limited()
        if isinstance(fault, int):
            return server_error_response(fault)
        response = await call_next(request)
        if fault == "timeout":
            await asyncio.sleep(cfg.timeout_sleep_s)
        return response

    @app.exception_handler(RazorpayApiError)
    async def razorpay_error(_: Request, exc: RazorpayApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        description = "The requested URL was not found on the server." if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(error_body("BAD_REQUEST_ERROR", description), status_code=exc.status_code)

    @app.exception_handler(SimulatorError)
    async def simulator_error(_: Request, exc: SimulatorError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app.include_router(build_router(sim.razorpay))
    _add_control_routes(app, sim)
    return app


def _add_control_routes(app: FastAPI, sim: Simulator) -> None:
    """The ``/_sim/`` endpoints (JSON in, JSON out; never subject to the fault knobs)."""

    @app.get("/_sim/health")
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/_sim/state")
    async def state() -> JSONResponse:
        return JSONResponse(sim.state())

    @app.post("/_sim/knobs")
    async def knobs(request: Request) -> JSONResponse:
        body = await _json_object(request)
        try:
            return JSONResponse({"knobs": sim.set_knobs(**body)})
        except (TypeError, ValueError) as exc:
            raise SimulatorError(str(exc), status=400) from None

    @app.post("/_sim/reset")
    async def reset() -> JSONResponse:
        sim.reset()
        return JSONResponse({"reset": True})

    @app.get("/_sim/webhooks")
    async def webhooks() -> JSONResponse:
        return JSONResponse({"stats": sim.webhooks.stats(), "log": sim.delivery_log()})

    @app.post("/_sim/webhooks/wait")
    async def wait_webhooks(request: Request) -> JSONResponse:
        timeout = (await _json_object(request)).get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise SimulatorError("timeout must be a number of seconds", status=400)
        idle = await asyncio.to_thread(sim.wait_for_webhooks, timeout)
        return JSONResponse({"idle": idle})

    @app.post("/_sim/razorpay/pay")
    async def pay(request: Request) -> JSONResponse:
        body = await _json_object(request)
        result = sim.pay(
            _required(body, "gateway_order_id"),
            _required(body, "outcome"),
            deliver_webhooks=bool(body.get("deliver_webhooks", True)),
            amount_minor=body.get("amount_minor"),
            currency=body.get("currency"),
        )
        return JSONResponse(result)

    @app.post("/_sim/razorpay/late_authorize")
    async def late_authorize(request: Request) -> JSONResponse:
        body = await _json_object(request)
        deliver = bool(body.get("deliver_webhooks", True))
        return JSONResponse(sim.late_authorize(_required(body, "gateway_payment_id"), deliver_webhooks=deliver))

    @app.post("/_sim/razorpay/refund")
    async def refund(request: Request) -> JSONResponse:
        body = await _json_object(request)
        return JSONResponse(sim.refund(_required(body, "gateway_payment_id"), body.get("amount_minor")))


def _required(body: dict[str, Any], name: str) -> Any:
    if body.get(name) in (None, ""):
        raise SimulatorError(f"{name} is required", status=400)
    return body[name]
