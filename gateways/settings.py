"""Reading an adapter's own settings out of the service's flat settings object. Standard library only.

The service keeps one flat ``Settings`` (``RECON_RAZORPAY_KEY_ID`` → ``razorpay_key_id``); each adapter
reads the fields under its prefix into its own settings model (``gateways/<name>/settings.py``), so the
gateways package never imports the service that configures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SettingsMissing(ValueError):
    """An enabled gateway lacks settings it cannot work without; the message names every one of them."""

    def __init__(self, gateway: str, missing: Sequence[str], *, why: str = ""):
        self.gateway = gateway
        self.missing = tuple(missing)
        super().__init__(f"{gateway} is {why or 'enabled'} but these settings are missing: {', '.join(self.missing)}")


def read_flat(settings: object, prefix: str, *names: str) -> dict[str, Any]:
    """``{name: value}`` of the fields ``prefix + name`` of ``settings``: an absent field reads as ``None``
    and a secret (anything with ``get_secret_value()``, e.g. pydantic's ``SecretStr``) as its plain value."""
    values: dict[str, Any] = {}
    for name in names:
        value = getattr(settings, prefix + name, None)
        reveal = getattr(value, "get_secret_value", None)
        values[name] = reveal() if callable(reveal) else value
    return values
