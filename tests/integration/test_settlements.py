"""Settlement reconciliation on Postgres against the simulator: pull (idempotent, resumable), import (whole or
nothing), match (every fault in its bucket), the recheck a settled-but-uncredited order gets, the report."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db.models import SettlementPull, SettlementRow
from gateways.payglocal.settlement_report import MalformedReport
from tests.runtime import CURRENT, app
from tests.support import inbox_rows, new_order, order_row
from worker.services import settlement_import, settlement_match, settlement_pull, settlement_report
from worker.services.poll import reconcile_order
from worker.services.refunds import RefundRequest, request_refund
from worker.services.views import order_detail
from worker.settings import Settings


def paid(deps, simulator, org="org-in", *, credit=True, **order):
    placed = new_order(deps, org, **order)
    simulator.sim.pay(placed.gateway_order_id, "success", deliver_webhooks=False)
    if credit:
        reconcile_order(placed.id, deps=deps)
        assert order_row(deps, placed.id).state == "paid"
    return placed


def payment_of(deps, order_id: str) -> str:
    return order_detail(order_id, deps=deps)["payments"][0]["payment_id"]


def buckets(deps) -> dict[str, str]:
    with deps.sessions() as session:
        return dict(session.execute(select(SettlementRow.entity_id, SettlementRow.bucket)).all())


def settlement_day(deps):
    """The recon day a settlement made now is filed under: today in IST, Razorpay's likely zone (the simulator's),
    which is a day ahead of the UTC date from 18:30 UTC."""
    return max(deps.gateway("razorpay").settlement_days(deps.clock.now()))


def pull_today(deps, **kwargs):
    today = deps.clock.now().date()
    return [settlement_pull.pull_day("razorpay", today + timedelta(days=d), deps=deps, **kwargs) for d in (0, 1)]


def test_every_fault_lands_in_its_bucket_and_the_uncredited_order_is_rechecked(deps, org, simulator):
    good = paid(deps, simulator)
    refunded = paid(deps, simulator)
    missing = paid(deps, simulator)
    wrong = paid(deps, simulator)
    uncredited = paid(deps, simulator, credit=False)  # the money was taken; no webhook, no check yet
    request_refund(refunded.id, RefundRequest(None, "customer asked", "support:test"), deps=deps)
    ids = {name: payment_of(deps, o.id) for name, o in (("good", good), ("refunded", refunded), ("missing", missing),
                                                         ("wrong", wrong))}
    simulator.sim.set_settlement_faults(skip_payment_ids=[ids["missing"]], amount_delta={ids["wrong"]: -100},
                                        unknown_rows=1)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    pull_today(deps)
    asked: list[str] = []
    done = settlement_match.match(deps=deps, recheck=asked.append)
    found = buckets(deps)
    assert found[ids["good"]] == "settled_credited" and found[ids["refunded"]] == "settled_credited"
    assert found[ids["wrong"]] == "amount_mismatch" and ids["missing"] not in found
    refund_rows = {k: v for k, v in found.items() if k.startswith("rfnd_")}
    assert set(refund_rows.values()) == {"deduction_reversed"}
    unknown = [k for k, v in found.items() if v == "unmatched"]
    assert len(unknown) == 1 and unknown[0] not in ids.values()
    not_credited = [k for k, v in found.items() if v == "settled_not_credited"]
    assert len(not_credited) == 1 and done.rechecks == [uncredited.id] == asked
    assert settlement_match.match(deps=deps, recheck=asked.append).rechecks == []  # rechecked once, not every run

    reconcile_order(uncredited.id, deps=deps)  # what the recheck does: the order is credited now
    settlement_match.match(deps=deps)
    assert buckets(deps)[not_credited[0]] == "settled_credited"  # reopened rows move on; good ones stay

    later = dataclasses.replace(deps, clock=_Later(deps.clock, days=7))
    late = settlement_match.credited_not_settled(deps=later)
    assert [row["payment_id"] for row in late] == [ids["missing"]]
    assert settlement_match.credited_not_settled(deps=deps) == []  # within delay + slack: not yet


class _Later:
    def __init__(self, clock, *, days: int):
        self.clock, self.delta = clock, timedelta(days=days)

    def now(self):
        return self.clock.now() + self.delta


def test_pulling_twice_or_overlapping_stores_each_row_once_and_resumes_after_a_crash(deps, org, simulator):
    for _ in range(5):
        paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    first = pull_today(deps, page=2)
    assert sum(p.rows for p in first) == 5 and sum(p.pages for p in first) >= 3
    again = pull_today(deps, page=2)
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(SettlementRow)).scalar_one() == 5
        session.execute(SettlementPull.__table__.update().values(next_skip=2, complete=False))
        session.commit()
    assert sum(p.rows for p in again) == 0  # a recent day is read again from the start: nothing new, none doubled
    calls = []
    real = deps.gateway("razorpay").fetch_settlement_lines

    def dies_on_second_page(*args, **kwargs):
        calls.append(kwargs["skip"])
        if len(calls) == 2:
            raise httpx.ReadTimeout("killed mid-day")
        return real(*args, **kwargs)

    deps.gateway("razorpay").fetch_settlement_lines = dies_on_second_page
    try:
        with pytest.raises(httpx.ReadTimeout):
            settlement_pull.pull_day("razorpay", settlement_day(deps), deps=deps, page=2)
    finally:
        del deps.gateway("razorpay").fetch_settlement_lines
    with deps.sessions() as session:
        cursor = session.execute(select(SettlementPull)).scalars().all()
    assert any(c.next_skip == 4 for c in cursor)  # the first page's rows and cursor were committed together
    pull_today(deps, page=2)
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(SettlementRow)).scalar_one() == 5


def test_payglocal_report_import_is_whole_or_nothing_and_once_per_file(deps, org, simulator, tmp_path):
    good = paid(deps, simulator, "org-us")
    simulator.sim.settle("payglocal", everything=True, deliver_webhooks=False)
    report = simulator.sim.payglocal_settlement_report()
    path = tmp_path / "gcc-settlements.csv"
    path.write_text(report)
    done = settlement_import.import_report(path, "payglocal", deps=deps, imported_by="finance:test")
    assert done.new and done.rows == 1
    assert not settlement_import.import_report(path, "payglocal", deps=deps, imported_by="finance:test").new
    settlement_match.match(deps=deps)
    assert list(buckets(deps).values()) == ["settled_credited"], good.id

    broken = tmp_path / "broken.csv"
    lines = report.splitlines()
    broken.write_text("\n".join([*lines, lines[1].replace(lines[1].split(",")[0], '"x"', 1).replace(
        '"USD"', '"US DOLLAR"')]) + "\n")
    with pytest.raises(MalformedReport, match="line 3"):
        settlement_import.import_report(broken, "payglocal", deps=deps, imported_by="finance:test")
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(SettlementRow)).scalar_one() == 1  # nothing kept


def test_the_report_totals_per_day_and_currency_and_its_csv(deps, org, simulator):
    placed = paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    pull_today(deps)
    settlement_match.match(deps=deps)
    today = deps.clock.now().date()
    found = settlement_report.report(deps=deps, start=today - timedelta(days=1), end=today + timedelta(days=1))
    (total,) = found.totals
    assert total.gross_minor == placed.amount_minor and total.net_minor == placed.amount_minor - total.fees_minor
    assert 0 < total.tax_minor < total.fees_minor
    csv_text = settlement_report.as_csv(found)
    assert csv_text.splitlines()[0].startswith("section,day,gateway") and "settled_credited" in csv_text
    assert found.attention() == {}


def test_settlement_processed_webhook_pulls_its_day_and_matches(deps, org, simulator, web, worker):
    placed = paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=True)
    payment = payment_of(deps, placed.id)
    for _ in range(200):
        if buckets(deps).get(payment) == "settled_credited":
            break
        time.sleep(0.05)
    assert buckets(deps).get(payment) == "settled_credited"
    rows = [r for r in inbox_rows(deps) if r.event_type == "settlement.processed"]
    assert rows and rows[0].status == "processed" and "pulled" in rows[0].reason


def test_report_api_needs_the_finance_scope_and_gives_json_and_csv(deps, org, simulator):
    placed = paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    pull_today(deps)
    settlement_match.match(deps=deps)
    tokens = {"finance": "finance-token-0123456789", "billing": "billing-token-0123456789"}
    settings = deps.settings.model_copy(update={"api_tokens": {**deps.settings.api_tokens, **tokens},
                                                "api_token_scopes": {name: [name] for name in tokens}})
    CURRENT["deps"] = dataclasses.replace(deps, settings=Settings.model_validate(settings.model_dump()))
    today = deps.clock.now().date()
    params = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    with TestClient(app) as client:
        def get(token, **extra):
            return client.get("/settlements/report", params={**params, **extra},
                              headers={"Authorization": f"Bearer {tokens[token]}"})

        assert get("billing").status_code == 403
        answer = get("finance")
        assert answer.status_code == 200 and answer.json()["totals"][0]["gross_minor"] == placed.amount_minor
        assert answer.json()["buckets"]["settled_credited"][0]["order_id"] == placed.id
        csv_answer = get("finance", format="csv")
        assert csv_answer.headers["content-type"].startswith("text/csv") and placed.id in csv_answer.text
        assert get("finance", **{"from": str(today), "to": str(today - timedelta(days=2))}).status_code == 422


def test_console_settlements_page_lists_the_buckets_and_downloads_the_csv(deps, org, simulator):
    from tests.console.support import PASSWORDS, with_accounts

    placed = paid(deps, simulator)
    uncredited = paid(deps, simulator, credit=False)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    pull_today(deps)
    settlement_match.match(deps=deps)
    with_accounts(deps)
    with TestClient(app) as client:
        login = client.get("/console/login").text
        token = login.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/console/login", data={"csrf_token": token, "name": "vera", "password": PASSWORDS["vera"]})
        page = client.get("/console/settlements")
        assert page.status_code == 200 and "1 settled_not_credited" in page.text
        assert placed.id in page.text and uncredited.id in page.text
        csv_answer = client.get("/console/settlements.csv")
        assert csv_answer.status_code == 200 and "settled_not_credited" in csv_answer.text


def test_the_settlement_recheck_credits_the_order_and_its_row_leaves_the_paging_bucket(deps, org, simulator, actors,
                                                                                       worker):
    uncredited = paid(deps, simulator, credit=False)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    pull_today(deps)
    deps.recheck_now = actors.recheck_settled_order.send  # as build_runtime wires it
    assert settlement_match.match(deps=deps, recheck=deps.recheck_now).rechecks == [uncredited.id]
    with deps.sessions() as session:
        payment = session.execute(select(SettlementRow.entity_id)
                                  .where(SettlementRow.order_id == uncredited.id)).scalar_one()
    for _ in range(200):
        if buckets(deps).get(payment) == "settled_credited":
            break
        time.sleep(0.05)
    assert buckets(deps)[payment] == "settled_credited" and order_row(deps, uncredited.id).state == "paid"


def _recon(entity_id="pay_x1", **fields):
    return {"entity_id": entity_id, "type": "payment", "amount": 1000, "currency": "INR", "fee": 20, "tax": 3,
            "credit": 980, "debit": 0, "settled_at": 1_764_000_000, "settlement_id": "setl_1", **fields}


@pytest.mark.parametrize(("fields", "why"), [
    ({"settled_at": 1_764_000_000_000}, "settled_at"), ({"amount": 2**63}, "amount_minor"),
    ({"currency": "INRX"}, "currency"), ({"entity_id": "pay_" + "x" * 80}, "entity_id"),
    ({"settlement_id": "setl\x00"}, "settlement_id")])
def test_a_broken_recon_row_is_refused_at_the_adapter(fields, why):
    from gateways.errors import MalformedEvent
    from gateways.razorpay.mapping import recon_line_from_json

    with pytest.raises(MalformedEvent, match=why):
        recon_line_from_json(_recon(**fields))


def test_a_day_answered_with_a_broken_row_is_logged_and_the_other_days_go_on(deps, org, simulator):
    broken_day = deps.clock.now().date() - timedelta(days=3)
    gateway = deps.gateway("razorpay")
    real = gateway.fetch_settlement_lines

    def answer(year, month, day, *, skip, count):
        if (year, month, day) == (broken_day.year, broken_day.month, broken_day.day):
            from gateways.errors import GatewayPermanent

            raise GatewayPermanent("recon row 'pay_x': settled_at is not a time between 2000 and 2100")
        return real(year, month, day, skip=skip, count=count)

    paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    gateway.fetch_settlement_lines = answer
    try:
        pulled = settlement_pull.pull_due(deps=deps)
    finally:
        del gateway.fetch_settlement_lines
    assert broken_day not in {p.day for p in pulled} and sum(p.rows for p in pulled) == 1
    assert broken_day in settlement_pull.days_due("razorpay", deps=deps)  # tried again next time


def test_a_settlement_webhook_with_an_absurd_time_is_refused_not_retried_forever():
    from gateways.errors import MalformedEvent
    from gateways.razorpay.mapping import settlement_from_json

    for created_at in (10**20, 1_764_000_000_000, -1_893_456_000):
        with pytest.raises(MalformedEvent):
            settlement_from_json({"id": "setl_1", "amount": 1, "status": "processed", "created_at": created_at})


def test_two_pulls_of_a_new_day_at_once_both_finish(deps, org, simulator):
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(3):
        paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    today = settlement_day(deps)
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: settlement_pull.pull_day("razorpay", today, deps=deps, page=1), range(2)))
    assert len(done) == 2
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(SettlementRow)).scalar_one() == 3


def test_import_refuses_what_it_cannot_store_and_counts_rows_held_already(deps, org, simulator, tmp_path):
    paid(deps, simulator, "org-us")
    simulator.sim.settle("payglocal", everything=True, deliver_webhooks=False)
    report = simulator.sim.payglocal_settlement_report()
    header, row = report.splitlines()[:2]
    cases = {"latin1.csv": (header + "\n" + row + "\n").replace('"USD"', '"USD\xe9"').encode("latin-1")}
    gid = row.split(",")[2]
    cases["negative.csv"] = "\n".join([header, row.replace(row.split(",")[7], '"-12.00"', 1)]).encode()
    cases["huge.csv"] = "\n".join([header, row.replace(row.split(",")[7], '"100000000000000000000.00"', 1)]).encode()
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(MalformedReport):
            settlement_import.import_report(path, "payglocal", deps=deps, imported_by="finance:test")
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(report)
    second.write_text(report + "\n")  # another file (another hash), the same transactions
    settlement_import.import_report(first, "payglocal", deps=deps, imported_by="finance:test")
    again = settlement_import.import_report(second, "payglocal", deps=deps, imported_by="finance:test")
    assert again.new and again.rows == 1 and again.new_rows == 0 and gid


def test_the_accountants_csv_defuses_formulas_from_gateway_text(deps, org):
    from gateways.port import SettlementLine
    from worker.services.settlement_store import store

    with deps.unit() as uow:
        store(uow.session, "razorpay", [SettlementLine(
            entity_id='=HYPERLINK("http://evil/")', kind="payment", amount_minor=100, currency="INR", fee_minor=0,
            tax_minor=0, credit_minor=100, debit_minor=0, settlement_id="+1+1", utr="@SUM(1)",
            settled_at=int(deps.clock.now().timestamp()))], source="api", now=uow.now)
        uow.commit()
    settlement_match.match(deps=deps)
    today = deps.clock.now().date()
    text = settlement_report.as_csv(settlement_report.report(deps=deps, start=today, end=today))
    assert "'=HYPERLINK" in text and "'+1+1" in text and "'@SUM(1)" in text
    assert ',=HYPERLINK' not in text


def test_a_refund_settled_for_another_amount_than_we_refunded_is_a_mismatch(deps, org, simulator):
    from gateways.port import SettlementLine
    from worker.services.settlement_store import store

    placed = paid(deps, simulator)
    done = request_refund(placed.id, RefundRequest(1_000, "customer asked", "support:test"), deps=deps)
    lines = [SettlementLine(entity_id=done.gateway_refund_id, kind="refund", amount_minor=amount, currency="INR",
                            fee_minor=0, tax_minor=0, credit_minor=0, debit_minor=amount, settlement_id="setl_t",
                            utr=None, settled_at=int(deps.clock.now().timestamp()),
                            payment_id=payment_of(deps, placed.id)) for amount in (5_000,)]
    with deps.unit() as uow:
        store(uow.session, "razorpay", lines, source="api", now=uow.now)
        uow.commit()
    settlement_match.match(deps=deps)
    assert buckets(deps) == {done.gateway_refund_id: "amount_mismatch"}


def test_a_report_stored_chunk_by_chunk_is_matched_as_match_would_and_keeps_the_first_of_a_repeated_row(
        deps, org, simulator, tmp_path, monkeypatch):
    """The COPY pipeline (a writer thread inserting each chunk matched while the next is read), in chunks of 2:
    every row's bucket and order as ``match`` gives them to the same rows stored unmatched; a transaction repeated
    later in the file (in another chunk, and in the same one) is kept as first received."""
    from worker.services import settlement_store

    monkeypatch.setattr(settlement_store, "CHUNK", 2)
    for _ in range(3):
        paid(deps, simulator, "org-us")
    paid(deps, simulator, "org-us", credit=False)  # settled, never seen here (PayGlocal's report names no order)
    simulator.sim.set_settlement_faults(unknown_rows=1)
    simulator.sim.settle("payglocal", everything=True, deliver_webhooks=False)
    header, *rows = simulator.sim.payglocal_settlement_report().splitlines()
    gross = header.split(",").index('"Gross Amount"')
    changed = rows[0].split(",")
    changed[gross] = '"1.00"'
    unique = header.split(",").index('"Merchant Unique Id"')
    odd = rows[2].split(",")
    odd[unique] = '"back\\slash\ttab ""quoted"""'  # what COPY's text format must escape, kept as received
    rows[2] = ",".join(odd)
    path = tmp_path / "chunks.csv"
    path.write_text("\n".join([header, *rows, ",".join(changed), rows[1]]) + "\n")  # the last two: repeats
    done = settlement_import.import_report(path, "payglocal", deps=deps, imported_by="finance:test")
    assert (done.rows, done.new_rows) == (len(rows) + 2, len(rows))
    with deps.sessions() as session:
        stored = {r.entity_id: (r.bucket, r.order_id, r.amount_minor) for r in session.execute(
            select(SettlementRow)).scalars()}
    assert sorted(bucket for bucket, _, _ in stored.values()) == ["settled_credited"] * 3 + ["unmatched"] * 2
    assert all(amount != 100 for _, _, amount in stored.values())  # the repeat did not replace the first
    with deps.sessions() as session:
        raws = [r.raw.get("Merchant Unique Id") for r in session.execute(select(SettlementRow)).scalars()]
    assert 'back\\slash\ttab "quoted"' in raws
    with deps.unit() as uow:
        uow.session.execute(SettlementRow.__table__.update().values(bucket=None, order_id=None))
        uow.commit()
    settlement_match.match(deps=deps, recheck=None)
    with deps.sessions() as session:
        assert {r.entity_id: (r.bucket, r.order_id, r.amount_minor) for r in session.execute(
            select(SettlementRow)).scalars()} == stored


def test_a_bad_row_or_a_failed_chunk_later_in_the_file_keeps_nothing_and_the_connection_goes_on(
        deps, org, simulator, tmp_path, monkeypatch):
    from gateways.port import SettlementLine
    from worker.services import settlement_store

    monkeypatch.setattr(settlement_store, "CHUNK", 2)
    for _ in range(5):
        paid(deps, simulator, "org-us")
    simulator.sim.settle("payglocal", everything=True, deliver_webhooks=False)
    header, *rows = simulator.sim.payglocal_settlement_report().splitlines()
    path = tmp_path / "late-error.csv"
    path.write_text("\n".join([header, *rows, rows[0].replace('"USD"', '"US DOLLAR"')]) + "\n")
    with pytest.raises(MalformedReport, match=f"line {len(rows) + 2}"):  # after two chunks were written
        settlement_import.import_report(path, "payglocal", deps=deps, imported_by="finance:test")

    def line(n: int, amount: int) -> SettlementLine:
        return SettlementLine(entity_id=f"gl_chunk{n}", kind="payment", amount_minor=amount, currency="USD",
                              fee_minor=0, tax_minor=0, credit_minor=amount, debit_minor=0, settlement_id=None,
                              utr=None, settled_at=int(time.time()))
    with deps.unit() as uow, pytest.raises(Exception, match="out of range"):  # the database refuses chunk 3
        settlement_store.store_all(uow.session, "payglocal", [line(n, 2**70 if n == 5 else 100) for n in range(8)],
                                   source="test", now=uow.now)
    with deps.sessions() as session:
        assert session.execute(select(func.count()).select_from(SettlementRow)).scalar_one() == 0
    fine = tmp_path / "fine.csv"
    fine.write_text("\n".join([header, *rows]) + "\n")
    assert settlement_import.import_report(fine, "payglocal", deps=deps, imported_by="finance:test").new_rows == 5


def test_a_settlement_announced_in_the_utc_evening_pulls_its_ist_day_as_well(deps, org, simulator):
    """Razorpay's recon day is in an undocumented zone, likely IST: a settlement made at 20:00 UTC is on the next
    IST day. The announcement reopens and pulls both days (the webhook-prompted pull asked for the UTC day
    alone, and found nothing from 18:30 UTC on)."""
    import json
    from datetime import UTC, datetime

    from gateways.razorpay.signature import sign
    from worker.services import inbox, intake

    paid(deps, simulator)
    simulator.sim.settle("razorpay", everything=True, deliver_webhooks=False)
    [announced] = [e for e in simulator.sim.webhook_events() if json.loads(e.body)["event"] == "settlement.processed"]
    event = json.loads(announced.body)
    evening = datetime.combine(deps.clock.now().date() - timedelta(days=1), datetime.min.time(), UTC) \
        + timedelta(hours=20)
    event["payload"]["settlement"]["entity"]["created_at"] = int(evening.timestamp())
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": "evt_settled_in_the_evening",
               "X-Razorpay-Signature": sign(simulator.config.webhook_secret, body)}
    stored = intake.store_webhook("razorpay", body, headers, deps=deps)
    inbox.process_inbox_event(stored.inbox_id, deps=deps)
    utc_day, ist_day = evening.date(), evening.date() + timedelta(days=1)
    [row] = [r for r in inbox_rows(deps) if r.id == stored.inbox_id]
    assert row.status == "processed" and f"{utc_day} and {ist_day} pulled" in row.reason
    with deps.sessions() as session:
        days = set(session.execute(select(SettlementPull.day).where(SettlementPull.gateway == "razorpay")).scalars())
    assert {utc_day, ist_day} <= days
