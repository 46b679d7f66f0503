"""The console's actions (POST, each behind the CSRF check and a role): sign in and out, and support's work.
Each action needs a reason, is audited with the person's name, says what happened on the next page
(post, redirect, get) and calls the same service as the CLI and the API."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ops import enqueue
from ops.api_models import OrderId
from ops.console import render, session
from ops.console.people import PasswordChecks, Person, SignInThrottle, authenticate
from ops.console.session import CheckedForm, allowed, flash
from ops.context import ActorsParam, DepsParam
from worker.domain.errors import GatewayUnavailable, ReconError
from worker.queues import QUEUES
from worker.services import deliveries, support
from worker.services.dead_letters import list_dead_letters, replay_dead_letter
from worker.services.recheck import recheck_order
from worker.services.refunds import RefundRefused, RefundRequest, request_refund
from worker.services.review import resolve_review

router = APIRouter()
throttle = SignInThrottle()  #: per name
addresses = SignInThrottle(attempts=30)  #: per client address, across names
checks = PasswordChecks()
#: How long a recheck from the console waits for the gateway before saying it goes on in the background.
RECHECK_WAIT_S = 15.0


class Refused(Exception):
    """The form asks for something that cannot be done as asked (no reason, a bad amount)."""


def _text(form: FormData, name: str, *, required: bool = False, limit: int = 500) -> str | None:
    value = form.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if required and not value:
        raise Refused(f"a {name.replace('_', ' ')} is required")
    if len(value) > limit:
        raise Refused(f"the {name.replace('_', ' ')} is longer than {limit} characters")
    return value or None


def _number(form: FormData, name: str, *, required: bool = False) -> int | None:
    """A database id from the form: ASCII digits, a bigint."""
    text = _text(form, name, required=required, limit=19)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**63):
        raise Refused(f"the {name.replace('_', ' ')} is a whole number")
    return int(text)


def _reason(form: FormData) -> str:
    return _text(form, "reason", required=True)  # type: ignore[return-value]


def _who(person: Person) -> str:
    return f"{person.name} (console)"


def _outcome_of(request: Request, order_id: str, action, *args, **kwargs) -> Response:
    """Run ``action``; a refusal becomes an error message on the order's page, never a stack trace."""
    try:
        action(*args, **kwargs)
    except (Refused, RefundRefused, ReconError, ValueError) as exc:
        flash(request, "error", str(exc) if not isinstance(exc, RefundRefused) else f"{exc.code}: {exc.message}")
    return render.back_to(request, f"/orders/{order_id}")


@router.post("/login")
def login(request: Request, deps: DepsParam, form: CheckedForm) -> Response:
    try:
        name, wanted = _text(form, "name", limit=64) or "", render.safe_next(request, _text(form, "next", limit=400))
    except Refused as exc:
        flash(request, "error", str(exc))
        return render.back_to(request, "/login")
    password = form.get("password")
    client = f"ip:{request.client.host if request.client else '-'}"  # behind a proxy: uvicorn --proxy-headers
    if not (throttle.attempt(name) and addresses.attempt(client)):
        flash(request, "error", "too many sign-ins for this name or from this address: wait 15 minutes")
        return render.back_to(request, "/login")
    with checks.slot() as free:
        if not free:
            flash(request, "error", "the console is busy signing others in: try again in a moment")
            return render.back_to(request, "/login")
        person = authenticate(deps.settings.console_accounts, name, password if isinstance(password, str) else "")
    if person is None:
        flash(request, "error", "wrong name or password")
        return render.back_to(request, "/login")
    throttle.succeeded(name)
    addresses.succeeded(client)
    session.begin(request, person, deps.settings.console_accounts[name], lasts_s=deps.settings.console_session_s)
    return RedirectResponse(wanted, status_code=303)


@router.post("/logout")
def logout(request: Request, form: CheckedForm) -> Response:
    session.end(request)
    flash(request, "info", "signed out")
    return render.back_to(request, "/login")


@router.post("/orders/{order_id}/recheck")
async def recheck(request: Request, order_id: OrderId, deps: DepsParam, form: CheckedForm,
                  person: Annotated[Person, allowed("recheck")]) -> Response:
    """Ask the gateway now and apply what it says; with ``dry_run``, only show what that would do."""
    try:
        reason = _reason(form)
        if form.get("dry_run"):
            found = await run_in_threadpool(support.dry_run, order_id, deps=deps)
            await run_in_threadpool(support.audit, "recheck_dry_run", deps=deps, requested_by=_who(person),
                                    reason=reason, order_id=order_id, outcome=found)
            flash(request, "info", f"Dry run: the order would become {found['would_become']} ({found['reason']})",
                  {"gateway payments": found["gateway_payments"], "would grant": found["would_grant"]})
        else:
            done, outcome = await enqueue.within(RECHECK_WAIT_S, recheck_order, order_id, _who(person),
                                                 reason=reason, deps=deps)
            flash(request, "info", f"Rechecked: {outcome.from_state} → {outcome.state} ({outcome.reason})" if done
                  else "The gateway is slow: the recheck goes on and its result will show here")
    except GatewayUnavailable as exc:
        flash(request, "error", f"the gateway did not answer: {exc} (nothing changed; try again)")
    except (Refused, ReconError) as exc:
        flash(request, "error", str(exc))
    return render.back_to(request, f"/orders/{order_id}")


def _refund(order_id: str, form: FormData, person: Person, request: Request, deps) -> None:
    amount = _text(form, "amount_minor", limit=19)
    if amount is not None and not (amount.isascii() and amount.isdigit() and 0 < int(amount) < 2**63):
        raise Refused("the amount is a whole number of minor units (paise, cents) above 0, or empty for all")
    done = request_refund(order_id, RefundRequest(
        int(amount) if amount else None, _reason(form), _who(person), payment_id=_text(form, "payment_id", limit=64),
        override_spent=bool(form.get("override_spent"))), deps=deps)
    repeated = " (the same request as before: nothing new was started)" if done.repeated else ""
    flash(request, "error" if done.state == "failed" else "info",
          f"Refund {done.refund_id} of {done.amount_minor:,} {done.currency}: {done.state}{repeated}"
          + (f" ({done.failure_reason})" if done.failure_reason else ""))


@router.post("/orders/{order_id}/refund")
def refund(request: Request, order_id: OrderId, deps: DepsParam, form: CheckedForm,
           person: Annotated[Person, allowed("refund")]) -> Response:
    """Refund fully (no amount) or partly; more than the unspent credits only with ``override_spent``."""
    return _outcome_of(request, order_id, _refund, order_id, form, person, request, deps)


def _review(order_id: str, form: FormData, person: Person, request: Request, deps) -> None:
    decision = _text(form, "decision", required=True, limit=16)
    done = resolve_review(order_id, decision, reason=_reason(form), requested_by=_who(person), deps=deps)
    flash(request, "info", f"Review decided: {done.decision}; the order is {done.state}"
          + (", credited" if done.granted else ""))


@router.post("/orders/{order_id}/review")
def review(request: Request, order_id: OrderId, deps: DepsParam, form: CheckedForm,
           person: Annotated[Person, allowed("review")]) -> Response:
    """Credit, close, or close and refund an order in needs_review."""
    return _outcome_of(request, order_id, _review, order_id, form, person, request, deps)


def _replay_inbox(order_id: str, form: FormData, person: Person, request: Request, deps, actors) -> None:
    inbox_id = _number(form, "inbox_id", required=True)
    chosen = support.replay_inbox(deps=deps, requested_by=_who(person), reason=_reason(form), ids=[inbox_id])
    for replayed in chosen:
        enqueue.inbox_event(actors, replayed, order_id=order_id)
    flash(request, "info", f"Stored event {inbox_id} queued again" if chosen else f"No stored event {inbox_id}")


@router.post("/orders/{order_id}/replay-inbox")
def replay_inbox(request: Request, order_id: OrderId, deps: DepsParam, actors: ActorsParam, form: CheckedForm,
                 person: Annotated[Person, allowed("replay")]) -> Response:
    """Process a stored webhook or callback again (idempotent: nothing is credited twice)."""
    return _outcome_of(request, order_id, _replay_inbox, order_id, form, person, request, deps, actors)


@router.post("/events/replay")
def replay_events(request: Request, deps: DepsParam, actors: ActorsParam, form: CheckedForm,
                  person: Annotated[Person, allowed("replay")]) -> Response:
    """Send an order's event deliveries again: the dead ones, or (``again``) the delivered ones too."""
    back = _text(form, "back", limit=200) or "/lists/deliveries"
    back = back if render.is_console_path(back) else "/lists/deliveries"
    try:
        delivery = _number(form, "delivery_id")
        order_id = _text(form, "order_id", limit=40)
        if not (delivery or order_id):
            raise Refused("name a delivery (its number) or an order")
        orders = deliveries.replay_audited(
            deps=deps, send=partial(enqueue.event_delivery, actors), requested_by=_who(person),
            reason=_reason(form), delivery_ids=[delivery] if delivery else None, order_id=order_id,
            again=bool(form.get("again")))
        flash(request, "info", f"{len(orders)} deliveries queued again" if orders else "nothing to send again")
    except Refused as exc:
        flash(request, "error", str(exc))
    return render.back_to(request, back)


@router.post("/dead-letters/replay")
def replay_dead_letters(request: Request, deps: DepsParam, actors: ActorsParam, form: CheckedForm,
                        person: Annotated[Person, allowed("replay")]) -> Response:
    """Enqueue a dead-lettered message again, once its cause is fixed."""
    try:
        reason, wanted = _reason(form), _text(form, "message_id", required=True, limit=64)
        chosen = [letter for letter in list_dead_letters(deps=deps, queues=QUEUES) if letter.message_id == wanted]
        for letter in chosen:
            replay_dead_letter(letter, deps=deps, broker=actors.check_order.broker)
        support.audit("dlq_replay", deps=deps, requested_by=_who(person), reason=reason,
                      outcome={"message_ids": [letter.message_id for letter in chosen]})
        flash(request, "info", f"message {wanted} queued again" if chosen else f"no dead letter {wanted}")
    except (Refused, RuntimeError) as exc:
        flash(request, "error", str(exc))
    return render.back_to(request, "/lists/dead-letters")
