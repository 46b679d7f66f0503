"""Which refunds fail, shared by both gateways (``POST /_sim/refunds/behaviour``).

A Razorpay refund that fails ends ``failed`` (``refund.failed``, after-capture.md §2.2); a PayGlocal one is
answered ``REQUEST_ERROR`` (§5.4). How long a Razorpay refund stays ``pending`` is the
``refund_processed_after_s`` knob (:mod:`simulator.config`); these are one-shot choices, not knobs, and
:meth:`Simulator.reset <simulator.core.Simulator.reset>` forgets them.
"""

from __future__ import annotations

import threading
from typing import Any


class RefundFailures:
    """The next ``fail_next`` refunds fail, and every refund of a payment in ``fail_payment_ids``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """No refund fails."""
        with self._lock:
            self._fail_next = 0
            self._payment_ids: set[str] = set()

    def set(self, *, fail_next: int | None = None, fail_payment_ids: list[str] | None = None) -> None:
        """Replace the count of refunds to fail and/or the payments (ids or gids) whose refunds fail."""
        if fail_next is not None and (isinstance(fail_next, bool) or not isinstance(fail_next, int) or fail_next < 0):
            raise ValueError("fail_next must be a non-negative integer")
        with self._lock:
            if fail_next is not None:
                self._fail_next = fail_next
            if fail_payment_ids is not None:
                self._payment_ids = set(fail_payment_ids)

    def take(self, payment_id: str) -> bool:
        """Whether a refund of ``payment_id`` made now fails (one of ``fail_next`` is used up)."""
        with self._lock:
            if payment_id in self._payment_ids:
                return True
            if self._fail_next > 0:
                self._fail_next -= 1
                return True
            return False

    def as_dict(self) -> dict[str, Any]:
        """``{"fail_next": n, "fail_payment_ids": [...]}``."""
        with self._lock:
            return {"fail_next": self._fail_next, "fail_payment_ids": sorted(self._payment_ids)}
