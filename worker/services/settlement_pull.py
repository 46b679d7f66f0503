"""Pulling settled transactions from a gateway that reports them by API (Razorpay's recon rows), day by day
and page by page (``count``/``skip``).

Each page is stored together with the day's cursor, in one transaction: a pull killed mid-day resumes at the
page after the last one stored, and a page stored twice (an overlap, a re-run) changes nothing. A day is
complete once a short page was seen and the day is two days past (nothing more settles on it); until then
every pull reads it again from the start. ``settlement.processed`` webhooks make their day due again."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select

from db import queries
from db.models import SettlementPull
from gateways.errors import GatewayNotFound, GatewayPermanent
from worker.deps import Deps
from worker.logging import get_logger
from worker.services.settlement_store import store

PAGE = 1_000  #: the recon endpoint's largest page (after-capture.md §4.2)
MAX_DAYS_BACK = 400  #: a pull never reaches further back (a broken webhook cannot ask for 1910)
SETTLED_FOR_GOOD = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Pulled:
    gateway: str
    day: date
    pages: int
    rows: int
    complete: bool


def pull_day(gateway_name: str, day: date, *, deps: Deps, page: int = PAGE) -> Pulled:
    """Pull every page of ``day`` not stored yet."""
    gateway = deps.gateway(gateway_name)
    log = get_logger(gateway=gateway_name, day=day.isoformat())
    pages = rows = 0
    while True:
        with deps.unit() as uow:
            cursor = _cursor(uow.session, gateway_name, day, now=uow.now)
            complete, skip = cursor.complete, cursor.next_skip
            uow.commit()  # a new day's cursor is made once, here, not again with the first page
        if complete:
            return Pulled(gateway_name, day, pages, rows, True)
        lines = gateway.fetch_settlement_lines(day.year, day.month, day.day, skip=skip, count=page)
        with deps.unit() as uow:
            cursor = _cursor(uow.session, gateway_name, day, now=uow.now, lock=True)
            if cursor.next_skip != skip:  # another pull stored this page meanwhile: go on from where it is
                uow.commit()
                continue
            noon = int(datetime.combine(day, time(12), UTC).timestamp())  # a row that says no time settled that day
            _, new = store(uow.session, gateway_name, (line if line.settled_at is not None
                                                       else replace(line, settled_at=noon) for line in lines),
                           source="api", now=uow.now)
            pages, rows = pages + 1, rows + new
            cursor.rows, cursor.updated_at = cursor.rows + new, uow.now
            short = len(lines) < page
            if not short:
                cursor.next_skip = skip + len(lines)
            elif day <= uow.now.date() - SETTLED_FOR_GOOD:
                cursor.next_skip, cursor.complete = skip + len(lines), True
            else:
                cursor.next_skip = 0  # the day may still grow: read it again next time
            uow.commit()
        if short:
            log.info("settlement_day_pulled", pages=pages, rows=rows, complete=cursor.complete)
            return Pulled(gateway_name, day, pages, rows, cursor.complete)


def _cursor(session, gateway: str, day: date, *, now, lock: bool = False) -> SettlementPull:
    """The day's cursor, made if new (INSERT … ON CONFLICT: two pulls starting the same day both go on)."""
    query = select(SettlementPull).where(SettlementPull.gateway == gateway, SettlementPull.day == day)
    found = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
    if found is None:
        queries.insert_ignore(session, SettlementPull, {"gateway": gateway, "day": day, "next_skip": 0, "rows": 0,
                                                        "complete": False, "updated_at": now},
                              ("gateway", "day"))
        found = session.execute(query.with_for_update() if lock else query).scalar_one()
    return found


def days_due(gateway_name: str, *, deps: Deps) -> list[date]:
    """The days to pull now: every incomplete day from the first one (``settlement_first_days`` back on a first
    pull) up to tomorrow: Razorpay's days are undocumented in zone, likely IST, which is ahead of UTC."""
    today = deps.clock.now().date() + timedelta(days=1)
    with deps.sessions() as session:
        done = set(session.execute(select(SettlementPull.day).where(
            SettlementPull.gateway == gateway_name, SettlementPull.complete.is_(True))).scalars())
        first = session.execute(select(SettlementPull.day).where(SettlementPull.gateway == gateway_name)
                                .order_by(SettlementPull.day).limit(1)).scalar_one_or_none()
    start = min(first or today, today - timedelta(days=deps.settings.settlement_first_days))
    start = max(start, today - timedelta(days=MAX_DAYS_BACK))
    return [start + timedelta(days=n) for n in range((today - start).days + 1)
            if start + timedelta(days=n) not in done]


def pull_due(*, deps: Deps) -> list[Pulled]:
    """The scheduler's job: every due day of every gateway that reports settlements by API. A day the gateway
    refuses or answers with a broken row is logged and left incomplete (the next run tries it again); the
    other days go on. A gateway that is down ends the run (the actor retries it)."""
    pulled = []
    for name, gateway in deps.gateways.items():
        if not gateway.settles_by_api:
            continue
        for day in days_due(name, deps=deps):
            try:
                pulled.append(pull_day(name, day, deps=deps))
            except (GatewayPermanent, GatewayNotFound) as exc:
                get_logger(gateway=name, day=day.isoformat()).error("settlement_day_refused", error=str(exc))
    return pulled


def reopen_day(session, gateway: str, day: date, *, now) -> None:
    """A settlement was announced for ``day`` (``settlement.processed``): read the day again from its start."""
    cursor = _cursor(session, gateway, day, now=now, lock=True)
    cursor.complete, cursor.next_skip, cursor.updated_at = False, 0, now
