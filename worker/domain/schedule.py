"""When an order is next due for a gateway check. Pure.

Open orders are checked on a back-off schedule (30 s, 1 min, 2 min, 5 min, 15 min, then hourly by
default), never later than the moment the payment window closes, so abandonment happens on time.
Failed and abandoned orders are still watched, rarely, until the gateway's late-payment horizon;
after that only a webhook can finalise them, and no order is polled any more. Paid, needs-review
and closed orders are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.domain.order_state import OrderState

#: Default back-off between checks of an open order; the last step repeats.
DEFAULT_BACKOFF = (30, 60, 120, 300, 900, 3600)


@dataclass(frozen=True, slots=True)
class Schedule:
    backoff: tuple[timedelta, ...] = tuple(timedelta(seconds=s) for s in DEFAULT_BACKOFF)
    closed_every: timedelta = timedelta(hours=6)  #: checks of failed/abandoned orders until the horizon

    @classmethod
    def from_seconds(cls, backoff: list[int] | tuple[int, ...], closed_every: int) -> Schedule:
        if not backoff or any(step <= 0 for step in backoff):
            raise ValueError("the check back-off needs at least one positive step")
        return cls(tuple(timedelta(seconds=s) for s in backoff), timedelta(seconds=closed_every))


def next_check_at(*, state: OrderState, checks_done: int, now: datetime, window_closes_at: datetime,
                  horizon_at: datetime, schedule: Schedule) -> datetime | None:
    """The next check for an order in ``state`` after ``checks_done`` checks since its last change."""
    if state in (OrderState.PAID, OrderState.NEEDS_REVIEW, OrderState.CLOSED) or now >= horizon_at:
        return None  # past the horizon no order is polled, whatever its state: only a webhook can move it
    if state in (OrderState.FAILED, OrderState.ABANDONED):
        return min(now + schedule.closed_every, horizon_at)
    step = schedule.backoff[min(checks_done, len(schedule.backoff) - 1)]
    due = now + step
    if now < window_closes_at:
        due = min(due, window_closes_at)
    return min(due, horizon_at)
