"""Order events to the billing backend on Postgres: written with the change, signed, in order, at least once.

The receiver is an ``httpx.MockTransport`` that verifies every delivery with the ``standardwebhooks`` library
(as a receiver would) and answers as each test tells it to."""

from __future__ import annotations

import base64
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from db.models import DeliveryAttempt, EventDelivery, OrderEvent
from tests.support import balance, new_order, order_row
from worker.domain.events import EventType
from worker.services import deliveries, outbox, refunds
from worker.services.money import RefundRequest
from worker.services.poll import reconcile_order
from worker.settings import EventEndpoint

SECRET = "whsec_" + base64.b64encode(b"billing-backend-secret-32-bytes!").decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"the-next-secret-after-rotation!!").decode()


class Receiver:
    """The billing backend's endpoint: verifies each delivery with the library, keeps what it accepted."""

    def __init__(self, secret: str = SECRET):
        self.webhook, self.accepted, self.refused = Webhook(secret), [], []
        self.failures_left, self.lock = 0, threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        try:
            event = self.webhook.verify(request.content, dict(request.headers))
        except WebhookVerificationError as exc:
            self.refused.append(str(exc))
            return httpx.Response(401)
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                return httpx.Response(503, text="down for maintenance")
            self.accepted.append((request.headers["webhook-id"], event))
        return httpx.Response(204)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def types(self) -> list[str]:
        return [event["type"] for _, event in self.accepted]


def with_endpoints(deps, *secrets: str, max_attempts: int = 12):
    endpoint = EventEndpoint(name="billing", url="https://billing.example/hooks", secrets=list(secrets or [SECRET]))
    settings = deps.settings.model_copy(update={"event_endpoints": [endpoint], "event_max_attempts": max_attempts})
    return dataclasses.replace(deps, settings=settings)


def paid_order(deps, simulator):
    order = new_order(deps, "org-in", credits=5_000)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    reconcile_order(order.id, deps=deps)
    assert order_row(deps, order.id).state == "paid"
    return order_row(deps, order.id)


def events(deps, order_id: str) -> list[OrderEvent]:
    with deps.sessions() as session:
        return list(session.execute(select(OrderEvent).where(OrderEvent.order_id == order_id)
                                    .order_by(OrderEvent.sequence)).scalars())


def delivery_states(deps, order_id: str) -> list[str]:
    with deps.sessions() as session:
        return list(session.execute(select(EventDelivery.state).where(EventDelivery.order_id == order_id)
                                    .order_by(EventDelivery.sequence)).scalars())


def test_every_change_writes_an_event_with_the_change_and_each_is_delivered_once_in_order(deps, org, simulator):
    deps = with_endpoints(deps)
    order = paid_order(deps, simulator)
    refunds.request_refund(order.id, RefundRequest(order.amount_minor // 2, "half back", "support:alice"), deps=deps)
    written = events(deps, order.id)
    assert [e.type for e in written][-3:] == ["order.paid", "credits.reversed", "order.partly_refunded"]
    assert [e.sequence for e in written] == list(range(1, len(written) + 1))
    paid = next(e for e in written if e.type == "order.paid").payload["data"]
    assert (paid["order"]["status"], paid["credits_granted"]) == ("Paid", 5_000)
    assert written[-1].payload["data"]["order"]["status"] == "Partly refunded"

    receiver = Receiver()
    assert deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport) == len(written)
    assert [event_id for event_id, _ in receiver.accepted] == [e.event_id for e in written]
    assert [event["data"]["sequence"] for _, event in receiver.accepted] == [e.sequence for e in written]
    assert deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport) == 0  # none twice
    assert set(delivery_states(deps, order.id)) == {"delivered"} and receiver.refused == []
    assert balance(deps) == 2_500


def test_a_failing_endpoint_holds_the_orders_later_events_back_and_gets_them_in_order_later(deps, org, simulator):
    deps = with_endpoints(deps)
    order = paid_order(deps, simulator)
    refunds.request_refund(order.id, RefundRequest(None, "all back", "support:alice"), deps=deps)
    receiver = Receiver()
    receiver.failures_left = 2
    assert deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport) == 0
    assert receiver.accepted == []  # nothing behind the failing head went out
    with deps.sessions() as session:
        head = session.execute(select(EventDelivery).order_by(EventDelivery.sequence)).scalars().first()
        assert (head.state, head.attempts, head.last_status) == ("pending", 1, 503)
        assert head.next_attempt_at > deps.clock.now()
    deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
    deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
    assert [event_id for event_id, _ in receiver.accepted] == [e.event_id for e in events(deps, order.id)]
    with deps.sessions() as session:
        assert session.execute(text("SELECT count(*) FROM delivery_attempts WHERE status_code = 503")).scalar() == 2


def test_a_dead_delivery_waits_for_a_replay_and_the_order_keeps_its_order(deps, org, simulator):
    deps = with_endpoints(deps, max_attempts=2)
    order = paid_order(deps, simulator)
    receiver = Receiver()
    receiver.failures_left = 2
    for _ in range(3):
        deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
    assert delivery_states(deps, order.id)[0] == "dead" and receiver.accepted == []
    refunds.request_refund(order.id, RefundRequest(None, "all back", "support:alice"), deps=deps)
    deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
    assert receiver.accepted == []  # the refund's events wait behind the dead one
    assert deliveries.replay(deps=deps, endpoint="billing") == [("billing", order.id)]
    deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
    assert [event["data"]["sequence"] for _, event in receiver.accepted] == [e.sequence for e in events(deps, order.id)]


def test_two_senders_at_once_send_each_event_once(deps, org, simulator):
    deps = with_endpoints(deps)
    order = paid_order(deps, simulator)
    refunds.request_refund(order.id, RefundRequest(order.amount_minor // 4, "a quarter", "support:alice"), deps=deps)
    receiver, start = Receiver(), threading.Barrier(4)

    def send(_):
        start.wait(timeout=30)
        return deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)

    with ThreadPoolExecutor(max_workers=4) as pool:
        sent = sum(pool.map(send, range(4)))
    ids = [event_id for event_id, _ in receiver.accepted]
    assert len(ids) == len(set(ids)) == sent == len(events(deps, order.id))
    assert ids == [e.event_id for e in events(deps, order.id)]


def test_every_secret_signs_so_a_receiver_on_either_side_of_a_rotation_verifies(deps, org, simulator):
    deps = with_endpoints(deps, SECRET, NEXT_SECRET)
    order = paid_order(deps, simulator)
    old, new, wrong = Receiver(SECRET), Receiver(NEXT_SECRET), Receiver("whsec_" + base64.b64encode(b"x" * 32).decode())
    for receiver in (old, new):
        deliveries.replay(deps=deps, endpoint="billing", dead_only=False)
        deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
        assert receiver.types() and receiver.refused == []
    deliveries.replay(deps=deps, endpoint="billing", dead_only=False)
    deliveries.deliver_order("billing", order.id, deps=deps, transport=wrong.transport)
    assert wrong.accepted == [] and wrong.refused == ["No matching signature found"]


def test_the_sweep_claims_due_deliveries_once_per_claim_window(deps, org, simulator):
    deps = with_endpoints(deps)
    order = paid_order(deps, simulator)
    assert deliveries.claim_due(deps=deps) == [("billing", order.id)]
    assert deliveries.claim_due(deps=deps) == []  # claimed: not enqueued again every round


def test_events_are_handed_to_the_sender_once_committed_and_never_for_a_rolled_back_change(deps, org, simulator):
    deps = with_endpoints(deps)
    told: list[tuple[list[str], list[str]]] = []

    def deliver_now(orders: list[str]) -> None:  # what it sees: the orders, and their deliveries as committed
        with deps.sessions() as session:
            told.append((orders, list(session.execute(select(EventDelivery.state)).scalars())))

    deps.deliver_now = deliver_now
    order = paid_order(deps, simulator)
    assert told and all(orders == [order.id] and states for orders, states in told)
    before = len(told)
    with pytest.raises(RuntimeError), deps.unit() as uow:
        locked = uow.order(order.id, lock=True)
        outbox.record(uow.session, locked, EventType.ORDER_CLOSED, now=uow.now)
        raise RuntimeError("the change fails before its commit")
    assert len(told) == before and events(deps, order.id)[-1].type == "order.paid"  # nothing written, none told


def test_no_endpoint_configured_keeps_the_events_and_sends_nothing(deps, org, simulator):
    order = paid_order(deps, simulator)
    assert [e.type for e in events(deps, order.id)][-1] == "order.paid"
    assert delivery_states(deps, order.id) == [] and deliveries.claim_due(deps=deps) == []


@pytest.mark.parametrize("answer", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_a_receiver_that_cannot_be_reached_is_a_failed_attempt_in_the_log(deps, org, simulator, answer):
    deps = with_endpoints(deps)
    order = paid_order(deps, simulator)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise answer

    assert deliveries.deliver_order("billing", order.id, deps=deps, transport=httpx.MockTransport(unreachable)) == 0
    with deps.sessions() as session:
        attempt = session.execute(select(DeliveryAttempt)).scalar_one()
        assert attempt.status_code is None and type(answer).__name__ in attempt.error


def test_the_api_lists_an_orders_deliveries_and_replays_a_dead_one_audited(deps, org, simulator):
    from fastapi.testclient import TestClient

    from db.models import SupportAction
    from tests.runtime import CURRENT, app
    from tests.support import AUTH

    deps = CURRENT["deps"] = with_endpoints(deps, max_attempts=1)
    order = paid_order(deps, simulator)
    receiver = Receiver()
    receiver.failures_left = 1
    deliveries.deliver_order("billing", order.id, deps=deps, transport=receiver.transport)
    with TestClient(app, headers=AUTH) as client:
        dead = client.get("/events", params={"state": "dead"}).json()
        assert [(d["order_id"], d["attempts"], d["last_status"]) for d in dead] == [(order.id, 1, 503)]
        assert client.post("/events/replay", json={"reason": "fixed", "requested_by": "alice"}).status_code == 422
        answer = client.post("/events/replay", json={"order_id": order.id, "reason": "billing was down",
                                                     "requested_by": "alice"})
        assert answer.json() == {"orders": [order.id]}
        assert {d["state"] for d in client.get("/events", params={"order_id": order.id}).json()} == {"pending"}
    with deps.sessions() as session:
        audit = session.execute(select(SupportAction).where(SupportAction.action == "events_replay")).scalar_one()
        assert audit.reason == "billing was down" and audit.requested_by.startswith("alice")


def test_the_published_verification_examples_accept_a_real_delivery_and_refuse_a_tampered_one(deps, org,
                                                                                               simulator):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "ops" / "contract" / "examples"
    deps = with_endpoints(deps)
    order = paid_order(deps, simulator)
    sent: list[httpx.Request] = []

    def keep(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    deliveries.deliver_order("billing", order.id, deps=deps, transport=httpx.MockTransport(keep))
    request = sent[-1]
    env = {**os.environ, "RECON_EVENT_SECRET": SECRET, "WEBHOOK_ID": request.headers["webhook-id"],
           "WEBHOOK_TIMESTAMP": request.headers["webhook-timestamp"],
           "WEBHOOK_SIGNATURE": request.headers["webhook-signature"]}
    commands = [[sys.executable, str(examples / "verify_order_event.py")]]
    node = shutil.which("node")
    if node:
        commands.append([node, str(examples / "verify_order_event.mjs")])
    elif os.environ.get("CI"):
        pytest.fail("node is needed in CI for the JavaScript example")
    for command in commands:
        good = subprocess.run(command, input=request.content, env=env, capture_output=True, timeout=30)
        assert good.returncode == 0, good.stderr
        assert good.stdout.decode().split() == ["order.paid", order.id, str(len(events(deps, order.id)))]
        tampered = subprocess.run(command, input=request.content.replace(b"Paid", b"Pain"), env=env,
                                  capture_output=True, timeout=30)
        assert tampered.returncode == 1 and b"refused" in tampered.stderr
