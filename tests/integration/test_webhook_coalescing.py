"""Webhook messages coalesced per payment: a payment's authorized, captured and order.paid webhooks are each
stored (and acknowledged) at once, but while a message about that payment is queued the later ones send
none: its worker releases the payment's marker, then gathers every pending row of the payment. Nothing may
be left pending with no message on its way, whatever the order of sends, releases and applies."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from fastapi.testclient import TestClient
from sqlalchemy import text

from gateways.port import RemotePayment, RemoteStatus, WebhookEvent
from gateways.razorpay.signature import sign
from tests.runtime import app
from tests.support import balance, inbox_rows, ledger_count, new_order, order_row
from worker.contract import BadMessage, InboxEventArgs
from worker.coordination import QUEUED_MARKER_TTL_MS, Coordination
from worker.queues import WEBHOOK_QUEUE
from worker.services.inbox import FOLLOW_UP_PENDING, process_inbox_event
from worker.services.intake import coalesce_key
from worker.settings import Settings


@pytest.fixture
def client(deps, broker):
    with TestClient(app) as test_client:
        yield test_client


def payment_webhooks(simulator, order) -> tuple[str, list[tuple[str, bytes, dict]]]:
    """The simulator's webhooks of one successful payment, in the order it sends them: (type, body, headers)."""
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    hooks = [(json.loads(e.body)["event"], e.body, dict(e.headers)) for e in simulator.sim.webhook_events()
             if json.loads(e.body)["payload"]["payment"]["entity"]["order_id"] == order.gateway_order_id]
    payment_id = json.loads(hooks[0][1])["payload"]["payment"]["entity"]["id"]
    return payment_id, hooks


def post(client, hook) -> dict:
    _, body, headers = hook
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def queued(broker) -> list[dramatiq.Message]:
    """The webhook queue's messages, oldest first."""
    raw = broker.client.hvals(f"{broker.namespace}:{WEBHOOK_QUEUE}.msgs")
    return sorted((dramatiq.Message.decode(m) for m in raw), key=lambda m: m.message_timestamp)


def run(actors, broker, message: dramatiq.Message) -> None:
    """What a worker does with the message (the contract check and the service call), then ack it."""
    actors.process_inbox_event.fn(*message.args, **message.kwargs)
    broker.client.hdel(f"{broker.namespace}:{WEBHOOK_QUEUE}.msgs", message.options["redis_message_id"])


def marker(broker, payment_id: str) -> str:
    return f"{broker.namespace}:queued:razorpay:{payment_id}"


def test_a_payments_three_webhooks_send_one_message_which_applies_all_three(client, deps, org, simulator, broker,
                                                                            actors):
    order = new_order(deps)
    payment_id, hooks = payment_webhooks(simulator, order)
    assert [t for t, _, _ in hooks] == ["payment.authorized", "payment.captured", "order.paid"]
    stored = [post(client, hook) for hook in hooks]
    assert [s["status"] for s in stored] == ["accepted"] * 3
    [message] = queued(broker)
    assert message.args == (stored[0]["inbox_id"], f"razorpay:{payment_id}")
    assert 0 < broker.client.pttl(marker(broker, payment_id)) <= QUEUED_MARKER_TTL_MS
    assert [r.status for r in inbox_rows(deps)] == ["pending"] * 3
    run(actors, broker, message)
    assert [r.status for r in inbox_rows(deps)] == ["processed"] * 3
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1 and balance(deps) == 5_000
    assert not broker.client.exists(marker(broker, payment_id))


def test_a_webhook_stored_after_the_message_started_sends_a_message_of_its_own(client, deps, org, simulator, broker,
                                                                               actors):
    order = new_order(deps)
    _, (authorized, captured, paid) = payment_webhooks(simulator, order)
    post(client, authorized)
    [first] = queued(broker)
    run(actors, broker, first)  # releases the marker: what comes next is not gathered by it
    assert order_row(deps, order.id).state == "pending"  # authorized, awaiting the auto-capture
    post(client, captured)
    post(client, paid)
    [second] = queued(broker)  # the captured webhook's, which order.paid joins
    assert second.args[0] == inbox_rows(deps)[1].id
    run(actors, broker, second)
    assert [r.status for r in inbox_rows(deps)] == ["processed"] * 3
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1


def test_a_message_whose_row_was_applied_without_it_still_applies_the_rows_that_sent_none(client, deps, org, simulator,
                                                                                         broker, actors):
    """The queued message's own row is applied by another message first (the inbox sweep's, a replay's):
    the rows that relied on the queued message are applied when it runs, not left for the sweep."""
    order = new_order(deps)
    _, (authorized, captured, paid) = payment_webhooks(simulator, order)
    first = post(client, authorized)
    process_inbox_event(first["inbox_id"], deps=deps)  # a message without the marker: leaves it set
    post(client, captured)
    post(client, paid)
    [message] = queued(broker)  # only the authorized webhook's
    assert [r.status for r in inbox_rows(deps)] == ["processed", "pending", "pending"]
    run(actors, broker, message)
    assert [r.status for r in inbox_rows(deps)] == ["processed"] * 3
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1 and balance(deps) == 5_000


def test_refund_webhooks_always_send_their_own_messages(client, deps, org, simulator, broker, actors):
    order = new_order(deps)
    payment_id, hooks = payment_webhooks(simulator, order)
    for hook in hooks:
        post(client, hook)
    assert len(queued(broker)) == 1
    seen = len(simulator.sim.webhook_events())
    simulator.sim.refund(payment_id, deliver_webhooks=False)
    simulator.sim.advance_clock(simulator.sim.config.refund_processed_after_s + 1)
    refunds = [(json.loads(e.body)["event"], e.body, dict(e.headers)) for e in simulator.sim.webhook_events()[seen:]]
    assert refunds and all(t.startswith("refund.") for t, _, _ in refunds)
    for hook in refunds:
        post(client, hook)
    messages = queued(broker)
    assert len(messages) == 1 + len(refunds)  # the marker set by the payment's message held none of them back
    assert all(len(m.args) == 1 for m in messages[1:])
    for message in messages:
        run(actors, broker, message)
    assert {r.status for r in inbox_rows(deps)} == {"processed"}
    assert balance(deps) == 0 and ledger_count(deps) >= 1


def test_a_send_that_fails_releases_the_marker_so_the_next_webhook_sends_one(client, deps, org, simulator, broker,
                                                                             actors):
    order = new_order(deps)
    payment_id, (authorized, captured, _) = payment_webhooks(simulator, order)
    actor = actors.process_inbox_event
    working, actor.broker = actor.broker, RedisBroker(url="redis://127.0.0.1:1/0")  # nothing listens there
    try:
        assert post(client, authorized)["status"] == "accepted"  # stored; its row waits for the inbox sweep
    finally:
        actor.broker = working
    assert queued(broker) == [] and not broker.client.exists(marker(broker, payment_id))
    post(client, captured)
    [message] = queued(broker)
    run(actors, broker, message)  # gathers the stranded authorized row too
    assert [r.status for r in inbox_rows(deps)] == ["processed"] * 2


def test_a_message_with_a_malformed_coalesce_key_breaks_the_contract(deps, actors):
    with pytest.raises(BadMessage, match="coalesce_key"):
        actors.process_inbox_event.fn(1, "razorpay:pay 1; DEL *")


def test_without_a_shared_redis_every_row_sends_its_message():
    coordination = Coordination(Settings(broker_url="stub://"))
    assert coordination.claim_queued("razorpay:pay_1") and coordination.claim_queued("razorpay:pay_1")


def test_many_payments_posted_concurrently_with_workers_running_all_end_applied_once(deps, org, simulator, broker,
                                                                                   worker):
    """Senders and workers racing on the markers: every row ends processed without the inbox sweep, every
    order credited once."""
    orders = [new_order(deps) for _ in range(24)]
    hooks = [payment_webhooks(simulator, order)[1] for order in orders]
    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda order_hooks: [post(client, hook) for hook in order_hooks], hooks))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(r.status == "pending" for r in inbox_rows(deps)):
        time.sleep(0.05)
    assert {r.status for r in inbox_rows(deps)} == {"processed"}
    assert ledger_count(deps) == len(orders) and balance(deps) == 5_000 * len(orders)
    assert {order_row(deps, o.id).state for o in orders} == {"paid"}
    assert list(broker.client.scan_iter(match=f"{broker.namespace}:queued:*")) == []  # every claim released


def test_a_row_about_the_payment_its_sibling_query_leaves_is_applied_by_the_message(client, deps, org, simulator,
                                                                                 broker, actors):
    """Same payment id, another order (the sibling filter's to skip): it sent no message, so the queued
    message applies it on its own."""
    order, other = new_order(deps), new_order(deps)
    _, (authorized, captured, _) = payment_webhooks(simulator, order)
    post(client, authorized)
    event = json.loads(captured[1])
    event["payload"]["payment"]["entity"]["order_id"] = other.gateway_order_id
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": "evt_same_payment_other_order",
               "X-Razorpay-Signature": sign(simulator.config.webhook_secret, body)}
    assert post(client, ("payment.captured", body, headers))["status"] == "accepted"
    [message] = queued(broker)
    run(actors, broker, message)
    assert [r.status for r in inbox_rows(deps)] == ["processed", "processed"]
    assert inbox_rows(deps)[1].order_id == other.id


def test_a_row_whose_capture_another_worker_runs_is_left_to_that_worker(client, deps, org, simulator, broker, actors):
    order = new_order(deps)
    _, (authorized, captured, _) = payment_webhooks(simulator, order)
    first = post(client, authorized)
    process_inbox_event(first["inbox_id"], deps=deps)
    second = post(client, captured)
    with deps.engine.begin() as connection:  # as process_inbox_event leaves a row while its capture runs
        connection.execute(text("UPDATE inbox_events SET reason = :r WHERE id = :id"),
                           {"r": f"{FOLLOW_UP_PENDING}authorized, capturing", "id": second["inbox_id"]})
    [message] = queued(broker)
    run(actors, broker, message)
    assert [r.status for r in inbox_rows(deps)] == ["processed", "pending"]


def test_a_marker_that_cannot_be_released_does_not_stop_the_message(client, deps, org, simulator, broker, actors):
    order = new_order(deps)
    _, hooks = payment_webhooks(simulator, order)
    for hook in hooks:
        post(client, hook)
    [message] = queued(broker)
    working, deps.coordination.client = deps.coordination.client, redis.Redis(port=1)  # nothing listens there
    try:
        run(actors, broker, message)
    finally:
        deps.coordination.client = working
    assert [r.status for r in inbox_rows(deps)] == ["processed"] * 3 and ledger_count(deps) == 1


@pytest.mark.parametrize("payment_id", ["pay_Ok123", "pay_X\n", "pay_X\r", "pay X", "pay_é", "pay_" + "x" * 61,
                                        "pay_" + "x" * 60, "pay_a;b", "\x00", "pay_a:b"])
def test_the_key_intake_sends_is_one_the_contract_takes_or_none(payment_id):
    payment = RemotePayment(payment_id, "order_X", RemoteStatus.CAPTURED, 100, "INR")
    key = coalesce_key("razorpay", WebhookEvent("evt_1", "payment.captured", "order_X", payment))
    if key is not None:
        assert InboxEventArgs(inbox_id=1, coalesce_key=key).coalesce_key == key
    assert (key is not None) == (payment_id in {"pay_Ok123", "pay_" + "x" * 60, "pay_a:b"})


def test_with_coalescing_off_every_webhook_sends_a_message_old_workers_take(client, deps, org, simulator, broker,
                                                                           actors):
    """RECON_COALESCE_WEBHOOKS=false on the web while workers without the option still run: one message per
    webhook, each with the inbox id alone (the contract those workers know)."""
    order = new_order(deps)
    _, hooks = payment_webhooks(simulator, order)
    deps.settings = deps.settings.model_copy(update={"coalesce_webhooks": False})
    for hook in hooks:
        post(client, hook)
    messages = queued(broker)
    assert [m.args for m in messages] == [(r.id,) for r in inbox_rows(deps)]
    for message in messages:
        run(actors, broker, message)
    assert ledger_count(deps) == 1 and balance(deps) == 5_000


class _DeleteHook:
    """The real Redis client, running ``before`` once just before its first DEL (the marker's release)."""

    def __init__(self, client, before) -> None:
        self._client, self._before = client, before

    def delete(self, *keys):
        before, self._before = self._before, None
        if before is not None:
            before()
        return self._client.delete(*keys)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_webhook_stored_just_before_the_message_releases_the_marker_is_applied_by_that_message(
        client, deps, org, simulator, broker, actors):
    """The release comes before the read of the payment's rows: a webhook whose claim still found the marker (it
    sent nothing) is in that read, never left to the inbox sweep."""
    from ops.web import _store_and_enqueue

    order = new_order(deps)
    _, (authorized, captured, _) = payment_webhooks(simulator, order)
    post(client, authorized)
    [message] = queued(broker)
    working = deps.coordination.client
    deps.coordination.client = _DeleteHook(working, lambda: _store_and_enqueue(
        actors, "razorpay", captured[1], captured[2], deps))
    try:
        run(actors, broker, message)
    finally:
        deps.coordination.client = working
    assert queued(broker) == []  # the captured webhook found the marker: it sent no message
    assert [r.status for r in inbox_rows(deps)] == ["processed", "processed"]
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1


def _store_during_first_apply(monkeypatch, store) -> None:
    """Run ``store`` (a webhook arriving) once, inside the first message's transaction, after its siblings query:
    while the state machine decides on what that query found."""
    from worker.services.unit import UnitOfWork

    real = UnitOfWork.apply
    pending = [store]

    def apply(self, order, evidence):
        if pending:
            pending.pop()()
        return real(self, order, evidence)

    monkeypatch.setattr(UnitOfWork, "apply", apply)


def _authorise_while_the_capture_arrives(client, deps, broker, actors, monkeypatch, authorized, captured) -> None:
    """Post the authorisation and run its message; the capture is stored (and enqueued) while it decides."""
    from ops.web import _store_and_enqueue

    post(client, authorized)
    [first] = queued(broker)
    _store_during_first_apply(monkeypatch, lambda: _store_and_enqueue(actors, "razorpay", captured[1], captured[2],
                                                                       deps))
    run(actors, broker, first)


def test_a_capture_stored_while_the_authorisation_is_decided_is_credited_in_that_transaction(
        client, deps, org, simulator, broker, actors, monkeypatch):
    """The authorisation's decision waits for the capture: one more look before its commit takes the
    payment.captured stored meanwhile, instead of the look after this commit crediting it in a transaction of
    its own."""
    order = new_order(deps)
    _, (authorized, captured, _) = payment_webhooks(simulator, order)
    _authorise_while_the_capture_arrives(client, deps, broker, actors, monkeypatch, authorized, captured)
    rows = inbox_rows(deps)
    assert [r.status for r in rows] == ["processed", "processed"]
    assert rows[1].reason == f"captured (applied with inbox #{rows[0].id})"
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1 and balance(deps) == 5_000
    assert queued(broker) == []  # the capture found the marker held: it sent no message
    with deps.engine.connect() as connection:
        transitions = connection.execute(text("SELECT from_state, to_state FROM order_transitions WHERE order_id = :o "
                                              "ORDER BY id"), {"o": order.id}).all()
    assert [tuple(t) for t in transitions] == [("created", "pending"), ("pending", "paid")]


def test_the_late_look_skips_a_capture_another_worker_holds_and_the_look_after_the_commit_credits_it(
        client, deps, org, simulator, broker, actors, monkeypatch):
    """Another worker already locked the capture's row (a replay's or the inbox sweep's message) and waits for the
    order's lock: the late look must not wait for that row (each would wait for the other: a deadlock), and goes
    on to its commit. That worker then gives the row up here (it fails), and the message's look after the commit
    applies it. A guard on the late look's SKIP LOCKED: it passes without the late look too."""
    from ops.web import _store_and_enqueue

    order = new_order(deps)
    _, (authorized, captured, _) = payment_webhooks(simulator, order)
    post(client, authorized)
    [first] = queued(broker)
    holder = deps.engine.connect()
    other_worker = ThreadPoolExecutor(1)
    held = []

    def wait_for_the_order_then_fail() -> None:
        holder.execute(text("SELECT id FROM orders WHERE id = :o FOR UPDATE"), {"o": order.id})
        held.append(order_row(deps, order.id).state)  # it had to wait for the first message's commit
        holder.rollback()

    def store_and_hold() -> None:
        stored = _store_and_enqueue(actors, "razorpay", captured[1], captured[2], deps)
        holder.execute(text("SELECT id FROM inbox_events WHERE id = :i FOR UPDATE"), {"i": stored.inbox_id})
        held.append(other_worker.submit(wait_for_the_order_then_fail))

    _store_during_first_apply(monkeypatch, store_and_hold)
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(run, actors, broker, first).result(timeout=30)  # neither waited for the other
        held[0].result(timeout=30)
    finally:
        other_worker.shutdown()
        holder.close()
    assert held[1] == "pending"  # the first message committed the authorisation alone, then the look credited
    assert queued(broker) == []
    assert [r.status for r in inbox_rows(deps)] == ["processed", "processed"]
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1 and balance(deps) == 5_000


def test_a_decision_that_sends_the_order_to_review_takes_no_late_row(client, deps, org, simulator, broker, actors,
                                                                     monkeypatch):
    """Only a decision leaving the order waiting for the payment looks again before its commit: one sending it to
    review keeps its own reason, and the capture stored meanwhile is applied on its own after that commit, by the
    message's look (the order stays in review)."""
    order = new_order(deps)
    _, (authorized, captured, _) = payment_webhooks(simulator, order)
    with deps.engine.begin() as connection:  # the gateway's amount no longer matches the order's
        connection.execute(text("UPDATE orders SET amount_minor = amount_minor + 1 WHERE id = :o"), {"o": order.id})
    _authorise_while_the_capture_arrives(client, deps, broker, actors, monkeypatch, authorized, captured)
    rows = inbox_rows(deps)
    assert [r.status for r in rows] == ["processed", "processed"] and queued(broker) == []
    review = order_row(deps, order.id)
    assert review.state == "needs_review" and rows[0].reason == review.state_reason
    assert "applied with" not in rows[1].reason  # its own transaction, after the review's
    assert ledger_count(deps) == 0


def test_an_order_paid_after_the_credit_leaves_the_order_row_as_it_was(client, deps, org, simulator, broker, actors):
    """A late order.paid changes nothing: its transaction marks its row and writes no order (no UPDATE, its
    updated_at stays the credit's), while the credit itself did update the order."""
    order = new_order(deps)
    _, (authorized, captured, paid) = payment_webhooks(simulator, order)
    post(client, authorized)
    post(client, captured)
    [first] = queued(broker)
    run(actors, broker, first)
    credited = order_row(deps, order.id)
    assert credited.state == "paid" and credited.updated_at > order.updated_at
    post(client, paid)
    [second] = queued(broker)
    run(actors, broker, second)
    assert [r.status for r in inbox_rows(deps)] == ["processed"] * 3
    after = order_row(deps, order.id)
    assert (after.state, after.updated_at, after.next_check_at) == ("paid", credited.updated_at, None)
    assert ledger_count(deps) == 1


def test_an_order_paid_stored_while_the_credit_is_decided_rides_on_that_message(client, deps, org, simulator, broker,
                                                                               actors, monkeypatch):
    """The marker is held until the row's transaction commits: order.paid, stored while the authorisation and
    capture are credited, sends no message, and the message's look after the commit applies it."""
    from ops.web import _store_and_enqueue

    order = new_order(deps)
    payment_id, (authorized, captured, paid) = payment_webhooks(simulator, order)
    post(client, authorized)
    post(client, captured)
    [message] = queued(broker)
    _store_during_first_apply(monkeypatch, lambda: _store_and_enqueue(actors, "razorpay", paid[1], paid[2], deps))
    run(actors, broker, message)
    assert queued(broker) == []  # order.paid found the marker held
    rows = inbox_rows(deps)
    assert [r.status for r in rows] == ["processed"] * 3
    assert rows[1].reason == f"captured (applied with inbox #{rows[0].id})" and "applied with" not in rows[2].reason
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1 and balance(deps) == 5_000
    assert deps.coordination.client.exists(marker(broker, payment_id)) == 0  # released


def test_a_capture_stored_while_we_decide_to_capture_is_credited_even_when_our_capture_call_fails(
        client, deps, org, simulator, broker, actors, monkeypatch):
    """A manual-capture order's authorisation asks for our capture call (its follow-up, after the commit); the
    gateway's payment.captured, stored meanwhile, found the marker held and sent no message. The message applies
    it (and the authorisation with it) before the follow-up runs, so a capture call that fails (the message is
    then retried) leaves nothing behind."""
    from ops.web import _store_and_enqueue
    from worker.services import inbox

    deps.settings = deps.settings.model_copy(update={"razorpay_manual_capture": True})
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "authorize_only", deliver_webhooks=False)
    [authorized] = [(json.loads(e.body)["event"], e.body, dict(e.headers)) for e in simulator.sim.webhook_events()]
    assert authorized[0] == "payment.authorized"
    event = json.loads(authorized[1])
    event["event"] = "payment.captured"
    event["payload"]["payment"]["entity"].update(status="captured", captured=True)
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": "evt_captured_meanwhile",
               "X-Razorpay-Signature": sign(simulator.config.webhook_secret, body)}
    post(client, authorized)
    [message] = queued(broker)
    _store_during_first_apply(monkeypatch, lambda: _store_and_enqueue(actors, "razorpay", body, headers, deps))

    def capture_fails(*args, **kwargs):
        raise RuntimeError("the capture call failed")

    monkeypatch.setattr(inbox, "capture_authorized", capture_fails)
    with pytest.raises(RuntimeError):
        run(actors, broker, message)
    assert [m.message_id for m in queued(broker)] == [message.message_id]  # to retry; the capture sent none
    rows = inbox_rows(deps)
    assert [r.status for r in rows] == ["processed", "processed"]
    assert rows[0].reason == f"captured (applied with inbox #{rows[1].id})"  # the capture's took it along
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps) == 1 and balance(deps) == 5_000
    run(actors, broker, message)  # the retry finds it done
    assert queued(broker) == [] and ledger_count(deps) == 1
