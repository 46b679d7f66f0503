"""PayGlocal's settings: what :class:`gateways.payglocal.PayGlocalGateway` needs, and the one place its
defaults are stated (``worker.settings.Settings`` refers to them). Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateways.settings import SettingsMissing, read_flat

#: PayGlocal's sandbox (UAT). Production is ``https://api.payglocal.in`` or ``https://api.prod.payglocal.in``
#: depending on the source (docs §0.9): configure it and confirm with PayGlocal.
SANDBOX_BASE_URL = "https://api.uat.payglocal.in"

#: How old (by its ``iat``) a browser callback token may be when it arrives: 15 minutes.
DEFAULT_CALLBACK_MAX_AGE_S = 900

#: The settings an enabled PayGlocal cannot work without (the merchant id enables it).
REQUIRED = ("private_key_pem", "private_kid", "public_kid", "callback_url", "public_keys")


@dataclass(frozen=True, slots=True)
class PayGlocalSettings:
    """The ``payglocal_*`` settings, read from a flat settings object by :meth:`from_flat`."""

    #: The flat settings' field prefix (environment: ``RECON_PAYGLOCAL_...``).
    PREFIX = "payglocal_"

    merchant_id: str
    private_key_pem: str = field(repr=False)
    private_kid: str
    #: PayGlocal's public keys (PEM) by kid, several during a rotation.
    public_keys: Mapping[str, str]
    #: The kid of the PayGlocal key request bodies are encrypted to.
    public_kid: str
    #: Our public URL that the shopper's browser posts the callback form to.
    callback_url: str
    base_url: str = SANDBOX_BASE_URL
    callback_max_age_s: int = DEFAULT_CALLBACK_MAX_AGE_S
    #: Transactions are initiated with ``captureTxn: false`` (we capture each authorised one ourselves).
    manual_capture: bool = False

    @staticmethod
    def enabled(settings: object) -> bool:
        """PayGlocal is configured when a merchant id is set."""
        return bool(getattr(settings, PayGlocalSettings.PREFIX + "merchant_id", None))

    @classmethod
    def from_flat(cls, settings: object) -> PayGlocalSettings:
        """Read the ``payglocal_*`` fields of ``settings`` (secrets may be pydantic ``SecretStr``).

        Raises:
            SettingsMissing: the merchant id is set but a key, kid or the callback URL is not.
        """
        values = read_flat(settings, cls.PREFIX, "merchant_id", *REQUIRED, "base_url", "callback_max_age_s",
                           "manual_capture")
        if not values["merchant_id"]:
            raise SettingsMissing("PayGlocal", [cls.PREFIX + "merchant_id"], why="requested")
        missing = [cls.PREFIX + name for name in REQUIRED if not values[name]]
        if missing:
            raise SettingsMissing("PayGlocal", missing, why="enabled (merchant id set)")
        max_age = values["callback_max_age_s"]
        return cls(merchant_id=values["merchant_id"], private_key_pem=values["private_key_pem"],
                   private_kid=values["private_kid"], public_keys=dict(values["public_keys"]),
                   public_kid=values["public_kid"], callback_url=values["callback_url"],
                   base_url=values["base_url"] or SANDBOX_BASE_URL,
                   callback_max_age_s=DEFAULT_CALLBACK_MAX_AGE_S if max_age is None else int(max_age),
                   manual_capture=bool(values["manual_capture"]))
