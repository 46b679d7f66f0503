"""The simulator's FastAPI app: Razorpay's ``/v1`` API, PayGlocal's ``/gl/v1/payments`` API and the
``/_sim/`` control API.

Fault knobs (latency, 429, 5xx, timeouts) apply to ``/v1`` and ``/gl/`` only, before authentication, the
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
from gateways.simulator.payglocal_auth import PayGlocalApiError
from gateways.simulator.payglocal_routes import build_router as build_payglocal_router
from gateways.simulator.razorpay_routes import build_router
from gateways.simulator.razorpay_rules import RazorpayApiError, SimulatorError, error_body

_HTML = "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n</body>\r\n</html>\r\n"
_SERVER_ERROR_BODIES: dict[int, tuple[str, str]] = {
    500: ("SERVER_ERROR", "The server encountered an error. The incident has been reported to admins."),
    504: ("GATEWAY_ERROR", "Gateway timed out. Please try again."),
}
_SERVER_ERROR_HTML = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}
#: Paths that get the fault knobs: the gateways' APIs, never ``/_sim/``.
PAYGLOCAL_PATHS = ("/gl/",)
API_PATHS = ("/v1/", *PAYGLOCAL_PATHS)


def server_error_response(status: int) -> Response:
    """A 5xx as Razorpay's edge returns it: JSON for 500/504, an HTML page for 502/503."""
    if status in _SERVER_ERROR_HTML:
        return HTMLResponse(_HTML.format(_SERVER_ERROR_HTML[status]), status_code=status)
    code, description = _SERVER_ERROR_BODIES[status]
    return JSONResponse(error_body(code, description), status_code=status)


def _rate_limited(path: str) -> Response:
    if path.startswith(PAYGLOCAL_PATHS):
        body = PayGlocalApiError(429, "Too many requests", reason_code="GL-429-001").body()
        return JSONResponse(body, status_code=429, headers={"Retry-After": "1"})
    return JSONResponse(error_body("BAD_REQUEST_ERROR", "Too many requests"), status_code=429)


def _server_error(path: str, status: int) -> Response:
    if path.startswith(PAYGLOCAL_PATHS) and status not in _SERVER_ERROR_HTML:
        error = PayGlocalApiError(status, "System error", reason_code=f"GL-{status}-001", status_text="SYSTEM_ERROR")
        return JSONResponse(error.body(), status_code=status)
    return server_error_response(status)


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
        path = request.url.path
        if not path.startswith(API_PATHS):
            return await call_next(request)
        cfg = sim.config
        if cfg.latency_ms:
            await asyncio.sleep(cfg.latency_ms / 1000)
        fault = sim.draw_fault()
        if fault == 429:
            return _rate_limited(path)
        if isinstance(fault, int):
            return _server_error(path, fault)
        response = await call_next(request)
        if fault == "timeout":
            await asyncio.sleep(cfg.timeout_sleep_s)
        return response

    @app.exception_handler(RazorpayApiError)
    async def razorpay_error(_: Request, exc: RazorpayApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(PayGlocalApiError)
    async def payglocal_error(_: Request, exc: PayGlocalApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        description = "The requested URL was not found on the server." if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(error_body("BAD_REQUEST_ERROR", description), status_code=exc.status_code)

    @app.exception_handler(SimulatorError)
    async def simulator_error(_: Request, exc: SimulatorError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app.include_router(build_router(sim.razorpay))
    app.include_router(build_payglocal_router(sim.payglocal))
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
        late_by = body.get("minutes_after_creation")
        if late_by is not None and (isinstance(late_by, bool) or not isinstance(late_by, (int, float))):
            raise SimulatorError("minutes_after_creation must be a number", status=400)
        return JSONResponse(sim.late_authorize(_required(body, "gateway_payment_id"), deliver_webhooks=deliver,
                                               minutes_after_creation=late_by))

    @app.post("/_sim/razorpay/refund")
    async def refund(request: Request) -> JSONResponse:
        body = await _json_object(request)
        return JSONResponse(sim.refund(_required(body, "gateway_payment_id"), body.get("amount_minor")))

    _add_payglocal_control_routes(app, sim)


def _add_payglocal_control_routes(app: FastAPI, sim: Simulator) -> None:
    """``/_sim/payglocal/*``: the shopper's actions and the keys to configure the adapter with."""

    @app.post("/_sim/payglocal/pay")
    async def pay_payglocal(request: Request) -> JSONResponse:
        body = await _json_object(request)
        result = sim.pay_payglocal(
            _required(body, "gid"),
            _required(body, "outcome"),
            deliver_callback=bool(body.get("deliver_callback", True)),
            amount_minor=body.get("amount_minor"),
            currency=body.get("currency"),
            callback_style=str(body.get("callback_style", "2021")),
        )
        return JSONResponse(result)

    @app.post("/_sim/payglocal/late_authorize")
    async def late_authorize_payglocal(request: Request) -> JSONResponse:
        return JSONResponse(sim.late_authorize_payglocal(_required(await _json_object(request), "gid")))

    @app.post("/_sim/payglocal/refund")
    async def refund_payglocal(request: Request) -> JSONResponse:
        return JSONResponse(sim.refund_payglocal(_required(await _json_object(request), "gid")))

    @app.get("/_sim/payglocal/keys")
    async def payglocal_keys() -> JSONResponse:
        keys = sim.payglocal.keys
        return JSONResponse({
            "merchant_id": keys.merchant_id, "merchant_kid": keys.merchant_kid,
            "merchant_private_pem": keys.merchant_private_pem, "merchant_public_pem": keys.merchant_public_pem,
            "payglocal_kid": keys.payglocal_kid, "payglocal_public_pem": keys.payglocal_public_pem,
        })  # fmt: skip


def _required(body: dict[str, Any], name: str) -> Any:
    if body.get(name) in (None, ""):
        raise SimulatorError(f"{name} is required", status=400)
    return body[name]
