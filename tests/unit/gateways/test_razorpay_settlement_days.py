"""The recon days a Razorpay settlement is pulled from: the endpoint's ``day`` is in an undocumented zone, likely
IST (after-capture.md §4.2), which is a calendar day ahead of UTC from 18:30 to midnight UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gateways.razorpay import RazorpayGateway


@pytest.mark.parametrize(("moment", "days"), [
    (datetime(2026, 12, 4, 10, 0, tzinfo=UTC), (date(2026, 12, 4),)),
    (datetime(2026, 12, 4, 18, 29, 59, tzinfo=UTC), (date(2026, 12, 4),)),
    (datetime(2026, 12, 4, 18, 30, tzinfo=UTC), (date(2026, 12, 4), date(2026, 12, 5))),
    (datetime(2026, 12, 4, 23, 59, tzinfo=UTC), (date(2026, 12, 4), date(2026, 12, 5))),
    (datetime(2026, 12, 31, 20, 0, tzinfo=UTC), (date(2026, 12, 31), date(2027, 1, 1))),
    (datetime(2026, 12, 5, 0, 0, tzinfo=UTC), (date(2026, 12, 5),)),
])
def test_a_settlement_is_pulled_from_its_ist_day_and_its_utc_day(moment, days):
    gateway = RazorpayGateway(key_id="rzp_test_key", key_secret="secret", webhook_secrets=["whsec"])
    assert gateway.settlement_days(moment) == days
