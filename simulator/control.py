"""The ``/_sim/`` control API: JSON in, JSON out, each request body a pydantic model; never subject to the
fault knobs. It is how a separate process (``ops/simulator_client.py``, the demo, the chaos run) drives the
simulator; the endpoints are listed in ``simulator/README.md``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from simulator.core import Simulator
from simulator.errors import SimulatorError
from simulator.outcomes import Outcome
from simulator.payglocal.rules import StatusShape


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RazorpayPay(_Request):
    gateway_order_id: str = Field(min_length=1)
    outcome: Outcome
    deliver_webhooks: bool = True
    amount_minor: StrictInt | None = None
    currency: str | None = None


class LateAuthorize(_Request):
    gateway_payment_id: str = Field(min_length=1)
    deliver_webhooks: bool = True
    minutes_after_creation: float | None = None


class PaymentAction(_Request):
    gateway_payment_id: str = Field(min_length=1)
    deliver_webhooks: bool = True


class RazorpayRefund(PaymentAction):
    amount_minor: StrictInt | None = None


class DashboardRefund(_Request):
    amount: StrictInt | None = None
    fail: bool = False
    deliver_webhooks: bool = True


class OpenDispute(_Request):
    amount: StrictInt | None = None
    phase: str = "chargeback"
    reason_code: str = Field("chargeback", min_length=1)
    respond_in_s: float | None = Field(None, ge=0)
    deliver_webhooks: bool = True


class MoveDispute(_Request):
    status: str | None = None
    phase: str | None = None
    deliver_webhooks: bool = True


class RefundBehaviour(_Request):
    processed_after_s: float | None = Field(None, ge=0)
    fail_next: StrictInt | None = Field(None, ge=0)
    fail_payment_ids: list[str] | None = None


class Settle(_Request):
    all: bool = False
    deliver_webhooks: bool = True


class SettlementFaultsRequest(_Request):
    skip_payment_ids: list[str] | None = None
    amount_delta: dict[str, StrictInt] | None = None
    delay_payment_ids: dict[str, float] | None = None
    unknown_rows: StrictInt | None = Field(None, ge=0)

    @field_validator("delay_payment_ids")
    @classmethod
    def _non_negative(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and any(v < 0 for v in value.values()):
            raise ValueError("delays must be non-negative seconds")
        return value


class PayGlocalPay(_Request):
    gid: str = Field(min_length=1)
    outcome: Outcome
    deliver_callback: bool = True
    amount_minor: StrictInt | None = None
    currency: str | None = None
    callback_style: str = "2021"


class Gid(_Request):
    gid: str = Field(min_length=1)


class StatusShapeRequest(_Request):
    shape: StatusShape
    gid: str | None = None


class ForceStatus(_Request):
    gid: str = Field(min_length=1)
    status: str = Field(min_length=1)


class Wait(_Request):
    timeout: float = Field(10.0, ge=0)


class Advance(_Request):
    seconds: float = Field(ge=0)


class Replay(_Request):
    event_ids: list[str] | None = None


class Enable(_Request):
    url: str | None = None


Body = TypeVar("Body", bound=BaseModel)


async def _body(request: Request, model: type[Body]) -> Body:
    raw = await request.body()
    try:
        return model.model_validate_json(raw if raw.strip() else b"{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise SimulatorError(problems, status=400) from None


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise SimulatorError("the body is not valid JSON", status=400) from None
    if not isinstance(data, dict):
        raise SimulatorError("the body must be a JSON object", status=400)
    return data


def build_router(sim: Simulator) -> APIRouter:
    """The ``/_sim`` routes over ``sim``."""
    router = APIRouter(prefix="/_sim")

    @router.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True})

    @router.get("/state")
    async def state(request: Request) -> JSONResponse:
        return JSONResponse(sim.state(webhooks=request.query_params.get("webhooks", "true") != "false"))

    @router.post("/knobs")
    async def knobs(request: Request) -> JSONResponse:
        body = await _json_object(request)  # the knob names are the model: SimulatorConfig validates them
        try:
            return JSONResponse({"knobs": sim.set_knobs(**body)})
        except (TypeError, ValueError) as exc:
            raise SimulatorError(str(exc), status=400) from None

    @router.post("/reset")
    async def reset() -> JSONResponse:
        sim.reset()
        return JSONResponse({"reset": True})

    @router.get("/clock")
    async def clock() -> JSONResponse:
        return JSONResponse({"now": sim.clock.now(), "scale": sim.clock.scale})

    @router.post("/clock/advance")
    async def advance(request: Request) -> JSONResponse:
        body = await _body(request, Advance)
        return JSONResponse({"now": sim.advance_clock(body.seconds), "scale": sim.clock.scale})

    @router.get("/razorpay/keys")
    async def razorpay_keys() -> JSONResponse:
        cfg = sim.config
        return JSONResponse({"key_id": cfg.key_id, "key_secret": cfg.key_secret, "webhook_secret": cfg.webhook_secret,
                             "account_id": cfg.account_id})

    @router.post("/refunds/behaviour")
    async def refund_behaviour(request: Request) -> JSONResponse:
        body = await _body(request, RefundBehaviour)
        return JSONResponse(sim.refund_behaviour(body.processed_after_s, body.fail_next, body.fail_payment_ids))

    @router.get("/payments/{payment_id}/refunds")
    async def refunds_of(payment_id: str) -> JSONResponse:
        return JSONResponse({"refunds": sim.refunds_of(payment_id)})

    _add_webhook_routes(router, sim)
    _add_settlement_routes(router, sim)
    _add_razorpay_routes(router, sim)
    _add_dispute_routes(router, sim)
    _add_payglocal_routes(router, sim)
    return router


def _add_webhook_routes(router: APIRouter, sim: Simulator) -> None:
    @router.get("/webhooks")
    async def webhooks() -> JSONResponse:
        return JSONResponse({"stats": sim.webhooks.stats(), "log": sim.delivery_log(),
                             "endpoints": sim.webhooks.endpoints()})

    @router.get("/webhooks/backlog")
    async def backlog() -> JSONResponse:
        return JSONResponse({"backlog": sim.webhooks.backlog()})

    @router.get("/webhooks/events")
    async def events(request: Request) -> JSONResponse:
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            raise SimulatorError("since must be an integer", status=400) from None
        found = sim.webhooks.events(max(since, 0))
        return JSONResponse({"since": since, "events": [e.as_dict() for e in found]})

    @router.post("/webhooks/wait")
    async def wait_webhooks(request: Request) -> JSONResponse:
        body = await _body(request, Wait)
        return JSONResponse({"idle": await asyncio.to_thread(sim.wait_for_webhooks, body.timeout)})

    @router.post("/webhooks/replay")
    async def replay(request: Request) -> JSONResponse:
        body = await _body(request, Replay)
        return JSONResponse({"queued": sim.webhooks.replay(body.event_ids)})

    @router.post("/webhooks/enable")
    async def enable(request: Request) -> JSONResponse:
        body = await _body(request, Enable)
        return JSONResponse({"enabled": sim.webhooks.enable(body.url)})


def _add_settlement_routes(router: APIRouter, sim: Simulator) -> None:
    async def settle(request: Request, gateway: str) -> JSONResponse:
        body = await _body(request, Settle)
        made = sim.settle(gateway, everything=body.all, deliver_webhooks=body.deliver_webhooks)
        return JSONResponse({"settlement_ids": [s["id"] for s in made], "settlements": made})

    @router.post("/razorpay/settle")
    async def settle_razorpay(request: Request) -> JSONResponse:
        return await settle(request, "razorpay")

    @router.post("/payglocal/settle")
    async def settle_payglocal(request: Request) -> JSONResponse:
        return await settle(request, "payglocal")

    @router.post("/settlements/faults")
    async def settlement_faults(request: Request) -> JSONResponse:
        body = await _body(request, SettlementFaultsRequest)
        return JSONResponse(sim.set_settlement_faults(body.skip_payment_ids, body.amount_delta,
                                                      body.delay_payment_ids, body.unknown_rows))

    @router.get("/payglocal/settlement-report")
    async def settlement_report(request: Request) -> Response:
        day = request.query_params.get("date")
        report = sim.payglocal_settlement_report(day)  # a bad date is a 400 before it reaches a header
        name = f"payglocal-settlement-report-{day or 'all'}.csv"
        return Response(report, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _add_razorpay_routes(router: APIRouter, sim: Simulator) -> None:
    @router.post("/razorpay/pay")
    async def pay(request: Request) -> JSONResponse:
        body = await _body(request, RazorpayPay)
        return JSONResponse(sim.pay(body.gateway_order_id, body.outcome, deliver_webhooks=body.deliver_webhooks,
                                    amount_minor=body.amount_minor, currency=body.currency))

    @router.post("/razorpay/late_authorize")
    async def late_authorize(request: Request) -> JSONResponse:
        body = await _body(request, LateAuthorize)
        return JSONResponse(sim.late_authorize(body.gateway_payment_id, deliver_webhooks=body.deliver_webhooks,
                                               minutes_after_creation=body.minutes_after_creation))

    @router.post("/razorpay/upi_retry")
    async def upi_retry(request: Request) -> JSONResponse:
        body = await _body(request, PaymentAction)
        return JSONResponse(sim.upi_retry(body.gateway_payment_id, deliver_webhooks=body.deliver_webhooks))

    @router.post("/razorpay/refund")
    async def refund(request: Request) -> JSONResponse:
        body = await _body(request, RazorpayRefund)
        return JSONResponse(sim.refund(body.gateway_payment_id, body.amount_minor,
                                       deliver_webhooks=body.deliver_webhooks))


def _add_dispute_routes(router: APIRouter, sim: Simulator) -> None:
    @router.post("/razorpay/payments/{payment_id}/dashboard_refund")
    async def dashboard_refund(payment_id: str, request: Request) -> JSONResponse:
        body = await _body(request, DashboardRefund)
        return JSONResponse(sim.dashboard_refund(payment_id, body.amount, body.fail,
                                                 deliver_webhooks=body.deliver_webhooks))

    @router.post("/razorpay/payments/{payment_id}/disputes")
    async def open_dispute(payment_id: str, request: Request) -> JSONResponse:
        body = await _body(request, OpenDispute)
        return JSONResponse(sim.open_dispute(payment_id, body.amount, body.phase, body.reason_code, body.respond_in_s,
                                             deliver_webhooks=body.deliver_webhooks))

    @router.get("/razorpay/disputes")
    async def disputes(request: Request) -> JSONResponse:
        return JSONResponse({"disputes": sim.disputes_of(request.query_params.get("payment_id"))})

    @router.post("/razorpay/disputes/{dispute_id}")
    async def move_dispute(dispute_id: str, request: Request) -> JSONResponse:
        body = await _body(request, MoveDispute)
        return JSONResponse(sim.move_dispute(dispute_id, body.status, body.phase,
                                             deliver_webhooks=body.deliver_webhooks))


def _add_payglocal_routes(router: APIRouter, sim: Simulator) -> None:
    @router.post("/payglocal/pay")
    async def pay_payglocal(request: Request) -> JSONResponse:
        body = await _body(request, PayGlocalPay)
        return JSONResponse(sim.pay_payglocal(body.gid, body.outcome, deliver_callback=body.deliver_callback,
                                              amount_minor=body.amount_minor, currency=body.currency,
                                              callback_style=body.callback_style))

    @router.post("/payglocal/late_authorize")
    async def late_authorize_payglocal(request: Request) -> JSONResponse:
        return JSONResponse(sim.late_authorize_payglocal((await _body(request, Gid)).gid))

    @router.post("/payglocal/refund")
    async def refund_payglocal(request: Request) -> JSONResponse:
        return JSONResponse(sim.refund_payglocal((await _body(request, Gid)).gid))

    @router.post("/payglocal/status_shape")
    async def status_shape(request: Request) -> JSONResponse:
        body = await _body(request, StatusShapeRequest)
        sim.payglocal.set_status_shape(body.shape, body.gid)
        return JSONResponse({"shape": body.shape, "gid": body.gid})

    @router.post("/payglocal/force_status")
    async def force_status(request: Request) -> JSONResponse:
        body = await _body(request, ForceStatus)
        return JSONResponse(sim.payglocal.force_status(body.gid, body.status))

    @router.get("/payglocal/keys")
    async def payglocal_keys() -> JSONResponse:
        keys = sim.payglocal.keys
        return JSONResponse({
            "merchant_id": keys.merchant_id, "merchant_kid": keys.merchant_kid,
            "merchant_private_pem": keys.merchant_private_pem, "merchant_public_pem": keys.merchant_public_pem,
            "payglocal_kid": keys.payglocal_kid, "payglocal_public_pem": keys.payglocal_public_pem,
        })
