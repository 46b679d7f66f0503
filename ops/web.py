"""The HTTP API: webhook intake, orders, callbacks, rechecks, review decisions, refunds and chargebacks,
health and metrics.

Webhook intake is verify → store raw → enqueue → 2xx, and nothing more: the gateway wants an
answer within seconds, and the inbox row, not the queue, is the truth. Webhooks are
authenticated by their signature only; support and billing endpoints need a named bearer token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ops import enqueue
from ops.api_models import (
    ID_PATTERN,
    ChargebackBody,
    CreateOrderBody,
    EventReplayBody,
    OrderId,
    RecheckBody,
    RefundBody,
    ReviewBody,
    VerifyPaymentBody,
)
from ops.auth import Billing, Caller, Finance, Reviewer, Support
from ops.console import create_console
from ops.context import ActorsParam, DepsParam
from ops.exposition import render_metrics
from ops.health import readiness
from ops.limits import BodySizeLimit
from worker.actors import Actors
from worker.deps import Deps
from worker.domain.errors import GatewayUnavailable, OrderRejected, ReconError, UnknownOrder
from worker.logging import configure_logging, get_logger
from worker.main import build_runtime, freeze_startup_heap
from worker.services import deliveries, intake, order_requests, orders, settlement_report, transactions, views
from worker.services.disputes import record_chargeback
from worker.services.recheck import recheck_order
from worker.services.refunds import RefundRefused, RefundRequest, request_refund
from worker.services.review import resolve_review
from worker.settings import Settings

router = APIRouter()
OrganisationId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


def _rejected(_request: Request, exc: OrderRejected) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": exc.code, "message": exc.message})


def _gateway_down(_request: Request, exc: GatewayUnavailable) -> JSONResponse:
    return JSONResponse(status_code=502, content={"error": "gateway_unavailable", "message": str(exc),
                                                  "order_id": exc.order_id})


def _unknown(_request: Request, exc: UnknownOrder) -> JSONResponse:
    return JSONResponse(status_code=404, content={"error": "unknown_order", "message": str(exc)})


def _refund_refused(_request: Request, exc: RefundRefused) -> JSONResponse:
    status = 409 if exc.code == "idempotency_key_reused" else 422
    return JSONResponse(status_code=status, content={"code": exc.code, "detail": exc.message})


def _unprocessable(_request: Request, exc: ReconError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": type(exc).__name__, "message": str(exc)})


def _conflict(_request: Request, exc: ReconError) -> JSONResponse:
    return JSONResponse(status_code=409, content={"error": type(exc).__name__, "message": str(exc)})


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(deps: DepsParam) -> JSONResponse:
    """Readiness: the database and the broker answer."""
    checks = readiness(deps)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(deps: DepsParam) -> PlainTextResponse:
    """Prometheus metrics of every process on this host, plus database and queue state."""
    return PlainTextResponse(render_metrics(deps), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.post("/orders", status_code=201)
def create_order(body: CreateOrderBody, deps: DepsParam, who: Billing,
                 idempotency_key: Annotated[str | None, Header(
                     min_length=8, max_length=64, pattern=ID_PATTERN,
                     description="the same key with the same body returns the same order (kept 48 hours); with "
                                 "another body: 422; while the first request is still answering: 409, retry")] = None,
                 ) -> JSONResponse:
    """Plan → Credits → Review: validate, price and create the order at the region's gateway."""
    request = orders.PurchaseRequest(**body.model_dump())
    if idempotency_key is None:
        return JSONResponse(status_code=201, content=_created(orders.create_order(request, deps=deps)))
    answer, replayed = order_requests.create_order_once(request, idempotency_key, body.model_dump(), deps=deps,
                                                        answer=_created)
    return JSONResponse(status_code=200 if replayed else 201, content=answer)


def _created(created: orders.CreatedOrder) -> dict[str, Any]:
    return {**views.order_summary(created.order), "checkout": created.checkout,
            "payment_button": views.payment_button(created.order.gateway)}


@router.get("/organisations/{organisation_id}/transactions")
def list_transactions(organisation_id: OrganisationId, deps: DepsParam, who: Billing,
                      status: Annotated[list[transactions.CustomerStatus] | None, Query()] = None,
                      created_from: Annotated[datetime | None, Query(alias="from")] = None,
                      created_to: Annotated[datetime | None, Query(alias="to")] = None,
                      cursor: Annotated[str | None, Query(max_length=400)] = None,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Billing & Transactions: the organisation's orders, newest first (``next_cursor`` pages on), each with
    its amount, tax, total, the status in the customer's words and whether Recheck is offered."""
    page = transactions.transactions(organisation_id, deps=deps, limit=limit, cursor=cursor, statuses=status,
                                     created_from=created_from, created_to=created_to)
    return {"organisation_id": organisation_id, "transactions": page.rows, "next_cursor": page.next_cursor}


@router.get("/organisations/{organisation_id}/ledger")
def organisation_ledger(organisation_id: OrganisationId, deps: DepsParam, who: Billing,
                        before_id: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    """The organisation's balance and its ledger, newest first (``next_before_id`` pages back)."""
    try:
        return transactions.ledger(organisation_id, deps=deps, limit=limit, before_id=before_id)
    except LookupError:
        raise HTTPException(status_code=404, detail=f"no organisation {organisation_id}") from None


@router.get("/orders/{order_id}")
def get_order(order_id: OrderId, deps: DepsParam, who: Caller) -> dict[str, Any]:
    """The order with its payments, events, state changes and ledger entries."""
    return views.order_detail(order_id, deps=deps)


@router.post("/orders/{order_id}/verify", status_code=202)
async def verify_payment(order_id: OrderId, body: VerifyPaymentBody, deps: DepsParam, actors: ActorsParam,
                         who: Billing) -> JSONResponse:
    """The checkout handler's callback, as the billing backend forwards it: verified and stored here, then
    processed by a worker. The stored row is the truth: with the broker down it is still kept (202) and
    the inbox sweep enqueues it later. A callback whose signature fails is kept with the reason (400).
    With ``wait``, 200 with the outcome (the order and the organisation's balance: what the dashboard's
    spinner waits for) once a worker has processed it, or 202 after ``wait_timeout_s``."""
    stored = await run_in_threadpool(intake.store_callback, order_id, body.payment_id, body.signature, deps=deps)
    if stored.status == "rejected":
        return JSONResponse(status_code=400, content={"status": "rejected", "inbox_id": stored.inbox_id,
                                                      "reason": stored.reason})
    if stored.enqueue:
        await run_in_threadpool(enqueue.inbox_event, actors, stored.inbox_id, order_id=order_id)
    queued = {"status": "queued" if stored.status == "accepted" else "duplicate", "inbox_id": stored.inbox_id}
    if not body.wait:
        return JSONResponse(status_code=202, content=queued)
    deadline = asyncio.get_running_loop().time() + body.wait_timeout_s
    while (outcome := await run_in_threadpool(views.callback_outcome, stored.inbox_id, order_id, deps=deps)) is None:
        if asyncio.get_running_loop().time() >= deadline:
            return JSONResponse(status_code=202, content=queued)
        await asyncio.sleep(0.05)  # one indexed read per step: the answer comes at most this late
    return JSONResponse(status_code=200, content={"status": "done", "inbox_id": stored.inbox_id, **outcome})


@router.post("/orders/{order_id}/recheck")
async def recheck(order_id: OrderId, body: RecheckBody, deps: DepsParam, actors: ActorsParam,
                  who: Support) -> JSONResponse:
    """Support's Recheck. With ``wait`` the answer is the outcome, or 202 if the gateway is slower than
    ``wait_timeout_s`` (the recheck still finishes; read the order later)."""
    requested_by = f"{body.requested_by} (token {who})"
    await run_in_threadpool(views.ensure_order_exists, order_id, deps=deps)  # 404 for an order we do not hold
    if not body.wait:
        try:
            await run_in_threadpool(actors.recheck_order.send, order_id, requested_by, body.reason)
        except Exception as exc:  # noqa: BLE001  (the broker is down: nothing was queued, say so)
            get_logger(order_id=order_id).error("recheck_enqueue_failed", error=str(exc))
            return JSONResponse(status_code=503, headers={"Retry-After": "5"},
                                content={"error": "queue_unavailable", "message": "the recheck could not be queued "
                                         "(the broker is unreachable): retry, or ask with wait=true"})
        return JSONResponse(status_code=202, content={"status": "queued"})
    done, outcome = await enqueue.within(body.wait_timeout_s, recheck_order, order_id, requested_by,
                                         reason=body.reason, deps=deps)
    if not done:
        return JSONResponse(status_code=202, content={"status": "running", "order_id": order_id})
    return JSONResponse(content={"status": "done", **asdict(outcome)})


@router.post("/orders/{order_id}/review")
def review(order_id: OrderId, body: ReviewBody, deps: DepsParam, who: Reviewer) -> dict[str, Any]:
    """Resolve an order in needs_review by an explicit, audited decision."""
    return asdict(resolve_review(order_id, body.decision, reason=body.reason,
                                 requested_by=f"{body.requested_by} (token {who})", deps=deps))


def _requester(requested_by: str, who: str) -> str:
    """Who asked, as audits record it: the person and the token's name (within the 120 characters kept)."""
    return f"{requested_by} (token {who})"[:120]


@router.post("/orders/{order_id}/refunds", status_code=201)
def refund(order_id: OrderId, body: RefundBody, deps: DepsParam, who: Support,
           idempotency_key: Annotated[str | None, Header(
               max_length=64, description="the same key repeats the same refund (10-40 of A-Z a-z 0-9 _ -); "
                                          "omitted: derived from the order, amount, reason and requester")] = None,
           ) -> JSONResponse:
    """Refund a paid order fully or partly, with a mandatory reason (audited). 201 with the refund as it stands
    (``requested``, ``pending``, ``processed`` or ``failed`` at the gateway); 200 with ``repeated`` for the
    same request made before (nothing new is started). Refused (422 with a ``code``): ``reason_required``,
    ``order_not_paid``, ``unknown_payment``, ``not_captured``, ``above_captured``, ``credits_spent`` (more
    credits than the customer has unspent: pass ``override_spent`` and say why), ``bad_idempotency_key``;
    409 ``idempotency_key_reused`` (the key named another refund)."""
    request = RefundRequest(body.amount_minor, body.reason, _requester(body.requested_by, who),
                            payment_id=body.payment_id, idempotency_key=idempotency_key,
                            override_spent=body.override_spent)
    outcome = request_refund(order_id, request, deps=deps)
    return JSONResponse(status_code=200 if outcome.repeated else 201, content=asdict(outcome))


@router.post("/orders/{order_id}/chargebacks", status_code=201)
def chargeback(order_id: OrderId, body: ChargebackBody, deps: DepsParam, who: Support) -> JSONResponse:
    """Record a chargeback the gateway cannot report (PayGlocal has no dispute API): the credits it paid for
    are reversed once, like a lost dispute (audited). 201, or 200 with ``repeated`` for the same chargeback
    recorded before. Refused (422): ``reason_required``, ``order_not_paid``, ``above_captured``."""
    outcome = record_chargeback(order_id, amount_minor=body.amount_minor, reason=body.reason,
                                requested_by=_requester(body.requested_by, who), deps=deps)
    return JSONResponse(status_code=200 if outcome.repeated else 201, content=asdict(outcome))


@router.get("/events")
def list_events(deps: DepsParam, who: Support,
                order_id: Annotated[str | None, Query(max_length=40, pattern=ID_PATTERN)] = None,
                state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1_000)] = 200) -> list[dict[str, Any]]:
    """Order event deliveries to the billing backend, newest first: one order's, the dead ones, or all."""
    return [asdict(row) for row in deliveries.list_deliveries(deps=deps, order_id=order_id, state=state,
                                                              limit=limit)]


@router.post("/events/replay")
def replay_events(body: EventReplayBody, deps: DepsParam, actors: ActorsParam, who: Support) -> dict[str, Any]:
    """Send deliveries again now (dead ones; with ``again``, delivered ones too), audited. Name delivery ids,
    an order, or ``all_dead``."""
    if not (body.delivery_ids or body.order_id or body.all_dead):
        raise HTTPException(status_code=422, detail="name delivery_ids, order_id or all_dead")
    orders = deliveries.replay_audited(deps=deps, send=partial(enqueue.event_delivery, actors),
                                       requested_by=_requester(body.requested_by, who),
                                       reason=body.reason, delivery_ids=body.delivery_ids, order_id=body.order_id,
                                       again=body.again)
    return {"orders": orders}


@router.get("/settlements/report", response_model=None)
def settlements_report(deps: DepsParam, who: Finance,
                       start: Annotated[date, Query(alias="from", description="first settlement day (UTC)")],
                       end: Annotated[date, Query(alias="to", description="last settlement day (UTC)")],
                       gateway: Annotated[str | None, Query(max_length=16, pattern=ID_PATTERN)] = None,
                       format: Annotated[Literal["json", "csv"], Query()] = "json") -> dict[str, Any] | Response:
    """Settlements from ``from`` to ``to``: totals per day, gateway and currency (gross, fees, tax, refunds,
    disputes, net; minor units) and every bucket with its rows. ``format=csv``: the accountant's CSV (major units).
    At most 400 days."""
    if end < start or (end - start).days > 400 or start.year < 2000 or end.year > 2999:
        raise HTTPException(status_code=422, detail="'to' must be on or after 'from', at most 400 days later, "
                                                    "both between 2000 and 2999")
    found = settlement_report.report(deps=deps, start=start, end=end, gateway=gateway, rows_per_bucket=None)
    if format == "csv":
        return Response(settlement_report.as_csv(found), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="settlements-{start}-{end}.csv"'})
    return settlement_report.as_json(found)


@router.post("/webhooks/{gateway}")
async def receive_webhook(gateway: Annotated[str, Path(max_length=32, pattern=ID_PATTERN)], request: Request,
                          deps: DepsParam, actors: ActorsParam) -> JSONResponse:
    """A gateway's webhook: verified on the raw bytes, stored, acknowledged, then processed by a worker."""
    if gateway not in deps.gateways:
        raise HTTPException(status_code=404, detail=f"no gateway named {gateway!r}")
    limit = deps.settings.max_body_bytes
    raw, complete = await _read_at_most(request, limit)
    if not complete:
        stored = await run_in_threadpool(intake.store_rejected, gateway, raw, dict(request.headers),
                                         f"oversized: more than {limit} bytes (the first {limit} kept)", deps=deps)
        return JSONResponse(status_code=413, content={"status": "rejected", "inbox_id": stored.inbox_id,
                                                      "reason": stored.reason})
    stored = await run_in_threadpool(_store_and_enqueue, actors, gateway, raw, dict(request.headers), deps)
    code = 200  # stored and signed by the gateway: acknowledged even when refused (see intake.Stored)
    if stored.status == "rejected" and not stored.authentic:
        code = 415 if stored.reason.startswith("unsupported_content_type") else 400
    return JSONResponse(status_code=code, content={"status": stored.status, "inbox_id": stored.inbox_id,
                                                   **({"reason": stored.reason} if stored.reason else {})})


def _store_and_enqueue(actors: Actors, gateway: str, raw: bytes, headers: dict[str, str], deps: Deps) -> intake.Stored:
    """Store (committed), then enqueue: one trip to the thread pool for both blocking calls."""
    stored = intake.store_webhook(gateway, raw, headers, deps=deps)
    if stored.enqueue:
        enqueue.stored_webhook(actors, deps.coordination, stored.inbox_id,
                               stored.coalesce_key if deps.settings.coalesce_webhooks else None, gateway)
    return stored


async def _read_at_most(request: Request, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether that was all of it."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True



def create_app(deps: Callable[[], Deps], actors: Callable[[], Actors], *,
               max_body_bytes: int = Settings.model_fields["max_body_bytes"].default,
               console_secret: str | None = None, console_secure_cookies: bool = True,
               console_session_s: int = Settings.model_fields["console_session_s"].default) -> FastAPI:
    """The API over ``deps()`` (the process's Deps; tests swap them per test) and ``actors()`` (what it
    enqueues with; built on first use in tests, so an app needs no broker until a request does). With a
    ``console_secret``, the support console is served under ``/console``."""
    app = FastAPI(title="gateway-recon", version="0.1.0",
                  description="Checkout callbacks, gateway webhooks, reconciliation and exactly-once crediting.")
    app.state.deps, app.state.actors = deps, actors
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    app.add_exception_handler(OrderRejected, _rejected)
    app.add_exception_handler(GatewayUnavailable, _gateway_down)
    app.add_exception_handler(UnknownOrder, _unknown)
    app.add_exception_handler(RefundRefused, _refund_refused)  # the most specific class wins: not ReconError's 409
    app.add_exception_handler(order_requests.KeyReused, _unprocessable)
    app.add_exception_handler(transactions.BadCursor, _unprocessable)
    app.add_exception_handler(ReconError, _conflict)  # KeyInUse among them: 409, retry
    app.include_router(router)
    if console_secret:
        app.mount("/console", create_console(deps, actors, secret=console_secret,
                                             secure_cookies=console_secure_cookies, session_s=console_session_s))
    return app


def app_from_env() -> FastAPI:
    """``recon web``'s app (uvicorn ``--factory``): settings from the environment, broker, Deps and actors."""
    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    unscoped = sorted(set(settings.api_tokens) - set(settings.api_token_scopes))
    if unscoped:  # least privilege: every token should say what it may do (RECON_API_TOKEN_SCOPES)
        get_logger().warning("api_tokens_without_scopes", tokens=unscoped, allowed="everything")
    if settings.console_secret is None:
        get_logger().info("console_off", why="RECON_CONSOLE_SECRET is not set")
    runtime = build_runtime(settings)
    secret = settings.console_secret.get_secret_value() if settings.console_secret else None
    app = create_app(lambda: runtime.deps, lambda: runtime.actors, max_body_bytes=settings.max_body_bytes,
                     console_secret=secret, console_secure_cookies=settings.console_cookie_secure,
                     console_session_s=settings.console_session_s)
    freeze_startup_heap()
    return app
