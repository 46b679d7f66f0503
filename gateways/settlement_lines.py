"""What a settlement line must be before it is stored, whoever reported it (Razorpay's recon API, an imported
PayGlocal report): ids that fit their columns, an ISO currency, amounts a bigint holds, a plausible time."""

from __future__ import annotations

from gateways.port import SettlementLine

MAX_ID = 80  #: the settlement columns' width for ids
MAX_MINOR = 2**63 - 1
#: settled_at (Unix seconds) between 2000 and 2100: a millisecond timestamp or a zero is a broken row
EARLIEST_S, LATEST_S = 946_684_800, 4_102_444_800


def problem(line: SettlementLine) -> str | None:
    """Why ``line`` cannot be stored as it is, or None."""
    if not line.entity_id:
        return "no entity id"
    for name in ("entity_id", "settlement_id", "utr", "payment_id", "gateway_order_id", "dispute_id"):
        value = getattr(line, name)
        if value is not None and (len(value) > MAX_ID or not value.isprintable()):
            return f"{name} is longer than {MAX_ID} characters or not printable"
    if len(line.currency) != 3 or not (line.currency.isascii() and line.currency.isalpha()):
        return f"currency {line.currency[:8]!r} is not an ISO 4217 code"
    for name in ("amount_minor", "fee_minor", "tax_minor", "credit_minor", "debit_minor"):
        if not 0 <= getattr(line, name) <= MAX_MINOR:
            return f"{name} {getattr(line, name)} is negative or too large"
    if line.settled_at is not None and not EARLIEST_S <= line.settled_at < LATEST_S:
        return f"settled_at {line.settled_at} is not a time between 2000 and 2100 in seconds"
    return None
