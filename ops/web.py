"""The HTTP API: webhook intake, orders, callbacks, rechecks, review decisions, health and metrics.

Webhook intake is verify → store raw → enqueue → 2xx, and nothing more: the gateway wants an
answer within seconds, and the inbox row, not the queue, is the truth. Webhooks are
authenticated by their signature only; support and billing endpoints need a named bearer token.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ops.api_models import ID_PATTERN, CreateOrderBody, RecheckBody, ReviewBody, VerifyPaymentBody
from ops.auth import Caller
from ops.limits import BodySizeLimit
from worker.deps import Deps, get_deps
from worker.domain.errors import GatewayUnavailable, OrderRejected, ReconError, UnknownOrder
from worker.logging import get_logger
from worker.services import inbox, orders, views

app = FastAPI(title="gateway-recon", version="0.1.0",
              description="Checkout callbacks, gateway webhooks, reconciliation and exactly-once crediting.")
app.add_middleware(BodySizeLimit)

DepsParam = Annotated[Deps, Depends(get_deps)]
OrderId = Annotated[str, Path(min_length=1, max_length=40, pattern=ID_PATTERN, description="our order id, ord_…")]


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


@app.exception_handler(ReconError)
def _conflict(_request: Request, exc: ReconError) -> JSONResponse:
    return JSONResponse(status_code=409, content={"error": type(exc).__name__, "message": str(exc)})


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@app.get("/readyz")
def readyz(deps: DepsParam) -> JSONResponse:
    """Readiness: the database and the broker answer."""
    from ops.health import readiness

    checks = readiness(deps)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks})


@app.get("/metrics", response_class=PlainTextResponse)
def metrics(deps: DepsParam) -> PlainTextResponse:
    """Prometheus metrics of every process on this host, plus database and queue state."""
    from ops.exposition import render_metrics

    return PlainTextResponse(render_metrics(deps), media_type="text/plain; version=0.0.4; charset=utf-8")


@app.post("/orders", status_code=201)
def create_order(body: CreateOrderBody, deps: DepsParam, who: Caller) -> dict[str, Any]:
    """Plan → Credits → Review: validate, price and create the order at the region's gateway."""
    created = orders.create_order(orders.PurchaseRequest(**body.model_dump()), deps=deps)
    return {**views.order_summary(created.order), "checkout": created.checkout,
            "payment_button": views.payment_button(created.order.gateway)}


@app.get("/orders/{order_id}")
def get_order(order_id: OrderId, deps: DepsParam, who: Caller) -> dict[str, Any]:
    """The order with its payments, events, state changes and ledger entries."""
    return views.order_detail(order_id, deps=deps)


@app.post("/orders/{order_id}/verify", status_code=202)
def verify_payment(order_id: OrderId, body: VerifyPaymentBody, deps: DepsParam, who: Caller) -> JSONResponse:
    """The checkout handler's callback, as the billing backend forwards it: verified and stored here, then
    processed by a worker. The stored row is the truth: with the broker down it is still kept (202) and
    the inbox sweep enqueues it later. A callback whose signature fails is kept with the reason (400)."""
    stored = inbox.store_callback(order_id, body.payment_id, body.signature, deps=deps)
    if stored.status == "rejected":
        return JSONResponse(status_code=400, content={"status": "rejected", "inbox_id": stored.inbox_id,
                                                      "reason": stored.reason})
    if stored.enqueue:
        _enqueue_inbox(stored.inbox_id, order_id=order_id)
    return JSONResponse(status_code=202, content={"status": "queued" if stored.status == "accepted" else "duplicate",
                                                  "inbox_id": stored.inbox_id})


@app.post("/orders/{order_id}/recheck")
async def recheck(order_id: OrderId, body: RecheckBody, deps: DepsParam, who: Caller) -> JSONResponse:
    """Support's Recheck. With ``wait`` the answer is the outcome, or 202 if the gateway is slower than
    ``wait_timeout_s`` (the recheck still finishes; read the order later)."""
    from worker.actors import recheck_order as actor
    from worker.services.reconcile import recheck_order

    requested_by = f"{body.requested_by} (token {who})"
    await run_in_threadpool(views.ensure_order_exists, order_id, deps=deps)  # 404 for an order we do not hold
    if not body.wait:
        actor.send(order_id, requested_by, body.reason)
        return JSONResponse(status_code=202, content={"status": "queued"})
    running = asyncio.ensure_future(run_in_threadpool(recheck_order, order_id, requested_by,
                                                      reason=body.reason, deps=deps))
    try:
        outcome = await asyncio.wait_for(asyncio.shield(running), timeout=body.wait_timeout_s)
    except TimeoutError:
        return JSONResponse(status_code=202, content={"status": "running", "order_id": order_id})
    return JSONResponse(content={"status": "done", **asdict(outcome)})


@app.post("/orders/{order_id}/review")
def review(order_id: OrderId, body: ReviewBody, deps: DepsParam, who: Caller) -> dict[str, Any]:
    """Resolve an order in needs_review by an explicit, audited decision."""
    from worker.services.review import resolve_review

    return asdict(resolve_review(order_id, body.decision, reason=body.reason,
                                 requested_by=f"{body.requested_by} (token {who})", deps=deps))


@app.post("/webhooks/{gateway}")
async def receive_webhook(gateway: Annotated[str, Path(max_length=32, pattern=ID_PATTERN)], request: Request, deps: DepsParam) -> JSONResponse:
    """A gateway's webhook: verified on the raw bytes, stored, acknowledged, then processed by a worker."""
    if gateway not in deps.gateways:
        raise HTTPException(status_code=404, detail=f"no gateway named {gateway!r}")
    limit = deps.settings.max_body_bytes
    raw, complete = await _read_at_most(request, limit)
    if not complete:
        stored = await run_in_threadpool(inbox.store_rejected, gateway, raw, dict(request.headers),
                                         f"oversized: more than {limit} bytes (the first {limit} kept)", deps=deps)
        return JSONResponse(status_code=413, content={"status": "rejected", "inbox_id": stored.inbox_id,
                                                      "reason": stored.reason})
    stored = await run_in_threadpool(inbox.store_webhook, gateway, raw, dict(request.headers), deps=deps)
    if stored.enqueue:
        await run_in_threadpool(_enqueue_inbox, stored.inbox_id, gateway=gateway)
    code = 200  # stored and signed by the gateway: acknowledged even when refused (see inbox.Stored)
    if stored.status == "rejected" and not stored.authentic:
        code = 415 if stored.reason.startswith("unsupported_content_type") else 400
    return JSONResponse(status_code=code, content={"status": stored.status, "inbox_id": stored.inbox_id,
                                                   **({"reason": stored.reason} if stored.reason else {})})


async def _read_at_most(request: Request, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether that was all of it."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


def _enqueue_inbox(inbox_id: int, **context: str) -> None:
    """Enqueue after the inbox row committed. If the broker is down the row waits for the inbox sweep."""
    from worker.actors import process_inbox_event

    try:
        process_inbox_event.send(inbox_id)
    except Exception as exc:  # noqa: BLE001  (the row is stored: acknowledging is still right)
        get_logger(**context).error("inbox_enqueue_failed", inbox_id=inbox_id, error=str(exc))
