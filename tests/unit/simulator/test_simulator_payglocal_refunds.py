"""The simulator's PayGlocal refunds (after-capture.md §5), over real HTTP with the JWE body and JWS header."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateways.payglocal import tokens
from simulator import SimulatorServer
from tests.unit.gateways.payglocal_fakes import MERCHANT_KID, MID, PAYGLOCAL_KID, gateway_kwargs, keys
from tests.unit.simulator.support import Receiver, plain, start
from tests.unit.simulator.test_simulator_payglocal import adapter, create, sim_config


@pytest.fixture
def pg_server(receiver: Receiver) -> Iterator[SimulatorServer]:
    srv = start(**sim_config(webhook_url=receiver.url))
    yield srv
    srv.stop()


def signer() -> tokens.RequestSigner:
    return tokens.RequestSigner(
        merchant_id=MID, private_key=tokens.load_key(gateway_kwargs()["private_key_pem"]), private_kid=MERCHANT_KID,
        payglocal_public_key=tokens.load_key(keys()["payglocal"].public_pem), payglocal_public_kid=PAYGLOCAL_KID,
        now_ms=lambda: time.time_ns() // 1_000_000,
    )


def captured(srv: SimulatorServer, receipt: str = "order-1", amount_minor: int = 50000) -> str:
    """A SENT_FOR_CAPTURE transaction's gid."""
    gid = create(adapter(srv), receipt, amount_minor=amount_minor).gateway_order_id
    srv.sim.pay_payglocal(gid, "success", deliver_callback=False)
    return gid


def refund(srv: SimulatorServer, gid: str, payload: dict[str, Any]) -> httpx.Response:
    """``POST /gl/v1/payments/{gid}/refund``: the payload as a JWE, signed in ``x-gl-token-external``."""
    body, token = signer().sign_body(payload)
    with plain(srv) as client:
        return client.post(f"/gl/v1/payments/{gid}/refund", content=body,
                           headers={"x-gl-token-external": token, "Content-Type": "text/plain"})


def status(srv: SimulatorServer, identifier: str) -> dict[str, Any]:
    path = tokens.status_path(identifier)
    with plain(srv) as client:
        response = client.get(path, headers={"x-gl-token-external": signer().sign_path(path)})
    assert response.status_code == 200, response.text
    return response.json()


def partial(txn_id: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"merchantTxnId": txn_id, "refundType": "P", "paymentData": {"totalAmount": amount}, **extra}


def test_a_refund_gets_a_new_gid_queryable_by_the_status_enquiry(pg_server: SimulatorServer,
                                                                  receiver: Receiver) -> None:
    """after-capture.md §5.2 shape 1 (a NEW gid, SENT_FOR_REFUND, data.merchantTxnId/refundCurrency/
    refundAmount); the refund gid's status is SENT_FOR_REFUND with the refund amount; the original stays
    SENT_FOR_CAPTURE after a partial, SENT_FOR_REFUND once all is refunded. No refund webhook."""
    gid = captured(pg_server)
    first = refund(pg_server, gid, partial("refund-1", "100.00", merchantUniqueId="refund-u1"))
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["gid"].startswith("gl_") and answer["gid"] != gid
    assert answer | {"gid": None, "timestamp": None} == {
        "gid": None, "status": "SENT_FOR_REFUND", "message": "Refund request sent successfully", "timestamp": None,
        "reasonCode": "GL-201-001", "data": {"merchantTxnId": "refund-1", "refundCurrency": "INR",
                                             "refundAmount": "100.00"}, "errors": None,
    }
    of_refund = status(pg_server, answer["gid"])["data"]
    assert (of_refund["status"], of_refund["gid"], of_refund["merchantTxnId"]) == (
        "SENT_FOR_REFUND", answer["gid"], "refund-1")
    assert of_refund["Amount"] in ("100.00", "100")  # some answers drop the decimals (payglocal.md §3)
    assert status(pg_server, "refund-u1")["data"]["gid"] == answer["gid"]  # by the refund's merchantUniqueId
    assert status(pg_server, gid)["data"]["status"] == "SENT_FOR_CAPTURE"
    rest = refund(pg_server, gid, partial("refund-2", "400.00")).json()
    assert (rest["status"], rest["data"]["refundAmount"]) == ("SENT_FOR_REFUND", "400.00")
    assert status(pg_server, gid)["data"]["status"] == "SENT_FOR_REFUND"
    assert [(r["gid"], r["amount_minor"]) for r in pg_server.sim.refunds_of(gid)] == [(answer["gid"], 10000),
                                                                                      (rest["gid"], 40000)]
    with plain(pg_server) as control:
        assert len(control.get(f"/_sim/payments/{gid}/refunds").json()["refunds"]) == 2
        assert len(control.get("/_sim/state").json()["payglocal"]["refunds"]) == 2
    assert pg_server.sim.wait_for_webhooks(5) and receiver.received() == []


def test_a_repeated_merchant_txn_id_is_an_idempotent_retry_only_with_the_same_body(
        pg_server: SimulatorServer) -> None:
    """after-capture.md §5.4: the same merchantTxnId and body return the same refund; another body 409; the
    original's merchantTxnId, or one a capture/initiate used, 400."""
    gid = captured(pg_server)
    payload = partial("refund-1", "100.00")
    first = refund(pg_server, gid, payload).json()
    again = refund(pg_server, gid, payload)
    assert again.status_code == 201 and again.json()["gid"] == first["gid"]
    assert len(pg_server.sim.refunds_of(gid)) == 1
    other = refund(pg_server, gid, partial("refund-1", "200.00"))
    assert other.status_code == 409 and other.json()["status"] == "REQUEST_ERROR"
    assert refund(pg_server, gid, partial("order-1", "1.00")).status_code == 400  # the original's merchantTxnId
    second = captured(pg_server, "order-2")
    assert refund(pg_server, second, partial("order-1", "1.00")).status_code == 400  # used by another initiate
    assert refund(pg_server, second, partial("refund-1", "100.00")).status_code == 409  # another gid


def test_over_refunds_and_refunds_of_uncaptured_transactions_are_refused(pg_server: SimulatorServer) -> None:
    """after-capture.md §5.4: only SENT_FOR_CAPTURE; cumulative partials ≤ captured (400 GL-400-006); one full
    refund, of all of it; P needs an amount; unknown gid 404."""
    gid = captured(pg_server)
    too_much = refund(pg_server, gid, partial("r-1", "500.01"))
    assert (too_much.status_code, too_much.json()["reasonCode"]) == (400, "GL-400-006")
    assert refund(pg_server, gid, {"merchantTxnId": "r-2", "refundType": "P"}).status_code == 400
    assert refund(pg_server, gid, {"merchantTxnId": "r-3", "refundType": "X"}).status_code == 400
    assert refund(pg_server, gid, partial("r-4", "300.00")).status_code == 201
    assert refund(pg_server, gid, partial("r-5", "200.01")).json()["reasonCode"] == "GL-400-006"
    assert refund(pg_server, gid, {"merchantTxnId": "r-6", "refundType": "F"}).json()["reasonCode"] == "GL-400-006"
    full = captured(pg_server, "order-2")
    whole = refund(pg_server, full, {"merchantTxnId": "r-7", "refundType": "F"}).json()
    assert (whole["status"], whole["data"]["refundAmount"]) == ("SENT_FOR_REFUND", "500.00")
    assert refund(pg_server, full, {"merchantTxnId": "r-8", "refundType": "F"}).status_code == 400  # only one
    held = create(adapter(pg_server), "order-3", manual_capture=True).gateway_order_id
    pg_server.sim.pay_payglocal(held, "success", deliver_callback=False)  # AUTHORIZED: reverse it, not refund
    assert refund(pg_server, held, {"merchantTxnId": "r-9", "refundType": "F"}).status_code == 400
    assert refund(pg_server, "gl_00000000-0000-4000-8000-000000000000", partial("r-10", "1")).status_code == 404


def test_the_refund_shape_and_failure_knobs(pg_server: SimulatorServer) -> None:
    """refund_shape 2 answers openapi.yaml's shape (data.originalGid); fail_next answers REQUEST_ERROR, and the
    failed refund takes nothing back."""
    gid = captured(pg_server)
    pg_server.sim.set_knobs(refund_shape=2)
    shaped = refund(pg_server, gid, partial("r-1", "100.00")).json()
    assert shaped == {"gid": shaped["gid"], "status": "SENT_FOR_REFUND",
                      "data": {"gid": shaped["gid"], "originalGid": gid, "status": "SENT_FOR_REFUND",
                               "refundAmount": "100.00"}}
    pg_server.sim.set_knobs(refund_shape=1)
    with plain(pg_server) as control:
        assert control.post("/_sim/refunds/behaviour", json={"fail_next": 1}).json()["fail_next"] == 1
    failed = refund(pg_server, gid, partial("r-2", "400.00"))
    assert failed.status_code == 201
    assert (failed.json()["status"], failed.json()["errors"]["code"]) == ("REQUEST_ERROR", "GL-400-001")
    assert status(pg_server, failed.json()["gid"])["data"]["status"] == "REQUEST_ERROR"
    assert refund(pg_server, gid, partial("r-3", "400.00")).json()["status"] == "SENT_FOR_REFUND"
    assert status(pg_server, gid)["data"]["status"] == "SENT_FOR_REFUND"
    assert [r["status"] for r in pg_server.sim.refunds_of(gid)] == ["SENT_FOR_REFUND", "REQUEST_ERROR",
                                                                   "SENT_FOR_REFUND"]


def test_a_dashboard_refund_is_recorded_with_its_own_gid(pg_server: SimulatorServer) -> None:
    """refund_payglocal (the control refund) refunds what is left, as a refund with its own gid."""
    gid = captured(pg_server)
    refund(pg_server, gid, partial("r-1", "100.00"))
    assert pg_server.sim.refund_payglocal(gid)["data"]["status"] == "SENT_FOR_REFUND"
    assert [r["amount_minor"] for r in pg_server.sim.refunds_of(gid)] == [10000, 40000]
