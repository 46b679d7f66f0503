"""The registry and the facts each adapter declares: one place per gateway fact (issue "Structure" §4)."""

from __future__ import annotations

import ast
import pathlib
import types
from typing import Any, get_type_hints

import httpx
import pytest
from pydantic import SecretStr

from gateways import registry
from gateways.payglocal import PayGlocalGateway, PayGlocalSettings
from gateways.port import GatewayFactory, GatewayFacts, PaymentGateway
from gateways.razorpay import RazorpayGateway, RazorpaySettings
from gateways.settings import SettingsMissing
from tests.unit.gateways.payglocal_fakes import CALLBACK_URL, MERCHANT_KID, MID, PAYGLOCAL_KID, keys

GATEWAYS = pathlib.Path(__file__).resolve().parents[3] / "gateways"
#: The facts the port declares (read-only properties of ``GatewayFacts``) and their types.
FACTS = {name: get_type_hints(member.fget)["return"] for name, member in vars(GatewayFacts).items()
         if isinstance(member, property)}
BUILDERS = ("enabled", "from_settings")


def flat(**overrides: Any) -> types.SimpleNamespace:
    """A flat settings object as the service has it (``<name>_*`` fields, secrets as ``SecretStr``)."""
    values: dict[str, Any] = {
        "razorpay_key_id": "rzp_test_registry", "razorpay_key_secret": SecretStr("ks"),
        "razorpay_webhook_secret": SecretStr("whsec"), "razorpay_webhook_secret_previous": None,
        "razorpay_base_url": "https://api.razorpay.com", "razorpay_manual_capture": False,
        "payglocal_merchant_id": MID, "payglocal_private_key_pem": SecretStr(keys()["merchant"].private_pem),
        "payglocal_private_kid": MERCHANT_KID, "payglocal_public_keys": {PAYGLOCAL_KID: keys()["payglocal"].public_pem},
        "payglocal_public_kid": PAYGLOCAL_KID, "payglocal_callback_url": CALLBACK_URL,
        "payglocal_base_url": "https://api.uat.payglocal.in", "payglocal_callback_max_age_s": 900,
    }
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.mark.parametrize("adapter", registry.ADAPTERS, ids=lambda a: a.name)
def test_every_registered_adapter_declares_every_fact_in_its_own_class(adapter: type) -> None:
    """Each fact of the port is a class attribute the adapter states itself (not inherited by accident)."""
    assert set(FACTS) == {"name", "label", "webhook_content_type", "id_prefixes", "default_rate_per_s",
                          "min_poll_interval_s", "reports_disputes"}
    for fact, kind in FACTS.items():
        assert fact in vars(adapter), f"{adapter.__name__} does not declare {fact}"
        value = getattr(adapter, fact)
        origin = getattr(kind, "__origin__", kind)
        assert isinstance(value, origin), f"{adapter.__name__}.{fact} = {value!r} is not a {kind}"
    for builder in BUILDERS:
        assert builder in vars(adapter) and callable(getattr(adapter, builder)), f"{adapter.__name__}.{builder}"
    # manual_capture_from is the shared base's, reading the prefix each adapter declares itself
    assert "settings_prefix" in vars(adapter) and adapter.settings_prefix == adapter.name + "_"
    assert adapter.manual_capture_from(flat(**{adapter.name + "_manual_capture": True})) is True


@pytest.mark.parametrize("adapter", registry.ADAPTERS, ids=lambda a: a.name)
def test_facts_are_well_formed(adapter: type) -> None:
    """A media type without parameters, id prefixes that end in ``_``, positive rate, a label to show."""
    assert adapter.name == adapter.name.lower() and adapter.name.isidentifier()
    assert adapter.label.strip() and adapter.label[0].isupper()
    assert "/" in adapter.webhook_content_type and ";" not in adapter.webhook_content_type
    assert adapter.webhook_content_type == adapter.webhook_content_type.lower()
    assert adapter.id_prefixes and all(prefix.endswith("_") and prefix[:-1].isalpha() for prefix in adapter.id_prefixes)
    assert adapter.default_rate_per_s > 0 and adapter.min_poll_interval_s >= 0


def test_the_facts_are_the_ones_the_service_used_to_keep_in_its_own_tables() -> None:
    """Labels ("Pay with X"), webhook media types, id prefixes, rates and poll intervals, as they were."""
    assert {a.name: a.label for a in registry.ADAPTERS} == {"razorpay": "Razorpay", "payglocal": "PayGlocal"}
    assert {a.name: a.webhook_content_type for a in registry.ADAPTERS} == {
        "razorpay": "application/json", "payglocal": "application/x-www-form-urlencoded"}
    assert sorted(p for a in registry.ADAPTERS for p in a.id_prefixes) == sorted(
        ["order_", "pay_", "rfnd_", "gl_", "plink_", "cust_"])
    assert {a.name: a.default_rate_per_s for a in registry.ADAPTERS} == {"razorpay": 50, "payglocal": 20}
    assert {a.name: a.min_poll_interval_s for a in registry.ADAPTERS} == {"razorpay": 0, "payglocal": 5}


def test_names_are_unique_and_looked_up_by_name() -> None:
    assert len(registry.BY_NAME) == len(registry.ADAPTERS)
    assert registry.adapter("payglocal") is PayGlocalGateway and registry.adapter("razorpay") is RazorpayGateway
    with pytest.raises(LookupError, match="no gateway adapter named 'stripe'"):
        registry.adapter("stripe")


def test_built_adapters_satisfy_the_port_and_its_facts() -> None:
    built = registry.build_configured(flat())
    for name, gateway in built.items():
        assert isinstance(gateway, PaymentGateway) and gateway.name == name
        for fact in FACTS:
            assert getattr(gateway, fact) == getattr(registry.adapter(name), fact)
    factory: GatewayFactory = RazorpayGateway  # the class is what the registry holds (checked by mypy)
    assert factory.name == "razorpay"


def test_the_registry_builds_exactly_the_configured_gateways() -> None:
    """Razorpay always; PayGlocal only when a merchant id is set."""
    assert list(registry.build_configured(flat())) == ["razorpay", "payglocal"]
    assert list(registry.build_configured(flat(payglocal_merchant_id=None))) == ["razorpay"]
    assert list(registry.build_configured(flat(payglocal_merchant_id=""))) == ["razorpay"]


def test_transport_and_event_hooks_reach_each_gateway_by_name() -> None:
    """One transport for all; ``event_hooks(name)`` gives each gateway its own hooks."""
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "pay_1", "entity": "payment", "amount": 100, "currency": "INR",
                                         "status": "captured", "order_id": "order_1"})

    def hooks(name: str) -> dict[str, list]:
        return {"request": [lambda request: seen.append((name, request.url.path))]}

    built = registry.build_configured(flat(payglocal_merchant_id=None), transport=httpx.MockTransport(answer),
                                      event_hooks=hooks)
    with built["razorpay"] as gateway:
        gateway.fetch_payment("pay_1")
    assert seen == [("razorpay", "/v1/payments/pay_1")]


def test_a_missing_payglocal_setting_names_every_missing_one() -> None:
    """Today's message from ``build_payglocal``, now stated once by the adapter's settings model."""
    settings = flat(payglocal_private_kid=None, payglocal_callback_url="", payglocal_public_keys={})
    with pytest.raises(ValueError) as caught:
        registry.build_configured(settings)
    assert str(caught.value) == ("PayGlocal is enabled (merchant id set) but these settings are missing: "
                                 "payglocal_private_kid, payglocal_callback_url, payglocal_public_keys")
    assert isinstance(caught.value, SettingsMissing) and caught.value.gateway == "PayGlocal"
    with pytest.raises(SettingsMissing, match="payglocal_merchant_id"):
        PayGlocalGateway.from_settings(flat(payglocal_merchant_id=None))


def test_a_missing_razorpay_secret_is_refused_by_name() -> None:
    with pytest.raises(SettingsMissing, match="razorpay_webhook_secret"):
        RazorpayGateway.from_settings(flat(razorpay_webhook_secret=None))


def test_settings_models_read_the_flat_fields_and_reveal_secrets() -> None:
    razorpay = RazorpaySettings.from_flat(flat(razorpay_webhook_secret_previous=SecretStr("old")))
    assert (razorpay.key_id, razorpay.key_secret, razorpay.webhook_secrets) == ("rzp_test_registry", "ks",
                                                                               ("whsec", "old"))
    assert "ks" not in repr(razorpay) and "whsec" not in repr(razorpay)
    payglocal = PayGlocalSettings.from_flat(flat(payglocal_callback_max_age_s=None, payglocal_base_url=None))
    assert payglocal.callback_max_age_s == 900 and payglocal.base_url == "https://api.uat.payglocal.in"
    assert "PRIVATE" not in repr(payglocal)
    gateway = PayGlocalGateway.from_settings(payglocal)  # the adapter's own model works as well as the flat one
    assert gateway.name == "payglocal"


def test_manual_capture_is_read_from_each_gateways_own_setting() -> None:
    assert RazorpayGateway.manual_capture_from(flat(razorpay_manual_capture=True)) is True
    assert RazorpayGateway.manual_capture_from(flat()) is False
    assert PayGlocalGateway.manual_capture_from(flat(payglocal_manual_capture=True)) is True
    assert PayGlocalGateway.manual_capture_from(flat(razorpay_manual_capture=True)) is False


def test_the_service_settings_keep_their_flat_fields_and_defaults_come_from_the_adapters() -> None:
    """``worker.settings.Settings`` states no gateway default of its own, and its fields feed the builders."""
    from gateways.payglocal.settings import DEFAULT_CALLBACK_MAX_AGE_S, SANDBOX_BASE_URL
    from gateways.razorpay.settings import DEFAULT_BASE_URL
    from worker.settings import Settings

    defaults = Settings.model_fields
    assert defaults["razorpay_base_url"].default == DEFAULT_BASE_URL == "https://api.razorpay.com"
    assert defaults["payglocal_base_url"].default == SANDBOX_BASE_URL == "https://api.uat.payglocal.in"
    assert defaults["payglocal_callback_max_age_s"].default == DEFAULT_CALLBACK_MAX_AGE_S == 900
    assert defaults["gateway_rate_per_s"].default == {"razorpay": 50, "payglocal": 20}
    assert defaults["min_poll_interval_s"].default == {"razorpay": 0, "payglocal": 5}
    settings = Settings(**{**vars(flat()), "razorpay_manual_capture": True})
    assert list(registry.build_configured(settings)) == ["razorpay", "payglocal"]
    # PayGlocal orders follow razorpay_manual_capture, as they always have (stated once, in Settings).
    assert RazorpayGateway.manual_capture_from(settings) and PayGlocalGateway.manual_capture_from(settings)


def test_the_gateways_package_imports_nothing_from_the_service() -> None:
    """Layering: worker depends on gateways, never the reverse (the simulator is moving out separately)."""
    offenders = []
    for path in GATEWAYS.rglob("*.py"):
        if "simulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in {"worker", "ops", "db"}]
    assert offenders == []
