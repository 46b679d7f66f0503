"""What a customer can do at checkout, on either gateway (``Simulator.pay``).

- ``success``: pays; captured, or authorised only on a manual-capture order / auth-only transaction.
- ``authorize_only``: the bank authorises, nothing captures it.
- ``decline``, ``gateway_error``, ``timeout``: the attempt fails (bank decline, gateway error, bank timeout).
- ``close_window``: the shopper closes the checkout before submitting anything: no payment exists and no
  event is sent (razorpay.md §7, webhooks/faqs #11: "A closed window does not always produce an immediate
  event"; payglocal.md §3: ``ABANDONED``).
- ``cancel``: the shopper closes the checkout after starting to pay. Razorpay: a failed payment with
  ``error_reason: payment_cancelled``, ``error_source: customer`` (razorpay.md §3.3); PayGlocal:
  ``CUSTOMER_CANCELLED`` (payglocal.md §3).
- ``no_response``: the bank never answers. Razorpay: the payment stays ``created`` and turns ``failed`` after
  10 minutes of simulated time (razorpay.md §3.4, late authorisation); PayGlocal: ``INPROGRESS``, no callback.
- ``cod``: Razorpay cash on delivery: a ``pending`` payment and ``payment.pending`` (razorpay.md §5.1, "the
  newer docs site also lists payment.pending (COD on Standard Checkout)"). PayGlocal offers no COD.
"""

from __future__ import annotations

from typing import Literal, get_args

Outcome = Literal["success", "authorize_only", "decline", "gateway_error", "timeout", "close_window", "cancel",
                  "no_response", "cod"]
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
