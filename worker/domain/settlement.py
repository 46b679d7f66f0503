"""Settlement reconciliation's buckets: what a settled transaction, matched against what we hold, tells finance.

Every settlement row lands in exactly one bucket; matching (:mod:`worker.services.settlement_match`) decides
it in SQL, set-wise, by these rules, in this order:

payment rows (money in)
  1. ``unmatched``: neither the payment nor its order is ours;
  2. ``amount_mismatch``: the payment is ours but the amount or the currency differs from what it captured;
  3. ``settled_credited``: the payment was credited here (its ledger grant: credits, a Pro term, a recorded
     Custom payment). The good case; fee and tax are kept per row;
  4. ``settled_refunded``: not credited, and refunded in full here (a duplicate payment sent back);
  5. ``settled_not_credited``: the money arrived and the customer got nothing: the worst bucket. The order
     (found by the payment, or by the gateway order id when we never saw the payment) is rechecked once;

refund rows and adjustments naming a dispute (money out)
  6. ``deduction_reversed``: the refund was processed here for the same amount, or the dispute's credits are
     held (lost) and the deduction is at most the dispute's amount (else either is ``amount_mismatch``);
  7. ``deduction_not_reversed``: the gateway took money back that we did not take back here (a refund or a
     dispute we hold as not done, or never saw, on a payment of ours);
  8. ``unmatched``: a refund or deduction of a payment not ours; any adjustment without a dispute, transfers.

``credited_not_settled`` has no row: it is a ledger grant whose payment no settlement row names once the
gateway's expected delay plus the slack (settings) have passed. Those are counted by query.
"""

from __future__ import annotations

from enum import StrEnum


class Bucket(StrEnum):
    SETTLED_CREDITED = "settled_credited"
    SETTLED_REFUNDED = "settled_refunded"
    SETTLED_NOT_CREDITED = "settled_not_credited"
    CREDITED_NOT_SETTLED = "credited_not_settled"
    AMOUNT_MISMATCH = "amount_mismatch"
    DEDUCTION_REVERSED = "deduction_reversed"
    DEDUCTION_NOT_REVERSED = "deduction_not_reversed"
    UNMATCHED = "unmatched"


#: Buckets that are as they should be; every other one needs a person (finance or support).
GOOD = frozenset({Bucket.SETTLED_CREDITED, Bucket.SETTLED_REFUNDED, Bucket.DEDUCTION_REVERSED})
#: Buckets a later event can still move a row out of (a recheck credits it, a refund is processed): matching
#: looks at these rows again every run; a row in a good bucket stays.
REOPENED = frozenset(set(Bucket) - GOOD - {Bucket.CREDITED_NOT_SETTLED})

MONEY_IN = frozenset({"payment"})
MONEY_OUT = frozenset({"refund", "adjustment", "transfer", "other"})
