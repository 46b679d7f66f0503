"""``POST /orders`` with an ``Idempotency-Key``: the billing backend retries, a customer clicks Pay twice.

The same key with the same body gets the answer the first request got (the same order, the same checkout);
with a different body it is refused. The key is taken before the order is made, so two requests racing with
one key make one order: the second is told to retry (:class:`KeyInUse`) until the first has answered. A key
whose request died half-way (no answer after :data:`TAKEN_FOR`) may be taken over. Keys are kept
:data:`KEPT_FOR` (at least the 24 hours billing relies on), then dropped by the scheduler.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from db.models import OrderRequest
from worker.deps import Deps
from worker.domain.errors import ReconError
from worker.services.orders import CreatedOrder, PurchaseRequest, create_order

TAKEN_FOR = timedelta(minutes=2)
KEPT_FOR = timedelta(hours=48)


class KeyReused(ReconError):
    """The key was used for a different request body."""


class KeyInUse(ReconError):
    """A request with this key is still being answered: retry shortly."""


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def create_order_once(request: PurchaseRequest, key: str, body: dict[str, Any], *, deps: Deps,
                      answer: Callable[[CreatedOrder], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The answer to this request, made once per (organisation, key); returns it and whether it is a replay.

    Raises:
        KeyReused: the key came with another body before.
        KeyInUse: the first request with this key has not answered yet.
        OrderRejected, GatewayUnavailable: as :func:`create_order` (the key is freed: a retry may succeed).
    """
    digest = request_hash(body)
    with deps.unit() as uow:
        row = uow.session.get(OrderRequest, (request.organisation_id, key), with_for_update=True)
        if row is not None:
            if row.request_hash != digest:
                raise KeyReused(f"Idempotency-Key {key} was used with a different request")
            if row.state == "done":
                return dict(row.response or {}), True
            if row.created_at > uow.now - TAKEN_FOR:
                raise KeyInUse(f"a request with Idempotency-Key {key} is still being answered; retry shortly")
            row.created_at = uow.now  # its request died before answering: this one takes the key over
        else:
            uow.session.add(OrderRequest(organisation_id=request.organisation_id, idempotency_key=key,
                                         request_hash=digest, state="started", created_at=uow.now))
        try:
            uow.commit()
        except IntegrityError:
            raise KeyInUse(f"a request with Idempotency-Key {key} is still being answered; retry shortly") from None
    try:
        response = answer(create_order(request, deps=deps))
    except BaseException:
        _free(request.organisation_id, key, deps=deps)
        raise
    with deps.unit() as uow:
        row = uow.session.get(OrderRequest, (request.organisation_id, key), with_for_update=True)
        row.state, row.order_id, row.response = "done", response.get("order_id"), response
        uow.commit()
    return response, False


def _free(organisation_id: str, key: str, *, deps: Deps) -> None:
    with deps.unit() as uow:
        uow.session.execute(delete(OrderRequest).where(OrderRequest.organisation_id == organisation_id,
                                                       OrderRequest.idempotency_key == key))
        uow.commit()


def forget_old_keys(*, deps: Deps) -> int:
    """Drop keys older than :data:`KEPT_FOR` (the scheduler, each round)."""
    with deps.unit() as uow:
        gone = uow.session.execute(delete(OrderRequest).where(OrderRequest.created_at < uow.now - KEPT_FOR)).rowcount
        uow.commit()
    return gone
