"""The simulator's settlements (issue 16 §5): Razorpay's schedule, netting, ``setl_`` entities, ``settlement.processed``
and the recon API (after-capture.md §4), the fault knobs a reconciliation is tested with, and PayGlocal's CSV
settlement report (§7: no API, the dashboard export's columns are ours). Over real HTTP (uvicorn, port 0)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from simulator import SimulatorServer
from simulator.server import parse_args
from simulator.settlements import fee_and_tax
from tests.unit.simulator.support import Receiver, api, get, new_order, plain

SETL_ID = re.compile(r"^setl_[A-Za-z0-9]{14}$")
ADJ_ID = re.compile(r"^adj_[A-Za-z0-9]{14}$")
IST = timezone(timedelta(hours=5, minutes=30))
DAY_S = 86400
ROW_KEYS = [  # after-capture.md §4.2: the sample row's keys in its order, then the other documented ones
    "entity_id", "type", "debit", "credit", "amount", "currency", "fee", "tax", "on_hold", "settled", "created_at",
    "settled_at", "settlement_id", "settlement_utr", "payment_id", "order_id", "method", "dispute_id",
    "order_receipt", "card_network", "card_issuer", "card_type", "description", "notes",
]


def paid(server: SimulatorServer, amount: int = 100000) -> dict[str, Any]:
    """A captured Razorpay payment of ``amount`` paise (its own order)."""
    return server.sim.pay(new_order(server, amount)["id"], "success")


def control(server: SimulatorServer, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    with plain(server) as client:
        return client.post(path, json=body or {})


def settle(server: SimulatorServer, gateway: str = "razorpay", **body: Any) -> dict[str, Any]:
    """``POST /_sim/{gateway}/settle``."""
    response = control(server, f"/_sim/{gateway}/settle", body)
    assert response.status_code == 200, response.text
    return response.json()


def faults(server: SimulatorServer, **body: Any) -> dict[str, Any]:
    response = control(server, "/_sim/settlements/faults", body)
    assert response.status_code == 200, response.text
    return response.json()


def ist_day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, IST).date()


def recon(server: SimulatorServer, **params: Any) -> httpx.Response:
    with api(server) as client:
        return client.get("/v1/settlements/recon/combined", params=params)


def rows_of_day(server: SimulatorServer, epoch: int, **params: Any) -> list[dict[str, Any]]:
    """The recon rows of the IST day of ``epoch``."""
    day = ist_day(epoch)
    response = recon(server, year=day.year, month=f"{day.month:02d}", day=day.day, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entity"] == "collection" and body["count"] == len(body["items"])
    return body["items"]


def rows_of(server: SimulatorServer, settlement: dict[str, Any]) -> list[dict[str, Any]]:
    """The recon rows of one settlement."""
    found = rows_of_day(server, settlement["created_at"], count=1000)
    return [r for r in found if r["settlement_id"] == settlement["id"]]


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["description"]


def settlements(server: SimulatorServer, **params: Any) -> list[dict[str, Any]]:
    with api(server) as client:
        response = client.get("/v1/settlements", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def webhooks(server: SimulatorServer, receiver: Receiver, event: str) -> list[tuple[Any, dict[str, Any]]]:
    assert server.sim.wait_for_webhooks(5)
    found = [(headers, body, json.loads(body)) for headers, body in receiver.received()]
    for headers, raw, _ in found:  # every webhook is signed over its raw body (razorpay.md §5.3)
        expected = hmac.new(server.config.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-Razorpay-Signature"] == expected
    return [(headers, parsed) for headers, _, parsed in found if parsed["event"] == event]


# -- fees, schedule, netting ---------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "fee_bp", "tax_bp", "expected"), [
    (500000, 200, 1800, (11800, 1800)),  # the §2.4 sample: fee 11800 with 1800 GST
    (99999, 200, 1800, (2358, 359)),  # 1999.98 -> 1999, 359.82 -> 359: each part rounded down
    (100, 200, 1800, (2, 0)),
    (100000, 0, 1800, (0, 0)),
])
def test_the_fee_is_basis_points_of_the_amount_plus_tax_on_the_fee_each_rounded_down(
        amount: int, fee_bp: int, tax_bp: int, expected: tuple[int, int]) -> None:
    assert fee_and_tax(amount, fee_bp, tax_bp) == expected


def test_captured_payments_settle_two_days_later_net_of_fees_and_refunds(server: SimulatorServer,
                                                                        receiver: Receiver) -> None:
    """after-capture.md §4.3 T+2 (simulated seconds), §4.1 entity, §4.2 rows: payment credit = amount − fee
    (the payment's own fee, tax included), refund debit = amount; the settlement's amount is the net."""
    first, second = paid(server, 500000), paid(server, 99999)
    assert (first["fee"], first["tax"], second["fee"], second["tax"]) == (11800, 1800, 2358, 359)
    refund = server.sim.dashboard_refund(first["id"], 50000)
    assert settle(server) == {"settlement_ids": [], "settlements": []}  # nothing due yet
    server.sim.advance_clock(2 * DAY_S - 60)
    assert settlements(server) == []
    server.sim.advance_clock(61)
    (entity,) = settlements(server)
    assert SETL_ID.match(entity["id"]) and re.fullmatch(r"[A-Z0-9]{16}", entity["utr"])
    assert entity | {"id": None, "utr": None, "created_at": None} == {
        "id": None, "entity": "settlement", "amount": 500000 - 11800 + 99999 - 2358 - 50000, "status": "processed",
        "fees": 11800 + 2358, "tax": 1800 + 359, "utr": None, "created_at": None,
    }
    rows = rows_of(server, entity)
    assert [list(r) for r in rows] == [ROW_KEYS] * 3
    assert [(r["entity_id"], r["type"], r["debit"], r["credit"], r["amount"], r["fee"], r["tax"], r["payment_id"])
            for r in rows] == [
        (first["id"], "payment", 0, 488200, 500000, 11800, 1800, None),
        (second["id"], "payment", 0, 97641, 99999, 2358, 359, None),
        (refund["id"], "refund", 50000, 0, 50000, 0, 0, first["id"]),
    ]
    assert {(r["settlement_utr"], r["settled_at"], r["on_hold"], r["settled"], r["currency"]) for r in rows} == {
        (entity["utr"], entity["created_at"], False, True, "INR")}
    assert [(r["order_id"], r["method"], r["dispute_id"]) for r in rows] == [
        (first["order_id"], "netbanking", None), (second["order_id"], "netbanking", None),
        (first["order_id"], "netbanking", None)]
    assert rows[0]["created_at"] == first["created_at"] and rows[2]["created_at"] == refund["created_at"]
    assert settle(server, all=True)["settlement_ids"] == []  # everything is settled once


def test_a_refund_after_a_settlement_is_netted_out_of_the_next_one_when_it_fits(server: SimulatorServer) -> None:
    """§4.2: refunds are debited in the settlement that follows them; §4.3: what does not fit waits."""
    first = paid(server)
    (one,) = settle(server, all=True)["settlements"]
    refund = server.sim.dashboard_refund(first["id"], 30000)
    assert settle(server, all=True)["settlement_ids"] == []  # no credit to take 30000 from yet
    second = paid(server)
    (two,) = settle(server, all=True)["settlements"]
    assert two["amount"] == 100000 - 2360 - 30000 and two["fees"] == 2360
    assert [(r["entity_id"], r["type"]) for r in rows_of(server, two)] == [
        (refund["id"], "refund"), (second["id"], "payment")]  # oldest move first
    assert [r["entity_id"] for r in rows_of(server, one)] == [first["id"]]


def test_a_lost_dispute_is_an_adjustment_row_and_its_refund_is_not_debited_again(server: SimulatorServer) -> None:
    """§3.4/§4.2: the deduction is an ``adj_`` row with ``dispute_id``; the refund entity the simulator makes for
    the lost dispute is the same money and gets no row of its own."""
    payment = paid(server)
    dispute = server.sim.open_dispute(payment["id"], amount=20000)
    server.sim.move_dispute(dispute["id"], status="lost")
    assert [r["status"] for r in server.sim.refunds_of(payment["id"])] == ["processed"]
    (entity,) = settle(server, all=True)["settlements"]
    assert entity["amount"] == 100000 - 2360 - 20000
    payment_row, adjustment = rows_of(server, entity)
    assert payment_row["entity_id"] == payment["id"] and ADJ_ID.match(adjustment["entity_id"])
    assert {k: adjustment[k] for k in ("type", "debit", "credit", "amount", "fee", "tax", "payment_id",
                                       "dispute_id", "order_id")} == {
        "type": "adjustment", "debit": 20000, "credit": 0, "amount": 20000, "fee": 0, "tax": 0,
        "payment_id": payment["id"], "dispute_id": dispute["id"], "order_id": payment["order_id"]}


def test_an_auto_refunded_late_authorisation_moves_no_settled_money(server: SimulatorServer) -> None:
    """after-capture.md §1.2: authorised after M, it is refunded, never captured: nothing to settle."""
    failed = server.sim.pay(new_order(server)["id"], "decline")
    late = server.sim.late_authorize(failed["id"], minutes_after_creation=5 * 24 * 60)
    assert late["captured"] is False and server.sim.refunds_of(failed["id"])[0]["status"] == "processed"
    assert settle(server, all=True)["settlement_ids"] == []


def test_the_fee_knobs_set_the_payment_fee_and_the_settlement_at_once(server: SimulatorServer) -> None:
    with plain(server) as client:
        assert client.post("/_sim/knobs", json={"settlement_fee_bp": 300, "settlement_tax_bp": 0}).status_code == 200
    payment = paid(server)
    assert (payment["fee"], payment["tax"]) == (3000, 0)
    (entity,) = settle(server, all=True)["settlements"]
    assert (entity["amount"], entity["fees"], entity["tax"]) == (97000, 3000, 0)


# -- the entity, its lifecycle and webhook --------------------------------------------------------


def test_a_processed_settlement_sends_settlement_processed_with_the_entity(server: SimulatorServer,
                                                                           receiver: Receiver) -> None:
    """§4.1: the only settlement event, ``payload.settlement.entity``; through the shared (signed) sender."""
    paid(server)
    (made,) = settle(server, all=True)["settlements"]
    ((headers, body),) = webhooks(server, receiver, "settlement.processed")
    assert body["contains"] == ["settlement"] and body["account_id"] == server.config.account_id
    assert body["payload"] == {"settlement": {"entity": made}}
    assert made["status"] == "processed" and headers["X-Razorpay-Event-Id"].startswith("evt_")
    response = get(server, f"/v1/settlements/{made['id']}")
    assert response.status_code == 200 and response.json() == made


def test_a_settlement_is_created_then_processed_later_with_its_utr(server: SimulatorServer,
                                                                   receiver: Receiver) -> None:
    """§4.1 statuses created → processed (test mode: ~2 min, §4.3); the UTR and the webhook come with processing,
    deliveries can be held back (``deliver_webhooks: false``)."""
    server.sim.set_knobs(settlement_processed_after_s=120)
    paid(server)
    (made,) = settle(server, all=True)["settlements"]
    assert (made["status"], made["utr"]) == ("created", None)
    assert [r["settlement_utr"] for r in rows_of(server, made)] == [None]
    server.sim.advance_clock(121)
    fetched = get(server, f"/v1/settlements/{made['id']}").json()
    assert fetched["status"] == "processed" and fetched["utr"]
    assert [r["settlement_utr"] for r in rows_of(server, made)] == [fetched["utr"]]
    ((_, body),) = webhooks(server, receiver, "settlement.processed")
    assert body["payload"]["settlement"]["entity"] == fetched
    paid(server)
    server.sim.set_knobs(settlement_processed_after_s=0)
    assert settle(server, all=True, deliver_webhooks=False)["settlements"][0]["status"] == "processed"
    assert len(webhooks(server, receiver, "settlement.processed")) == 1  # the second one was not delivered


def test_unknown_and_malformed_settlement_ids_are_400(server: SimulatorServer) -> None:
    """§4.1 "unknown → 400", with razorpay.md §0.7's texts."""
    assert error(get(server, "/v1/settlements/setl_AAAAAAAAAAAAAA")) == (400, "The id provided does not exist")
    assert error(get(server, "/v1/settlements/pay_AAAAAAAAAAAAAA")) == (400, "pay_AAAAAAAAAAAAAA is not a valid id")


def test_the_settlement_list_is_newest_first_and_paged(server: SimulatorServer) -> None:
    made = []
    for _ in range(3):
        paid(server)
        made += settle(server, all=True)["settlement_ids"]
        server.sim.advance_clock(10)
    assert [s["id"] for s in settlements(server)] == made[::-1]
    assert [s["id"] for s in settlements(server, count=1, skip=1)] == [made[1]]
    oldest = get(server, f"/v1/settlements/{made[0]}").json()["created_at"]
    assert [s["id"] for s in settlements(server, to=oldest)] == [made[0]]
    assert error(get(server, "/v1/settlements?count=101"))[0] == 400


# -- the recon API ---------------------------------------------------------------------------------


def test_recon_rows_page_by_count_and_skip_in_a_stable_order_100_by_default(server: SimulatorServer) -> None:
    """§4.2: ``count`` 1..1000 and ``skip``; the default count (UNDOCUMENTED) is ours: 100."""
    rzp = server.sim.razorpay
    ids = [server.sim.pay(rzp.create_order({"amount": 10000 + i, "currency": "INR"})["id"], "success",
                          deliver_webhooks=False)["id"] for i in range(101)]
    (entity,) = settle(server, all=True)["settlements"]
    everything = rows_of_day(server, entity["created_at"], count=1000)
    assert [r["entity_id"] for r in everything] == ids
    assert rows_of_day(server, entity["created_at"]) == everything[:100]
    assert rows_of_day(server, entity["created_at"], skip=100) == everything[100:]
    paged = [row for skip in range(0, 101, 7) for row in rows_of_day(server, entity["created_at"], count=7, skip=skip)]
    assert paged == everything and rows_of_day(server, entity["created_at"], count=1000) == everything
    day = ist_day(entity["created_at"])
    month = recon(server, year=day.year, month=day.month, count=1000).json()
    assert month["items"] == everything  # the whole month holds the day
    other = day + timedelta(days=40)
    assert recon(server, year=other.year, month=other.month).json()["items"] == []
    before = day - timedelta(days=1)
    assert recon(server, year=before.year, month=before.month, day=before.day).json()["items"] == []


@pytest.mark.parametrize(("params", "expected"), [
    ({"month": "05"}, "The year field is required."),
    ({"year": "2025"}, "The month field is required."),
    ({"year": "25", "month": "05"}, "The year must be 4 digits"),
    ({"year": "20255", "month": "05"}, "The year must be 4 digits"),
    ({"year": "2025", "month": "13"}, "The month is not a valid month"),
    ({"year": "2025", "month": "0"}, "The month is not a valid month"),
    ({"year": "2025", "month": "may"}, "The month is not a valid month"),
    ({"year": "2025", "month": "05", "day": "123"}, "The day must be between 1 and 2 digits"),
    ({"year": "2025", "month": "02", "day": "30"}, "The day is not a valid day"),
    ({"year": "2025", "month": "05", "count": "0"}, "The count must be at least 1"),
    ({"year": "2025", "month": "05", "count": "1001"}, "The count may not be greater than 1000"),
    ({"year": "2025", "month": "05", "skip": "-1"}, "The skip must be at least 0"),
    ({"year": "2025", "month": "05", "count": "x"}, "The count must be an integer."),
])
def test_recon_refuses_bad_parameters_with_the_documented_texts(server: SimulatorServer, params: dict[str, str],
                                                                expected: str) -> None:
    """§4.2: year and month mandatory; "The year must be 4 digits", "The month is not a valid month", "The day must
    be between 1 and 2 digits", "The count must be at least 1" (the others are ours)."""
    assert error(recon(server, **params)) == (400, expected)


def test_recon_accepts_a_one_digit_month_and_day(server: SimulatorServer) -> None:
    assert recon(server, year="2025", month="5", day="7").status_code == 200


# -- fault knobs --------------------------------------------------------------------------------------


def test_a_skipped_payment_never_appears_in_a_settlement_until_the_fault_is_lifted(server: SimulatorServer) -> None:
    missing, kept = paid(server), paid(server)
    assert faults(server, skip_payment_ids=[missing["id"]])["skip_payment_ids"] == [missing["id"]]
    (entity,) = settle(server, all=True)["settlements"]
    assert [r["entity_id"] for r in rows_of(server, entity)] == [kept["id"]]
    server.sim.advance_clock(3 * DAY_S)
    assert settle(server)["settlement_ids"] == [] and settle(server, all=True)["settlement_ids"] == []
    faults(server, skip_payment_ids=[])
    (later,) = settle(server)["settlements"]
    assert [r["entity_id"] for r in rows_of(server, later)] == [missing["id"]]


def test_a_wrong_amount_row_differs_from_the_payment_by_the_delta(server: SimulatorServer) -> None:
    wrong, right = paid(server), paid(server)
    faults(server, amount_delta={wrong["id"]: -150})
    (entity,) = settle(server, all=True)["settlements"]
    rows = {r["entity_id"]: r for r in rows_of(server, entity)}
    assert (rows[wrong["id"]]["amount"], rows[wrong["id"]]["credit"], rows[wrong["id"]]["fee"]) == (
        99850, 99850 - 2360, 2360)
    assert rows[right["id"]]["amount"] == 100000
    assert entity["amount"] == 2 * (100000 - 2360) - 150
    assert get(server, f"/v1/payments/{wrong['id']}").json()["amount"] == 100000  # the payment is unchanged


def test_a_delayed_payment_settles_later_than_the_schedule_by_its_delay(server: SimulatorServer) -> None:
    late, on_time = paid(server), paid(server)
    faults(server, delay_payment_ids={late["id"]: 3600})
    server.sim.advance_clock(2 * DAY_S + 1)
    (first,) = settlements(server)  # a read catches up with the schedule
    assert [r["entity_id"] for r in rows_of(server, first)] == [on_time["id"]]
    server.sim.advance_clock(3600)
    second, _ = settlements(server)
    (row,) = rows_of(server, second)
    assert row["entity_id"] == late["id"] and row["settled_at"] - first["created_at"] >= 3599


def test_settling_now_ignores_the_schedule_but_not_a_fault_delay(server: SimulatorServer) -> None:
    late, on_time = paid(server), paid(server)
    faults(server, delay_payment_ids={late["id"]: 600})
    (first,) = settle(server, all=True)["settlements"]
    assert first["amount"] == 100000 - 2360
    assert [r["entity_id"] for r in rows_of(server, first)] == [on_time["id"]]
    server.sim.advance_clock(601)
    (second,) = settle(server, all=True)["settlements"]
    assert [r["entity_id"] for r in rows_of(server, second)] == [late["id"]]


def test_unknown_rows_come_with_the_next_settlement_only(server: SimulatorServer) -> None:
    paid(server)
    assert faults(server, unknown_rows=2)["unknown_rows"] == 2
    (entity,) = settle(server, all=True)["settlements"]
    rows = rows_of(server, entity)
    assert len(rows) == 3
    strangers = rows[1:]
    for row in strangers:
        assert row["type"] == "payment" and row["entity_id"].startswith("pay_")
        assert row["credit"] == row["amount"] - row["fee"] > 0
        assert error(get(server, f"/v1/payments/{row['entity_id']}")) == (400, "The id provided does not exist")
        assert error(get(server, f"/v1/orders/{row['order_id']}")) == (400, "The id provided does not exist")
    assert entity["amount"] == sum(r["credit"] for r in rows)
    paid(server)
    (after,) = settle(server, all=True)["settlements"]
    assert len(rows_of(server, after)) == 1


@pytest.mark.parametrize("body", [
    {"unknown_rows": -1}, {"amount_delta": {"pay_x": 1.5}}, {"delay_payment_ids": {"pay_x": -1}},
    {"skip_payment_ids": "pay_x"}, {"unknown": 1},
])
def test_bad_settlement_faults_are_400(server: SimulatorServer, body: dict[str, Any]) -> None:
    assert control(server, "/_sim/settlements/faults", body).status_code == 400


def test_reset_forgets_settlements_and_faults_and_state_shows_them(server: SimulatorServer) -> None:
    paid(server)
    faults(server, unknown_rows=1)
    settle(server, all=True)
    state = server.sim.state(webhooks=False)["settlements"]
    assert len(state["razorpay"]) == 1 and state["payglocal"] == []
    server.sim.reset()
    state = server.sim.state(webhooks=False)["settlements"]
    assert state["razorpay"] == [] and state["faults"]["unknown_rows"] == 0
    assert parse_args(["--settlement-delay-s", "60"])["settlement_delay_s"] == 60.0


# -- PayGlocal's report file ----------------------------------------------------------------------------


def pg_captured(server: SimulatorServer, txn_id: str, amount: str = "500.00") -> str:
    """A SENT_FOR_CAPTURE PayGlocal transaction's gid (initiated in-process, paid on the hosted page)."""
    payload = {"merchantTxnId": txn_id, "merchantUniqueId": f"u-{txn_id}",
               "paymentData": {"totalAmount": amount, "txnCurrency": "INR"}}
    gid = server.sim.payglocal.initiate(payload, server.base_url)["gid"]
    server.sim.pay_payglocal(gid, "success", deliver_callback=False)
    return gid


def report(server: SimulatorServer, day: str | None = None) -> list[dict[str, str]]:
    with plain(server) as client:
        response = client.get("/_sim/payglocal/settlement-report", params={"date": day} if day else {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.startswith('"Transaction Date","Transaction Type","GID"')  # every field quoted
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_payglocal_report_lists_settled_sales_and_refunds_in_major_units(server: SimulatorServer) -> None:
    """after-capture.md §7 (no settlement API; dashboard export columns UNDOCUMENTED: ours); payglocal.md §5 major
    units; the same schedule, fees and netting as Razorpay."""
    gid = pg_captured(server, "txn-1")
    answer = server.sim.payglocal.create_refund(gid, {"merchantTxnId": "rfd-1", "refundType": "P",
                                                      "paymentData": {"totalAmount": "100.50"}})
    assert settle(server, "payglocal")["settlement_ids"] == []
    (made,) = settle(server, "payglocal", all=True)["settlements"]
    assert made["amount"] == 50000 - 1180 - 10050 and made["entity_ids"] == [gid, answer["gid"]]
    day = ist_day(made["created_at"]).isoformat()
    sale, refund = report(server, day)
    assert list(sale) == ["Transaction Date", "Transaction Type", "GID", "Original GID", "Merchant Txn Id",
                          "Merchant Unique Id", "Currency", "Gross Amount", "Fee", "Tax", "Net Amount",
                          "Settlement Date", "Settlement Id", "UTR"]
    assert {k: sale[k] for k in list(sale)[1:11]} == {
        "Transaction Type": "SALE", "GID": gid, "Original GID": "", "Merchant Txn Id": "txn-1",
        "Merchant Unique Id": "u-txn-1", "Currency": "INR", "Gross Amount": "500.00", "Fee": "10.00", "Tax": "1.80",
        "Net Amount": "488.20"}
    assert {k: refund[k] for k in list(refund)[1:11]} == {
        "Transaction Type": "REFUND", "GID": answer["gid"], "Original GID": gid, "Merchant Txn Id": "rfd-1",
        "Merchant Unique Id": "", "Currency": "INR", "Gross Amount": "100.50", "Fee": "0.00", "Tax": "0.00",
        "Net Amount": "-100.50"}
    settled_on = ist_day(made["created_at"]).strftime("%d/%m/%Y")
    assert {(r["Settlement Date"], r["Settlement Id"], r["UTR"]) for r in (sale, refund)} == {
        (settled_on, made["id"], made["utr"])}
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", sale["Transaction Date"])
    assert report(server) == [sale, refund]
    other = (ist_day(made["created_at"]) + timedelta(days=1)).isoformat()
    assert report(server, other) == []


def test_the_payglocal_report_follows_the_schedule_and_the_fault_knobs(server: SimulatorServer) -> None:
    skipped, wrong, late = (pg_captured(server, f"txn-{n}") for n in range(3))
    faults(server, skip_payment_ids=[skipped], amount_delta={wrong: 7}, delay_payment_ids={late: 600},
           unknown_rows=1)
    server.sim.advance_clock(2 * DAY_S + 1)
    rows = report(server)
    assert [r["GID"] for r in rows][:1] == [wrong] and len(rows) == 2
    assert (rows[0]["Gross Amount"], rows[0]["Net Amount"]) == ("500.07", "488.27")
    stranger = rows[1]
    assert stranger["GID"].startswith("gl_") and stranger["GID"] not in (skipped, wrong, late)
    assert stranger["Transaction Type"] == "SALE"
    server.sim.advance_clock(600)
    assert [r["GID"] for r in report(server)] == [wrong, stranger["GID"], late]  # no unknown row again
    assert skipped not in {r["GID"] for r in report(server)}


def test_the_payglocal_report_refuses_a_bad_date(server: SimulatorServer) -> None:
    with plain(server) as client:
        for bad in ("2025-13-01", "01/05/2025", "2025-5-1"):
            response = client.get("/_sim/payglocal/settlement-report", params={"date": bad})
            assert response.status_code == 400 and "YYYY-MM-DD" in response.json()["error"]
