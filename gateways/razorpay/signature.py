"""Razorpay's HMAC-SHA256 signatures, computed over raw bytes and compared in constant time.

- Checkout callback: ``hex(HMAC_SHA256(key_secret, order_id + "|" + payment_id))``, where
  ``order_id`` is the one *we* stored, never the one the browser echoes back.
- Webhook: ``hex(HMAC_SHA256(webhook_secret, raw_body))`` in ``X-Razorpay-Signature``.

Several secrets may be given so that a rotation accepts the old and the new one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def sign(secret: str, message: bytes) -> str:
    """The lower-case hex HMAC-SHA256 of ``message`` under ``secret``."""
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def checkout_message(gateway_order_id: str, gateway_payment_id: str) -> bytes:
    return f"{gateway_order_id}|{gateway_payment_id}".encode()


def matches_any(secrets: Iterable[str], message: bytes, signature: str | None) -> bool:
    """True when ``signature`` is the HMAC of ``message`` under one of ``secrets``.

    Every secret is tried (no early exit), and each comparison is constant-time.
    """
    if not signature:
        return False
    candidate = signature.strip().lower().encode("ascii", "replace")
    found = False
    for secret in secrets:
        if secret and hmac.compare_digest(sign(secret, message).encode("ascii"), candidate):
            found = True
    return found
