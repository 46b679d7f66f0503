"""The HTTP API: order creation, order view, webhook intake, callback and recheck enqueueing.

Webhook intake is verify → store raw → enqueue → 2xx, and nothing more: the gateway wants an
answer within seconds, and the inbox row, not the queue, is the truth.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from worker.deps import Deps, get_deps
from worker.domain.errors import GatewayUnavailable, OrderRejected, UnknownOrder
from worker.logging import get_logger
from worker.services import inbox, orders, views

app = FastAPI(title="gateway-recon", version="0.1.0",
              description="Checkout callbacks, gateway webhooks, reconciliation and exactly-once crediting.")

DepsParam = Annotated[Deps, Depends(get_deps)]


class CreateOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation_id: str = Field(min_length=1, max_length=64)
    requested_by: str = Field(min_length=1, max_length=64, description="member id of the admin paying")
    plan: str = Field(description="payg, pro or custom (enterprise is refused)")
    credits: int | None = Field(default=None, description="payg: credits to buy, at least 1,000")
    custom_amount_minor: int | None = Field(default=None, description="custom: amount in minor units before tax")
    refund_policy_accepted: bool = Field(description="must be true for every purchase")


class VerifyPaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_id: str = Field(min_length=1, max_length=64)
    signature: str = Field(min_length=1, max_length=512)


class RecheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requested_by: str = Field(min_length=1, max_length=120)
    reason: str | None = Field(default=None, max_length=2_000)
    wait: bool = Field(default=True, description="answer with the outcome instead of enqueueing")
    wait_timeout_s: float = Field(default=10.0, gt=0, le=60, description="how long to wait for the outcome")


@app.exception_handler(OrderRejected)
def _rejected(_request: Request, exc: OrderRejected) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": exc.code, "message": exc.message})


@app.exception_handler(GatewayUnavailable)
def _gateway_down(_request: Request, exc: GatewayUnavailable) -> JSONResponse:
    return JSONResponse(status_code=502, content={"error": "gateway_unavailable", "message": str(exc),
                                                  "order_id": exc.order_id})


@app.exception_handler(UnknownOrder)
def _unknown(_request: Request, exc: UnknownOrder) -> JSONResponse:
    return JSONResponse(status_code=404, content={"error": "unknown_order", "message": str(exc)})


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@app.get("/metrics", response_class=PlainTextResponse)
def metrics(deps: DepsParam) -> PlainTextResponse:
    """Prometheus metrics of every process on this host, plus database and queue state."""
    from ops.exposition import render_metrics

    return PlainTextResponse(render_metrics(deps), media_type="text/plain; version=0.0.4; charset=utf-8")


@app.post("/orders", status_code=201)
def create_order(body: CreateOrderBody, deps: DepsParam) -> dict[str, Any]:
    created = orders.create_order(orders.PurchaseRequest(**body.model_dump()), deps=deps)
    return {**views.order_summary(created.order), "checkout": created.checkout}


@app.get("/orders/{order_id}")
def get_order(order_id: str, deps: DepsParam) -> dict[str, Any]:
    return views.order_detail(order_id, deps=deps)


@app.post("/orders/{order_id}/verify", status_code=202)
def verify_payment(order_id: str, body: VerifyPaymentBody, deps: DepsParam) -> dict[str, str]:
    from worker.actors import verify_payment as actor

    views.order_detail(order_id, deps=deps)  # 404 for an order we do not hold
    actor.send(order_id, body.payment_id, body.signature)
    return {"status": "queued"}


@app.post("/orders/{order_id}/recheck")
async def recheck(order_id: str, body: RecheckBody, deps: DepsParam) -> JSONResponse:
    """Support's Recheck. With ``wait`` the answer is the outcome, or 202 if the gateway is slower than
    ``wait_timeout_s`` (the recheck still finishes; read the order later)."""
    from worker.actors import recheck_order as actor
    from worker.services.reconcile import recheck_order

    await run_in_threadpool(views.order_detail, order_id, deps=deps)  # 404 for an order we do not hold
    if not body.wait:
        actor.send(order_id, body.requested_by, body.reason)
        return JSONResponse(status_code=202, content={"status": "queued"})
    running = asyncio.ensure_future(run_in_threadpool(recheck_order, order_id, body.requested_by,
                                                      reason=body.reason, deps=deps))
    try:
        outcome = await asyncio.wait_for(asyncio.shield(running), timeout=body.wait_timeout_s)
    except TimeoutError:
        return JSONResponse(status_code=202, content={"status": "running", "order_id": order_id})
    return JSONResponse(content={"status": "done", **asdict(outcome)})


@app.post("/webhooks/{gateway}")
async def receive_webhook(gateway: str, request: Request, deps: DepsParam) -> JSONResponse:
    if gateway not in deps.gateways:
        raise HTTPException(status_code=404, detail=f"no gateway named {gateway!r}")
    raw = await _read_limited(request, deps.settings.max_body_bytes)
    stored = await run_in_threadpool(inbox.store_webhook, gateway, raw, dict(request.headers), deps=deps)
    if stored.enqueue:
        _enqueue_inbox(stored.inbox_id, gateway)
    code = 400 if stored.status == "rejected" else 200
    return JSONResponse(status_code=code, content={"status": stored.status, "inbox_id": stored.inbox_id,
                                                   **({"reason": stored.reason} if stored.reason else {})})


def _enqueue_inbox(inbox_id: int, gateway: str) -> None:
    """Enqueue after the inbox row committed. If the broker is down the row waits for the inbox sweep."""
    from worker.actors import process_inbox_event

    try:
        process_inbox_event.send(inbox_id)
    except Exception as exc:  # the row is stored: acknowledging is still right
        get_logger(gateway=gateway).error("inbox_enqueue_failed", inbox_id=inbox_id, error=str(exc))


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
