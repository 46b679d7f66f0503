"""A local gateway simulator speaking Razorpay's and PayGlocal's wire formats.

- :class:`SimulatorConfig`: keys, secrets, webhook URL and the fault / delivery knobs.
- :class:`Simulator`: the in-memory world; customer actions (``pay``, ``late_authorize``,
  ``refund``; ``pay_payglocal``, ``late_authorize_payglocal``, ``refund_payglocal``), ``set_knobs``,
  ``state``, ``reset``, ``wait_for_webhooks``, ``delivery_log``; ``.payglocal.adapter_kwargs()``.
- :func:`create_app`: the FastAPI app (Razorpay ``/v1``, PayGlocal ``/gl/v1/payments``, ``/_sim/`` control).
- :class:`SimulatorServer`: that app under uvicorn in a background thread.
- :func:`main`: run it standalone in the foreground.

Nothing here imports the database or the worker.
"""

from __future__ import annotations

from gateways.simulator.app import create_app
from gateways.simulator.config import SimulatorConfig
from gateways.simulator.core import Simulator
from gateways.simulator.payglocal_auth import PayGlocalApiError
from gateways.simulator.razorpay_rules import OUTCOMES, RazorpayApiError, SimulatorError
from gateways.simulator.server import SimulatorServer, main
from gateways.simulator.webhooks import WebhookEvent

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
