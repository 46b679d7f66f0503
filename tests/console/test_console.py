"""The support console over HTTP (TestClient on the real app and database): sign-in, roles, CSRF, search, an
order's story, each action with its audit, and the lists. The browser tests (test_console_browser.py) drive
the same pages in Chromium."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from db.models import Dispute, Order, OrderEvent, SupportAction
from tests.console.support import PASSWORDS, accounts, with_accounts
from tests.runtime import app
from tests.support import balance, ledger_count, new_order, order_row
from worker.services.recheck import recheck_order
from worker.services.views import order_detail
from worker.settings import ConsoleAccount

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def console(deps, org):
    with_accounts(deps)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def token(client: TestClient, path: str = "/console/login") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)


def sign_in(client: TestClient, name: str, password: str | None = None) -> None:
    answer = client.post("/console/login", data={"csrf_token": token(client), "name": name,
                                                 "password": password or PASSWORDS[name], "next": "/console/"})
    assert answer.status_code == 200 and name in answer.text, answer.text  # followed to the home page


def audits(deps, order_id: str | None = None) -> list[SupportAction]:
    with deps.sessions() as session:
        query = select(SupportAction).order_by(SupportAction.id)
        return list(session.execute(query.where(SupportAction.order_id == order_id) if order_id else query).scalars())


def test_every_page_needs_sign_in_and_comes_back_after_it(console):
    for path in ("/console/", "/console/orders?q=x", "/console/lists/review", "/console/lists/deliveries"):
        answer = console.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=")
    page = console.get("/console/lists/review")  # followed: the sign-in form, remembering where to go
    answer = console.post("/console/login", data={"csrf_token": CSRF.search(page.text).group(1), "name": "vera",
                                                  "password": PASSWORDS["vera"], "next": "/console/lists/review"},
                          follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/lists/review"


def test_wrong_passwords_and_unknown_names_are_refused_the_same_way(console):
    for name, password in (("vera", "not-her-password"), ("nobody", "whatever")):
        answer = console.post("/console/login", data={"csrf_token": token(console), "name": name,
                                                      "password": password})
        assert "wrong name or password" in answer.text and "Sign out" not in answer.text
    assert console.get("/console/", follow_redirects=False).status_code == 303


def test_sign_in_after_five_failures_is_throttled_even_with_the_right_password(console):
    from ops.console.actions import throttle

    throttle.succeeded("rita")
    try:
        for _ in range(throttle.attempts):
            console.post("/console/login", data={"csrf_token": token(console), "name": "rita", "password": "guess"})
        answer = console.post("/console/login", data={"csrf_token": token(console), "name": "rita",
                                                      "password": PASSWORDS["rita"]})
        assert "too many sign-ins" in answer.text and "Sign out" not in answer.text
    finally:
        throttle.succeeded("rita")


def test_sign_ins_racing_each_other_still_get_only_five_password_checks(console):
    from concurrent.futures import ThreadPoolExecutor

    from ops.console.actions import checks, throttle

    throttle.succeeded("rita")
    clients = [TestClient(app) for _ in range(20)]
    forms = [{"csrf_token": token(client), "name": "rita", "password": "guess"} for client in clients]
    checks._slots = threading.BoundedSemaphore(20)  # let the checks overlap as much as they can
    try:
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda pair: pair[0].post("/console/login", data=pair[1]).text,
                                    zip(clients, forms, strict=True)))
    finally:
        checks._slots = threading.BoundedSemaphore(2)
        throttle.succeeded("rita")
    assert sum("wrong name or password" in text for text in answers) == throttle.attempts
    assert sum("too many sign-ins" in text for text in answers) == 20 - throttle.attempts


def test_next_never_leaves_the_console(console):
    for evil in ("https://evil.example/", "//evil.example/", "/console/\\evil", "/metrics"):
        answer = console.post("/console/login", data={"csrf_token": token(console), "name": "vera",
                                                      "password": PASSWORDS["vera"], "next": evil},
                              follow_redirects=False)
        assert answer.headers["location"] == "/console/", evil
        console.post("/console/logout", data={"csrf_token": token(console, "/console/")})


def test_the_session_cookie_is_signed_strict_and_scoped_to_the_console(console):
    answer = console.post("/console/login", data={"csrf_token": token(console), "name": "vera",
                                                  "password": PASSWORDS["vera"]}, follow_redirects=False)
    attributes = answer.headers["set-cookie"].lower()
    assert "path=/console" in attributes and "httponly" in attributes and "samesite=strict" in attributes
    cookie = next(c for c in console.cookies.jar if c.name == "recon_console")
    forged = cookie.value[:-4] + ("AAAA" if not cookie.value.endswith("AAAA") else "BBBB")
    console.cookies.clear()
    console.cookies.set("recon_console", forged, path="/console")
    assert console.get("/console/", follow_redirects=False).status_code == 303  # a tampered cookie is no session


def test_a_form_without_this_sessions_token_is_refused_and_does_nothing(console, deps, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    sign_in(console, "sam")
    path = f"/console/orders/{order.id}/recheck"
    for form in ({"reason": "no token"}, {"reason": "wrong token", "csrf_token": "x" * 43}):
        answer = console.post(path, data=form)
        assert answer.status_code == 403 and "Form refused" in answer.text
    other = TestClient(app)  # another person's session: its token is not this session's
    sign_in(other, "vera")
    answer = console.post(path, data={"reason": "their token", "csrf_token": token(other, "/console/")})
    assert answer.status_code == 403
    assert order_row(deps, order.id).state == "created" and audits(deps, order.id) == []


def test_signing_out_ends_the_session_and_its_token(console):
    sign_in(console, "vera")
    old = token(console, "/console/")
    console.post("/console/logout", data={"csrf_token": old})
    assert console.get("/console/", follow_redirects=False).status_code == 303
    answer = console.post("/console/logout", data={"csrf_token": old})
    assert answer.status_code == 403  # the signed-out session's token is gone with it


def test_a_changed_password_or_a_removed_role_takes_effect_at_once(console, deps):
    order = new_order(deps)
    sign_in(console, "sam")
    changed = {**accounts(), "sam": ConsoleAccount(roles=["viewer"], password_hash=accounts()["sam"].password_hash)}
    with_accounts(deps, changed)
    answer = console.post(f"/console/orders/{order.id}/recheck",
                          data={"csrf_token": token(console, "/console/"), "reason": "r"})
    assert answer.status_code == 403 and "may not recheck" in answer.text
    rehashed = {**accounts(), "sam": ConsoleAccount(roles=["support"], password_hash=accounts()["vera"].password_hash)}
    with_accounts(deps, rehashed)
    assert console.get("/console/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(("who", "action", "form"), [
    ("vera", "recheck", {"reason": "r"}),
    ("vera", "refund", {"reason": "r"}),
    ("rita", "refund", {"reason": "r"}),
    ("sam", "review", {"reason": "r", "decision": "credit"}),
    ("vera", "replay-inbox", {"reason": "r", "inbox_id": "1"}),
])
def test_no_action_without_its_role(console, deps, who, action, form):
    order = new_order(deps)
    sign_in(console, who)
    answer = console.post(f"/console/orders/{order.id}/{action}",
                          data={**form, "csrf_token": token(console, f"/console/orders/{order.id}")})
    assert answer.status_code == 403 and "Not allowed" in answer.text
    assert audits(deps) == []
    page = console.get(f"/console/orders/{order.id}")
    assert f'action="/console/orders/{order.id}/{action}"' not in page.text  # not offered either


def test_search_finds_an_order_by_each_id_it_is_known_by(console, deps, simulator):
    order = new_order(deps)
    other = new_order(deps, "org-us")
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    recheck_order(order.id, "test", deps=deps)  # the payment is now known here
    payment_id = order_detail(order.id, deps=deps)["payments"][0]["payment_id"]
    sign_in(console, "vera")
    for text in (order.gateway_order_id, payment_id, "org-in"):
        page = console.get("/console/orders", params={"q": text})
        assert order.id in page.text and other.id not in page.text, text
    assert console.get("/console/orders", params={"q": order.id}).url.path == f"/console/orders/{order.id}"
    by_state = console.get("/console/orders", params={"state": "created"}).text
    assert other.id in by_state and order.id not in by_state
    assert other.id not in console.get("/console/orders", params={"older_than_h": 1}).text


def test_recheck_credits_the_order_and_the_story_shows_it_with_the_person(console, deps, simulator):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    sign_in(console, "sam")
    page = console.post(f"/console/orders/{order.id}/recheck",
                        data={"csrf_token": token(console, "/console/"), "reason": "dry", "dry_run": "1"})
    assert "would become paid" in page.text and order_row(deps, order.id).state == "created"
    page = console.post(f"/console/orders/{order.id}/recheck",
                        data={"csrf_token": token(console, "/console/"), "reason": "customer says they paid"})
    assert "Rechecked: created → paid" in page.text
    assert order_row(deps, order.id).state == "paid" and ledger_count(deps, order.id) == 1
    assert "state created → paid" in page.text and "support recheck" in page.text
    assert [(a.action, a.requested_by, a.reason) for a in audits(deps, order.id)] == [
        ("recheck_dry_run", "sam (console)", "dry"), ("recheck", "sam (console)", "customer says they paid")]


def test_an_action_without_a_reason_is_refused_with_a_message(console, deps):
    order = new_order(deps)
    sign_in(console, "sam")
    page = console.post(f"/console/orders/{order.id}/recheck",
                        data={"csrf_token": token(console, "/console/"), "reason": "   "})
    assert "a reason is required" in page.text and audits(deps) == []


def test_refund_from_the_console_and_its_refusals(console, deps, simulator):
    order = new_order(deps, credits=5_000)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    recheck_order(order.id, "test", deps=deps)
    sign_in(console, "sam")
    form = {"csrf_token": token(console, "/console/"), "reason": "customer asked"}
    page = console.post(f"/console/orders/{order.id}/refund", data={**form, "amount_minor": "abc"})
    assert "whole number of minor units" in page.text
    half = str(order.amount_minor // 2)
    page = console.post(f"/console/orders/{order.id}/refund", data={**form, "amount_minor": half})
    assert f"of {order.amount_minor // 2:,} INR: processed" in page.text
    assert balance(deps) == 2_500
    again = console.post(f"/console/orders/{order.id}/refund", data={**form, "amount_minor": half})
    assert "the same request as before" in again.text and balance(deps) == 2_500  # a double click: one refund
    assert [a.action for a in audits(deps, order.id)].count("refund") == 1


def test_review_decision_from_the_console(console, deps):
    order = new_order(deps)
    with deps.sessions() as session, session.begin():
        session.get(Order, order.id).state = "needs_review"
    sign_in(console, "rita")
    assert order.id in console.get("/console/lists/review").text
    page = console.post(f"/console/orders/{order.id}/review",
                        data={"csrf_token": token(console, "/console/"), "reason": "fraud check", "decision": "close"})
    assert "Review decided: close" in page.text and order_row(deps, order.id).state == "closed"
    assert audits(deps, order.id)[-1].requested_by == "rita (console)"


def test_lists_show_open_orders_past_two_hours_and_disputes_near_their_deadline(console, deps):
    old, young = new_order(deps), new_order(deps)
    with deps.sessions() as session, session.begin():
        session.get(Order, old.id).created_at = deps.clock.now() - timedelta(hours=3)
        now = deps.clock.now()
        session.add(Dispute(order_id=young.id, gateway="razorpay", gateway_dispute_id="disp_console1",
                            gateway_payment_id="pay_x", amount_minor=100, currency="INR", state="open",
                            respond_by=now + timedelta(hours=20), source="gateway", created_at=now, updated_at=now))
    sign_in(console, "vera")
    page = console.get("/console/lists/open").text
    assert old.id in page and young.id not in page
    assert "disp_console1" in console.get("/console/lists/disputes").text
    home = console.get("/console/").text
    assert "<b>1</b> orders open for more than 2 hours" in home and "<b>1</b> disputes to answer soon" in home


def test_unknown_order_is_a_404_page(console):
    sign_in(console, "vera")
    answer = console.get("/console/orders/ord_doesnotexist")
    assert answer.status_code == 404 and "No such order" in answer.text


def test_html_in_stored_data_is_escaped(console, deps):
    order = new_order(deps)
    with deps.sessions() as session, session.begin():
        session.get(Order, order.id).state_reason = "<script>alert(1)</script>"
    sign_in(console, "vera")
    page = console.get(f"/console/orders/{order.id}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_recon_console_account_prints_a_hash_that_signs_in(console, deps):
    from typer.testing import CliRunner

    from ops.cli import app as cli

    printed = CliRunner().invoke(cli, ["console", "account", "nadia", "--role", "support"],
                                 input="nadia-password-12\nnadia-password-12\n")
    assert printed.exit_code == 0, printed.output
    entry = json.loads(printed.output.strip().splitlines()[-1])
    assert "nadia-password-12" not in printed.output.splitlines()[-1]
    with_accounts(deps, {**accounts(), "nadia": ConsoleAccount.model_validate(entry["nadia"])})
    sign_in(console, "nadia", "nadia-password-12")
    refused = CliRunner().invoke(cli, ["console", "account", "x", "--role", "admin"], input="p\np\n")
    assert refused.exit_code != 0 and "unknown roles" in refused.output


def test_pages_are_never_framed_or_cached_and_odd_input_is_refused_not_a_500(console, deps):
    sign_in(console, "sam")
    page = console.get("/console/")
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"] and page.headers["cache-control"] == "no-store"
    order = new_order(deps)
    csrf = token(console, "/console/")
    for path, form in ((f"/console/orders/{order.id}/replay-inbox", {"inbox_id": "9" * 19, "reason": "r"}),
                       (f"/console/orders/{order.id}/replay-inbox", {"inbox_id": "²", "reason": "r"}),
                       ("/console/events/replay", {"delivery_id": "9" * 19, "reason": "r"})):
        answer = console.post(path, data={**form, "csrf_token": csrf})
        assert answer.status_code == 200 and "is a whole number" in answer.text, path
    for query in ("to=9999-12-31", "to=0001-01-02", "from=2026-01-01&to=2020-01-01"):
        assert console.get(f"/console/settlements?{query}").status_code == 200, query
    console.post("/console/logout", data={"csrf_token": token(console, "/console/")})
    for evil in ("/console/../metrics", "/console/%2e%2e/metrics", "/console/\x07x"):
        answer = console.post("/console/login", data={"csrf_token": token(console), "name": "vera",
                                                      "password": PASSWORDS["vera"], "next": evil},
                              follow_redirects=False)
        assert answer.headers["location"] == "/console/", evil
        console.post("/console/logout", data={"csrf_token": token(console, "/console/")})
    long_name = console.post("/console/login", data={"csrf_token": token(console), "name": "x" * 65,
                                                     "password": "p"})
    assert long_name.status_code == 200 and "longer than 64" in long_name.text


def test_dead_letters_and_failed_deliveries_are_listed_and_sent_again_from_the_console(
        console, deps, simulator, broker, worker, redis_client, actors):
    from tests.runtime import NAMESPACE
    from worker.services.poll import reconcile_order

    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    actors.recheck_order.send(order.id, "")  # breaks the contract (empty requested_by): dead-lettered at once
    broker.join("recon_priority", timeout=20_000)
    sign_in(console, "sam")
    page = console.get("/console/lists/dead-letters")
    assert "recheck_order" in page.text
    key = redis_client.hkeys(f"{NAMESPACE}:recon_priority.XQ.msgs")[0]
    fixed = json.loads(redis_client.hget(f"{NAMESPACE}:recon_priority.XQ.msgs", key))
    fixed["args"][1] = "support:fixed"  # the cause, fixed by hand
    redis_client.hset(f"{NAMESPACE}:recon_priority.XQ.msgs", key, json.dumps(fixed))
    answer = console.post("/console/dead-letters/replay", data={
        "csrf_token": token(console, "/console/"), "message_id": fixed["message_id"], "reason": "requested_by fixed"})
    assert f"message {fixed['message_id']} queued again" in answer.text
    broker.join("recon_priority", timeout=20_000)
    assert order_row(deps, order.id).state == "paid" and redis_client.zcard(f"{NAMESPACE}:recon_priority.XQ") == 0
    assert [(a.action, a.requested_by) for a in audits(deps) if a.action == "dlq_replay"] == [
        ("dlq_replay", "sam (console)")]

    from db.models import EventDelivery

    reconcile_order(order.id, deps=deps)
    with deps.sessions() as session, session.begin():
        event = session.execute(select(OrderEvent).where(OrderEvent.order_id == order.id)).scalars().first()
        session.add(EventDelivery(order_event_id=event.id, endpoint="billing", order_id=order.id,
                                  sequence=event.sequence, state="dead", attempts=12, last_status=503,
                                  next_attempt_at=None, created_at=deps.clock.now()))
    page = console.get("/console/lists/deliveries")
    assert "503" in page.text and order.id in page.text
    with deps.sessions() as session:
        delivery_id = session.execute(select(EventDelivery.id)).scalar_one()
    answer = console.post("/console/events/replay", data={
        "csrf_token": token(console, "/console/"), "delivery_id": str(delivery_id), "reason": "endpoint fixed"})
    assert "1 deliveries queued again" in answer.text
    with deps.sessions() as session:
        assert session.get(EventDelivery, delivery_id).state == "pending"
