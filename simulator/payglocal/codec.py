"""PayGlocal's wire formats, written from docs/gateways/payglocal.md and after-capture.md (not from our adapter).

- Amounts (payglocal.md §5): ``paymentData.totalAmount`` is a decimal string in *major* units (``"10.00"``,
  ``"89"``); JSON numbers are accepted too (the Magento plugin sends them). Status answers carry ``Amount``
  as a string, sometimes without decimals (``"10"``). The number of decimals is the currency's ISO 4217
  minor unit, from the simulator's own table below.
- Timestamps (payglocal.md §3): ``DD/MM/YYYY HH:MM:SS``.
- The envelope (payglocal.md §3, §5): ``gid, status, message, timestamp, reasonCode, data, errors``;
  ``errors`` is null on success; on failure the plugins read ``errors.displayMessage`` and
  ``errors.detailedMessage``.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

#: ISO 4217 currencies whose minor unit is not 1/100 (the standard's "minor unit" column). Every other
#: currency has 2 decimals.
ISO_4217_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
_PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def minor_unit(currency: str) -> int:
    """Decimals of ``currency``'s minor unit (ISO 4217)."""
    return ISO_4217_EXPONENTS.get(currency.upper(), 2)


def major_to_minor(value: Any, currency: str) -> int:
    """A major-unit amount (``"10.50"``, ``"10"``, ``10.5``) as integer minor units; ``ValueError`` when it is
    not a plain non-negative decimal or has more decimals than ``currency`` has (``"10.5"`` JPY)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a decimal amount")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if not _PLAIN_DECIMAL.match(text):
        raise ValueError(f"{value!r} is not a plain non-negative decimal")
    try:
        scaled = Decimal(text).scaleb(minor_unit(currency))
    except InvalidOperation:  # pragma: no cover - the pattern excludes it
        raise ValueError(f"{value!r} is not a decimal") from None
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} has ({minor_unit(currency)})")
    return int(scaled)


def minor_to_major(amount_minor: int, currency: str) -> str:
    """Integer minor units as PayGlocal's decimal string: ``50000 INR -> "500.00"``, ``500 KRW -> "500"``."""
    places = minor_unit(currency)
    if places == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**places)
    return f"{whole}.{fraction:0{places}d}"


def timestamp(epoch_s: float | None = None) -> str:
    """PayGlocal's ``DD/MM/YYYY HH:MM:SS`` (local time), now or at ``epoch_s``."""
    return time.strftime("%d/%m/%Y %H:%M:%S", time.localtime(epoch_s))


def now_ms() -> int:
    """The real clock in epoch milliseconds (token ``iat`` values: payglocal.md §0.4)."""
    return time.time_ns() // 1_000_000


class PayGlocalApiError(Exception):
    """An API error answered with PayGlocal's envelope (``errors`` filled, ``data`` null)."""

    def __init__(
        self, status: int, message: str, *, reason_code: str = "GL-400-001", status_text: str = "REQUEST_ERROR"
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason_code = reason_code
        self.status_text = status_text

    def body(self) -> dict[str, Any]:
        """PayGlocal's error envelope (payglocal.md §5: ``errors.displayMessage`` / ``detailedMessage``)."""
        return {
            "gid": None, "status": self.status_text, "message": self.message, "timestamp": timestamp(),
            "reasonCode": self.reason_code, "data": None,
            "errors": {"displayMessage": self.message, "detailedMessage": self.message, "code": self.reason_code},
        }
