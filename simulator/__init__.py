"""A local stand-in for Razorpay and PayGlocal, speaking their wire formats as their documents describe them.

An independent witness: it imports nothing of ours (``worker``, ``gateways``, ``db``, ``ops``) and nothing of
ours imports it at run time, so a wire-format mistake in an adapter shows up as a failing test instead of being
copied into the fake (``tests/unit/test_import_boundaries.py``). See ``simulator/README.md``.

- :class:`SimulatorConfig`: keys, secrets, webhook URL and the fault / delivery / clock knobs.
- :class:`Simulator`: the in-memory world; customer actions (``pay``, ``late_authorize``, ``upi_retry``,
  ``refund``, ``dashboard_refund``, ``open_dispute``, ``move_dispute``; ``pay_payglocal``,
  ``late_authorize_payglocal``, ``refund_payglocal``), ``refund_behaviour``, ``refunds_of``, settlements (``settle``,
  ``set_settlement_faults``, ``payglocal_settlement_report``), ``set_knobs``, ``advance_clock``, ``state``, ``reset``,
  ``wait_for_webhooks``, ``delivery_log``; ``.payglocal.adapter_kwargs()``.
- :func:`create_app`: the FastAPI app (Razorpay ``/v1``, PayGlocal ``/gl/v1/payments``, ``/_sim/`` control).
- :class:`SimulatorServer`: that app under uvicorn in a background thread.
- :func:`main`: run it standalone in the foreground (``python -m simulator``).
"""

from __future__ import annotations

from simulator.config import SimulatorConfig
from simulator.core import Simulator
from simulator.errors import SimulatorError
from simulator.outcomes import OUTCOMES
from simulator.payglocal.codec import PayGlocalApiError
from simulator.razorpay.codec import RazorpayApiError
from simulator.server import SimulatorServer, create_app, main
from simulator.webhooks import WebhookEvent

__all__ = [
    "OUTCOMES",
    "PayGlocalApiError",
    "RazorpayApiError",
    "Simulator",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorServer",
    "WebhookEvent",
    "create_app",
    "main",
]
