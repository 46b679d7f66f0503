"""Our PayGlocal adapter against the simulator's PayGlocal, over real HTTP (uvicorn, port 0)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.payglocal import PayGlocalGateway, tokens
from gateways.port import FailureKind, RemoteStatus
from simulator import SimulatorError, SimulatorServer
from tests.unit.gateways.payglocal_fakes import MERCHANT_KID, MID, PAYGLOCAL_KID, gateway_kwargs, keys
from tests.unit.simulator.support import Receiver, plain, start


def sim_config(**extra: Any) -> dict[str, Any]:
    """Simulator settings using the test keys made once per run (RSA generation is slow)."""
    return {
        "seed": 11,
        "payglocal_merchant_id": MID,
        "payglocal_merchant_kid": MERCHANT_KID,
        "payglocal_merchant_public_pem": keys()["merchant"].public_pem,
        "payglocal_kid": PAYGLOCAL_KID,
        "payglocal_private_pem": keys()["payglocal"].private_pem,
        **extra,
    }


@pytest.fixture
def pg_server() -> Iterator[SimulatorServer]:
    srv = start(**sim_config())
    yield srv
    srv.stop()


def callback_url(receiver: Receiver) -> str:
    return receiver.url.replace("/webhooks/razorpay", "/payglocal/callback")


def adapter(srv: SimulatorServer, receiver: Receiver | None = None, **overrides: Any) -> PayGlocalGateway:
    """Our adapter pointed at the simulator, on the real clock, with no retry sleeps."""
    url = callback_url(receiver) if receiver else "http://127.0.0.1:9/nowhere"
    arguments = gateway_kwargs(base_url=srv.base_url, callback_url=url, now_ms=None, sleep=lambda s: None, timeout=5)
    arguments.update(overrides)
    return PayGlocalGateway(**arguments)


def create(gateway: PayGlocalGateway, receipt: str = "order-1", **overrides: Any):
    arguments = {"receipt": receipt, "amount_minor": 50000, "currency": "INR", "notes": {}, "manual_capture": False}
    arguments.update(overrides)
    return gateway.create_order(**arguments)


# Customer scenarios --------------------------------------------------------------------------


def test_create_pay_success_then_fetch_order_shows_captured(pg_server: SimulatorServer) -> None:
    """create -> CREATED; the shopper pays; fetch_order reads data.status SENT_FOR_CAPTURE as CAPTURED."""
    gateway = adapter(pg_server)
    order = create(gateway)
    assert order.gateway_order_id.startswith("gl_") and order.checkout["redirect_url"].startswith(pg_server.base_url)
    assert gateway.fetch_order(order.gateway_order_id).payments[0].status is RemoteStatus.CREATED
    paid = pg_server.sim.pay_payglocal(order.gateway_order_id, "success")
    assert paid["status"] in ("SUCCESS", "CREATED") and paid["data"]["status"] == "SENT_FOR_CAPTURE"
    assert paid["data"]["Amount"] in ("500.00", "500") and paid["data"]["Currency"] == "INR"
    fetched = gateway.fetch_order(order.gateway_order_id)
    assert (fetched.gateway_order_id, fetched.receipt, fetched.wire_status) == (order.gateway_order_id, "order-1",
                                                                               "SENT_FOR_CAPTURE")
    [payment] = fetched.payments
    assert (payment.status, payment.amount_minor, payment.currency) == (RemoteStatus.CAPTURED, 50000, "INR")
    assert gateway.fetch_order("order-1").gateway_order_id == order.gateway_order_id  # by merchantTxnId


@pytest.mark.parametrize(
    ("outcome", "wire", "kind"),
    [
        ("decline", "ISSUER_DECLINE", FailureKind.DECLINED),
        ("gateway_error", "SYSTEM_ERROR", FailureKind.GATEWAY_ERROR),
        ("close_window", "ABANDONED", FailureKind.WINDOW_CLOSED),
    ],
)
def test_failed_outcomes_map_to_failed_with_their_kind(pg_server: SimulatorServer, outcome: str, wire: str,
                                                       kind) -> None:
    """Decline, gateway error and a closed window are FAILED with the matching failure kind."""
    gateway = adapter(pg_server)
    gid = create(gateway).gateway_order_id
    pg_server.sim.pay(gid, outcome)  # a gl_ id goes to PayGlocal
    payment = gateway.fetch_payment(gid)
    assert (payment.status, payment.failure_kind, payment.wire_status) == (RemoteStatus.FAILED, kind, wire)
    with pytest.raises(SimulatorError):
        pg_server.sim.pay_payglocal(gid, "success")  # one attempt per gid


def test_a_conditional_decline_can_be_authorised_late(pg_server: SimulatorServer) -> None:
    """timeout -> CONDITIONAL_DECLINE (FAILED, timed out); late_authorize -> SENT_FOR_CAPTURE."""
    gateway = adapter(pg_server)
    gid = create(gateway).gateway_order_id
    pg_server.sim.pay_payglocal(gid, "timeout")
    first = gateway.fetch_payment(gid)
    assert (first.status, first.failure_kind, first.wire_status) == (
        RemoteStatus.FAILED, FailureKind.TIMED_OUT, "CONDITIONAL_DECLINE"
    )
    pg_server.sim.late_authorize(gid)
    assert gateway.fetch_order(gid).payments[0].status is RemoteStatus.CAPTURED


def test_an_auth_only_transaction_is_authorized_then_captured_once(pg_server: SimulatorServer) -> None:
    """manual_capture -> AUTHORIZED (not paid); capture -> CAPTURED; capturing again returns it."""
    gateway = adapter(pg_server)
    gid = create(gateway, manual_capture=True, amount_minor=1234, currency="KWD").gateway_order_id
    pg_server.sim.pay_payglocal(gid, "success")
    assert gateway.fetch_payment(gid).status is RemoteStatus.AUTHORIZED
    captured = gateway.capture(gid, amount_minor=1234, currency="KWD")
    assert (captured.status, captured.amount_minor) == (RemoteStatus.CAPTURED, 1234)
    assert gateway.capture(gid, amount_minor=1234, currency="KWD").status is RemoteStatus.CAPTURED
    assert len(pg_server.sim.payglocal.snapshot()[0]["captures"]) == 1
    pg_server.sim.refund_payglocal(gid)
    assert gateway.fetch_payment(gid).status is RemoteStatus.REFUNDED


def test_a_repeated_create_with_the_same_receipt_returns_the_same_gid(pg_server: SimulatorServer) -> None:
    """merchantUniqueId is the idempotency key: the second initiate returns the original transaction."""
    gateway = adapter(pg_server)
    assert create(gateway).gateway_order_id == create(gateway).gateway_order_id
    with pytest.raises(GatewayPermanent) as caught:
        create(gateway, amount_minor=777)  # same receipt, other amount: found, and refused
    assert "not 777 INR" in str(caught.value)


def test_unknown_ids_are_not_found_in_both_forms(pg_server: SimulatorServer) -> None:
    """An unknown gid is a 404; a gl_o- id gives 400 GL-400-999; both are GatewayNotFound."""
    gateway = adapter(pg_server)
    for identifier, status in (("gl_00000000-0000-4000-8000-000000000000", 404), ("gl_o-unknown", 400)):
        with pytest.raises(GatewayNotFound) as caught:
            gateway.fetch_order(identifier)
        assert caught.value.status == status
    assert "GL-400-999" in caught.value.body


# Authentication as PayGlocal does it ---------------------------------------------------------


def test_the_simulator_rejects_a_wrong_digest_with_400(pg_server: SimulatorServer) -> None:
    """A JWS whose digest covers another path is refused with 400."""
    kwargs = gateway_kwargs()
    signer = tokens.RequestSigner(
        merchant_id=MID, private_key=tokens.load_key(kwargs["private_key_pem"]), private_kid=MERCHANT_KID,
        payglocal_public_key=tokens.load_key(keys()["payglocal"].public_pem), payglocal_public_kid=PAYGLOCAL_KID,
        now_ms=lambda: time.time_ns() // 1_000_000,
    )
    with plain(pg_server) as client:
        path = tokens.status_path("gl_x")
        wrong = client.get(path, headers={"x-gl-token-external": signer.sign_path("/other")})
        right = client.get(path, headers={"x-gl-token-external": signer.sign_path(path)})
        body, token = signer.sign_body({"merchantTxnId": "t1"})
        tampered = client.post(
            "/gl/v1/payments/initiate/paycollect", content=body[:-2] + "AA", headers={"x-gl-token-external": token}
        )
    assert (wrong.status_code, wrong.json()["errors"]["detailedMessage"]) == (400, "Digest mismatch")
    assert right.status_code == 404
    assert tampered.status_code == 400


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"private_kid": "unknown-kid"}, 403),
        ({"merchant_id": "another_mid"}, 403),
        ({"now_ms": lambda: time.time_ns() // 1_000_000 - 6 * 60_000}, 401),
        ({"private_key_pem": keys()["other"].private_pem}, 401),
        ({"payglocal_public_keys": {"old-kid": keys()["payglocal"].public_pem}, "payglocal_public_kid": "old-kid"},
         400),
    ],
)
def test_the_simulator_rejects_bad_credentials_like_payglocal(pg_server: SimulatorServer, overrides,
                                                              status: int) -> None:
    """Unknown kid or MID -> 403; expired (iat > 5 min old) or badly signed -> 401; JWE to an unknown key -> 400."""
    gateway = adapter(pg_server, **overrides)
    with pytest.raises(GatewayPermanent) as caught:
        create(gateway)
    assert caught.value.status == status
    assert pg_server.sim.payglocal.snapshot() == []


def test_a_request_without_a_token_is_401(pg_server: SimulatorServer) -> None:
    """No x-gl-token-external at all: 401 in PayGlocal's envelope."""
    with plain(pg_server) as client:
        response = client.get("/gl/v1/payments/gl_x/status")
    assert response.status_code == 401 and response.json()["reasonCode"] == "GL-401-001"


# The browser callback ------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["2021", "2026"])
def test_the_callback_form_is_posted_and_verifies_with_our_adapter(pg_server: SimulatorServer, receiver: Receiver,
                                                                   style: str) -> None:
    """After payment the simulator POSTs x-gl-token=<token> form-encoded to merchantCallbackURL; we verify it."""
    gateway = adapter(pg_server, receiver)
    gid = create(gateway).gateway_order_id
    paid = pg_server.sim.pay_payglocal(gid, "success", callback_style=style)
    assert pg_server.sim.wait_for_webhooks(5)
    [(headers, body)] = receiver.received()
    assert headers["Content-Type"] == "application/x-www-form-urlencoded" and body.startswith(b"x-gl-token=")
    event = gateway.verify_webhook(body, dict(headers))
    assert (event.gateway_order_id, event.event_type, event.payment) == (gid, "payglocal.callback", None)
    assert event.event_id.startswith(f"callback:{gid}:")
    assert [entry["event_id"] for entry in pg_server.sim.delivery_log()] == [event.event_id]
    assert gateway.verify_callback(gid, "", paid["x-gl-token"]).gateway_payment_id == gid


def test_dropped_or_undelivered_callbacks_are_lost_and_a_closed_window_posts_nothing(
    pg_server: SimulatorServer, receiver: Receiver
) -> None:
    """drop_webhooks and deliver_callback=False record the callback as lost; close_window sends none."""
    gateway = adapter(pg_server, receiver)
    pg_server.sim.set_knobs(drop_webhooks=True)
    pg_server.sim.pay_payglocal(create(gateway, "order-a").gateway_order_id, "success")
    pg_server.sim.set_knobs(drop_webhooks=False)
    pg_server.sim.pay_payglocal(create(gateway, "order-b").gateway_order_id, "decline", deliver_callback=False)
    pg_server.sim.pay_payglocal(create(gateway, "order-c").gateway_order_id, "close_window")
    assert pg_server.sim.wait_for_webhooks(5)
    assert [entry["outcome"] for entry in pg_server.sim.delivery_log()] == ["lost", "lost"]
    assert receiver.received() == []


def test_the_fault_knobs_apply_to_payglocal_routes(pg_server: SimulatorServer) -> None:
    """rate_limit_rate gives 429 with Retry-After; error_rate gives 5xx; /_sim stays reachable."""
    gateway = adapter(pg_server)
    gid = create(gateway).gateway_order_id
    pg_server.sim.set_knobs(rate_limit_rate=1.0)
    with pytest.raises(GatewayRateLimited) as caught:
        gateway.fetch_order(gid)
    assert caught.value.retry_after == 1.0
    pg_server.sim.set_knobs(rate_limit_rate=0.0, error_rate=1.0)
    with pytest.raises(GatewayTransient):
        gateway.fetch_order(gid)
    with plain(pg_server) as client:
        assert client.get("/_sim/health").status_code == 200
    pg_server.sim.set_knobs(error_rate=0.0)
    assert gateway.fetch_order(gid).payments[0].status is RemoteStatus.CREATED


# Generated keys and the control API ----------------------------------------------------------


def test_a_default_simulator_makes_its_keys_and_serves_them_for_the_adapter(receiver: Receiver) -> None:
    """Without configured keys the simulator makes both pairs; adapter_kwargs and /_sim/payglocal/* drive a run."""
    srv = start(seed=5)
    try:
        kwargs = srv.sim.payglocal.adapter_kwargs()
        assert kwargs["merchant_id"] == "sim_mid_0001"
        url = callback_url(receiver)
        gateway = PayGlocalGateway(base_url=srv.base_url, callback_url=url, sleep=lambda s: None, **kwargs)
        gid = create(gateway).gateway_order_id
        with plain(srv) as client:
            served = client.get("/_sim/payglocal/keys").json()
            paid = client.post("/_sim/payglocal/pay", json={"gid": gid, "outcome": "authorize_only"})
            state = client.get("/_sim/state").json()
        assert served["merchant_private_pem"] == kwargs["private_key_pem"]
        assert served["payglocal_public_pem"] == kwargs["payglocal_public_keys"][served["payglocal_kid"]]
        assert paid.status_code == 200 and paid.json()["data"]["status"] == "AUTHORIZED"
        assert [t["gid"] for t in state["payglocal"]["transactions"]] == [gid]
        assert gateway.fetch_payment(gid).status is RemoteStatus.AUTHORIZED
        assert srv.sim.wait_for_webhooks(5) and len(receiver.received()) == 1
        srv.sim.reset()
        assert srv.sim.state()["payglocal"]["transactions"] == []
    finally:
        srv.stop()


def test_a_simulator_given_only_the_merchant_public_key_cannot_hand_out_its_private_half() -> None:
    """With an external merchant key the simulator verifies it but has no private key to share."""
    srv = start(**sim_config())
    try:
        with pytest.raises(LookupError):
            srv.sim.payglocal.adapter_kwargs()
    finally:
        srv.stop()


def test_a_shopper_paying_another_amount_shows_in_the_status(pg_server: SimulatorServer) -> None:
    """amount_minor on pay simulates a mismatched payment; the adapter reports what was paid."""
    gateway = adapter(pg_server)
    gid = create(gateway).gateway_order_id
    pg_server.sim.pay_payglocal(gid, "success", amount_minor=49999)
    assert gateway.fetch_payment(gid).amount_minor == 49999


def test_the_status_url_with_payglocals_own_token_needs_no_merchant_token(pg_server: SimulatorServer) -> None:
    """data.statusUrl from initiate carries a PayGlocal-signed token and is served as the plugins call it."""
    gid = create(adapter(pg_server)).gateway_order_id
    raw = pg_server.sim.payglocal.initiate({"merchantTxnId": "order-1", "merchantUniqueId": "order-1",
                                             "paymentData": {"totalAmount": "500.00", "txnCurrency": "INR"}},
                                            pg_server.base_url)
    assert raw["gid"] == gid
    response = httpx.get(raw["data"]["statusUrl"], timeout=5)
    assert response.status_code == 200 and response.json()["data"]["status"] == "CREATED"


# The payments-v2 status shape and forced wire statuses ---------------------------------------


def test_the_adapter_reads_the_payments_v2_status_shape_end_to_end(pg_server: SimulatorServer) -> None:
    """In the v2 shape (top-level status = state, data.totalAmount / data.txnCurrency, no data.Amount) our
    adapter reads a payment and an auth-only capture exactly, over real HTTP."""
    gateway = adapter(pg_server)
    pg_server.sim.payglocal.set_status_shape("v2")
    gid = create(gateway, amount_minor=1234, currency="KWD").gateway_order_id
    paid = pg_server.sim.pay_payglocal(gid, "success")
    assert paid["status"] == paid["data"]["status"] == "SENT_FOR_CAPTURE" and "Amount" not in paid["data"]
    assert (paid["data"]["totalAmount"], paid["data"]["txnCurrency"]) == ("1.234", "KWD")
    payment = gateway.fetch_payment(gid)
    assert (payment.status, payment.amount_minor, payment.currency) == (RemoteStatus.CAPTURED, 1234, "KWD")
    held = create(gateway, "order-2", manual_capture=True).gateway_order_id
    pg_server.sim.pay_payglocal(held, "success")
    assert gateway.fetch_order(held).payments[0].status is RemoteStatus.AUTHORIZED
    assert gateway.capture(held, amount_minor=50000, currency="INR").status is RemoteStatus.CAPTURED


@pytest.mark.parametrize("shape", ["v1", "v2"])
def test_any_wire_status_can_be_driven_through_the_adapter(pg_server: SimulatorServer, shape: str) -> None:
    """force_status puts a transaction into any wire status; the adapter maps it as STATUS_MAP says."""
    gateway = adapter(pg_server)
    gid = create(gateway).gateway_order_id
    pg_server.sim.payglocal.set_status_shape(shape, gid)
    expected = [
        ("AUTHORIZED_PENDING_CAPTURE", RemoteStatus.AUTHORIZED, None),
        ("EXPIRED", RemoteStatus.FAILED, FailureKind.WINDOW_CLOSED),
        ("AUTHENTICATION_FAILED", RemoteStatus.FAILED, FailureKind.DECLINED),
        ("STEP_UP", RemoteStatus.CREATED, None),
        ("REVERSED", RemoteStatus.REFUNDED, None),
        ("DISPUTED", RemoteStatus.UNKNOWN, None),
        ("SOMETHING_NEW", RemoteStatus.UNKNOWN, None),
    ]
    for wire, status, kind in expected:
        pg_server.sim.payglocal.force_status(gid, wire)
        payment = gateway.fetch_payment(gid)
        assert (payment.wire_status, payment.status, payment.failure_kind) == (wire, status, kind)
        assert (payment.amount_minor, payment.currency) == (50000, "INR")
    assert pg_server.sim.payglocal.snapshot()[0]["status_shape"] == shape
    pg_server.sim.payglocal.force_status(gid, "AUTHORIZED_PENDING_CAPTURE")  # money held: captured once
    assert gateway.capture(gid, amount_minor=50000, currency="INR").wire_status == "SENT_FOR_CAPTURE"


def test_status_shape_and_forced_status_refuse_bad_input(pg_server: SimulatorServer) -> None:
    """An unknown shape, an empty status or an unknown gid is a SimulatorError; the default shape is v1."""
    gid = create(adapter(pg_server)).gateway_order_id
    assert "Amount" in pg_server.sim.payglocal.status(gid)["data"]
    with pytest.raises(SimulatorError):
        pg_server.sim.payglocal.set_status_shape("v3")
    with pytest.raises(SimulatorError):
        pg_server.sim.payglocal.force_status(gid, " ")
    with pytest.raises(SimulatorError):
        pg_server.sim.payglocal.force_status("gl_unknown", "EXPIRED")
