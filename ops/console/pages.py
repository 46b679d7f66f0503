"""The console's pages (GET): sign-in, search, one order's story, and the lists support works from."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ops.api_models import ID_PATTERN, OrderId
from ops.console import render
from ops.console.people import Person
from ops.console.session import allowed
from ops.context import DepsParam
from worker.domain.order_state import OrderState
from worker.domain.settlement import GOOD
from worker.queues import QUEUES
from worker.services import deliveries, settlement_report, views, worklists
from worker.services.dead_letters import list_dead_letters

router = APIRouter()
Viewer = Annotated[Person, allowed("read")]
STATES = [state.value for state in OrderState]


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str | None, Query(max_length=400)] = None) -> HTMLResponse:
    return render.page(request, "login.html", None, next=render.safe_next(request, next))


@router.get("/", response_class=HTMLResponse)
def home(request: Request, deps: DepsParam, person: Viewer) -> HTMLResponse:
    counts = {"review": len(worklists.needs_review(deps=deps)), "open": len(worklists.open_too_long(deps=deps)),
              "disputes": len(worklists.disputes_due(deps=deps)),
              "deliveries": len(deliveries.list_deliveries(deps=deps, state="dead"))}
    return render.page(request, "home.html", person, counts=counts, states=STATES)


@router.get("/orders", response_class=HTMLResponse)
def search(request: Request, deps: DepsParam, person: Viewer,
           q: Annotated[str | None, Query(max_length=80)] = None,
           state: Annotated[str | None, Query(max_length=16)] = None,
           older_than_h: Annotated[int | None, Query(ge=0, le=24 * 400)] = None) -> HTMLResponse:
    """Orders by our id, the gateway's order or payment id, or organisation; by state; by age."""
    q = (q or "").strip() or None
    state = state if state in STATES else None
    rows = worklists.find_orders(deps=deps, text=q, state=state,
                                 older_than=timedelta(hours=older_than_h) if older_than_h else None)
    if q and len(rows) == 1 and rows[0].order_id == q:
        return render.back_to(request, f"/orders/{q}")  # an exact order id: its story
    title = "Orders" + (f" matching “{q}”" if q else "") + (f" in {state}" if state else "") + (
        f" older than {older_than_h} h" if older_than_h else "")
    return render.page(request, "orders.html", person, title=title, rows=rows, q=q or "", state=state or "",
                       older_than_h=older_than_h or "", states=STATES)


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_story(request: Request, deps: DepsParam, person: Viewer, order_id: OrderId) -> HTMLResponse:
    detail = views.order_detail(order_id, deps=deps)
    detail["support_actions"] = views.support_actions(order_id, deps=deps)
    return render.page(request, "order.html", person, order=detail, timeline=views.timeline_rows(detail),
                       deliveries=deliveries.list_deliveries(deps=deps, order_id=order_id),
                       balance=views.ledger_total(detail["organisation_id"], deps=deps))


@router.get("/lists/review", response_class=HTMLResponse)
def review_list(request: Request, deps: DepsParam, person: Viewer) -> HTMLResponse:
    return render.page(request, "orders.html", person, title="Needs review", rows=worklists.needs_review(deps=deps),
                       states=STATES, q="", state="", older_than_h="")


@router.get("/lists/open", response_class=HTMLResponse)
def open_list(request: Request, deps: DepsParam, person: Viewer) -> HTMLResponse:
    hours = int(worklists.OPEN_TOO_LONG.total_seconds() // 3600)
    return render.page(request, "orders.html", person, title=f"Open for more than {hours} h",
                       rows=worklists.open_too_long(deps=deps), states=STATES, q="", state="", older_than_h="")


@router.get("/lists/disputes", response_class=HTMLResponse)
def disputes_list(request: Request, deps: DepsParam, person: Viewer) -> HTMLResponse:
    return render.page(request, "disputes.html", person, rows=worklists.disputes_due(deps=deps),
                       days=worklists.DISPUTE_DUE_WITHIN.days, now=deps.clock.now())


@router.get("/lists/deliveries", response_class=HTMLResponse)
def failed_deliveries(request: Request, deps: DepsParam, person: Viewer) -> HTMLResponse:
    return render.page(request, "deliveries.html", person, rows=deliveries.list_deliveries(deps=deps, state="dead"))


@router.get("/lists/dead-letters", response_class=HTMLResponse)
async def dead_letters(request: Request, deps: DepsParam, person: Viewer) -> HTMLResponse:
    try:
        letters = await run_in_threadpool(list_dead_letters, deps=deps, queues=QUEUES)
        missing = None
    except RuntimeError as exc:  # the in-process broker keeps no dead letters
        letters, missing = [], str(exc)
    return render.page(request, "dead_letters.html", person, rows=letters, missing=missing)


EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)  #: a report's days stay where dates can be computed


def _window(deps, start: date | None, end: date | None) -> tuple[date, date]:
    today = deps.clock.now().date()
    last = end if end and EARLIEST <= end <= LATEST else today
    first = start if start and EARLIEST <= start <= last and (last - start).days <= 400 else last - timedelta(days=6)
    return first, last


@router.get("/settlements", response_class=HTMLResponse)
def settlements(request: Request, deps: DepsParam, person: Viewer,
                start: Annotated[date | None, Query(alias="from")] = None,
                end: Annotated[date | None, Query(alias="to")] = None,
                gateway: Annotated[str | None, Query(max_length=16, pattern=ID_PATTERN)] = None) -> HTMLResponse:
    """The settlement report: totals per day and currency, then each bucket with its rows."""
    first, last = _window(deps, start, end)
    found = settlement_report.report(deps=deps, start=first, end=last, gateway=gateway or None, rows_per_bucket=200)
    return render.page(request, "settlements.html", person, report=found, start=first, end=last,
                       gateway=gateway or "", good=GOOD, gateways=sorted(deps.gateways))


@router.get("/settlements.csv")
def settlements_csv(request: Request, deps: DepsParam, person: Viewer,
                    start: Annotated[date | None, Query(alias="from")] = None,
                    end: Annotated[date | None, Query(alias="to")] = None,
                    gateway: Annotated[str | None, Query(max_length=16, pattern=ID_PATTERN)] = None) -> Response:
    first, last = _window(deps, start, end)
    found = settlement_report.report(deps=deps, start=first, end=last, gateway=gateway or None, rows_per_bucket=None)
    return Response(settlement_report.as_csv(found), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="settlements-{first}-{last}.csv"'})
