"""Receiving gateway-recon's order events in Python: verify with Standard Webhooks' own library, then dedupe.

    pip install standardwebhooks==1.1.0
    RECON_EVENT_SECRET=whsec_... python verify_order_event.py < body.json   # headers in WEBHOOK_* variables
"""

from __future__ import annotations

import os
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verify(body: bytes, headers: dict[str, str], secret: str) -> dict:
    """The event, once its signature and timestamp (within 5 minutes) are good; raises otherwise. Verify the
    raw bytes as received: parsing and re-serialising first would change them."""
    return Webhook(secret).verify(body, headers)


def main() -> int:
    headers = {name: os.environ[f"WEBHOOK_{name.split('-')[1].upper()}"]
               for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    try:
        event = verify(sys.stdin.buffer.read(), headers, os.environ["RECON_EVENT_SECRET"])
    except WebhookVerificationError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    # At least once: keep headers["webhook-id"] (= event["data"]["event_id"]) and skip one seen before; per order,
    # event["data"]["sequence"] tells the order the changes happened in.
    print(event["type"], event["data"]["order"]["id"], event["data"]["sequence"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
