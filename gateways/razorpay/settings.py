"""Razorpay's settings: what :class:`gateways.razorpay.RazorpayGateway` needs, and the one place its
defaults are stated (``worker.settings.Settings`` refers to them). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateways.settings import SettingsMissing, read_flat

#: Razorpay's API root; paths carry the version (``/v1/...``).
DEFAULT_BASE_URL = "https://api.razorpay.com"


@dataclass(frozen=True, slots=True)
class RazorpaySettings:
    """The ``razorpay_*`` settings, read from a flat settings object by :meth:`from_flat`."""

    #: The flat settings' field prefix (environment: ``RECON_RAZORPAY_...``).
    PREFIX = "razorpay_"

    key_id: str
    key_secret: str = field(repr=False)
    #: The Dashboard webhook secret, then the previous one while a rotation is under way.
    webhook_secrets: tuple[str, ...] = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    #: Orders are created for manual capture (we capture each authorised payment ourselves).
    manual_capture: bool = False

    @classmethod
    def from_flat(cls, settings: object) -> RazorpaySettings:
        """Read ``razorpay_key_id``, ``razorpay_key_secret``, ``razorpay_webhook_secret`` (and ``_previous``),
        ``razorpay_base_url`` and ``razorpay_manual_capture`` from ``settings`` (secrets may be pydantic
        ``SecretStr``).

        Raises:
            SettingsMissing: the key pair or the webhook secret is missing.
        """
        values = read_flat(settings, cls.PREFIX, "key_id", "key_secret", "webhook_secret",
                           "webhook_secret_previous", "base_url", "manual_capture")
        missing = [cls.PREFIX + name for name in ("key_id", "key_secret", "webhook_secret") if not values[name]]
        if missing:
            raise SettingsMissing("Razorpay", missing)
        secrets = tuple(s for s in (values["webhook_secret"], values["webhook_secret_previous"]) if s)
        return cls(key_id=values["key_id"], key_secret=values["key_secret"], webhook_secrets=secrets,
                   base_url=values["base_url"] or DEFAULT_BASE_URL, manual_capture=bool(values["manual_capture"]))
