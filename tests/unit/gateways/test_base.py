"""The plumbing both adapters share (``gateways/base.py``): one pooled client, closed once, typed errors."""

from __future__ import annotations

import httpx
import pytest

from gateways.base import GatewayClient, path_segment
from gateways.errors import GatewayTransient
from gateways.payglocal.client import PayGlocalClient
from gateways.razorpay.client import RazorpayClient
from tests.unit.gateways.payglocal_fakes import make_gateway as make_payglocal
from tests.unit.gateways.razorpay_fakes import make_gateway as make_razorpay


class EchoClient(GatewayClient):
    gateway = "echo"

    def _answer(self, response: httpx.Response, what: str) -> dict:
        if response.status_code >= 500:
            raise GatewayTransient(f"{what}: server error", status=response.status_code)
        return {"what": what, **response.json()}


def test_both_adapter_clients_share_the_base() -> None:
    assert issubclass(RazorpayClient, GatewayClient) and issubclass(PayGlocalClient, GatewayClient)
    assert (RazorpayClient.gateway, PayGlocalClient.gateway) == ("razorpay", "payglocal")


def test_requests_name_the_gateway_and_retries_are_bounded() -> None:
    """``_send`` names ``gateway METHOD path`` in errors; ``_retried`` retries transient ones, then re-raises."""
    answers = iter([httpx.Response(503), httpx.Response(200, json={"ok": True})])
    sleeps: list[float] = []
    with EchoClient(base_url="https://echo.test", transport=httpx.MockTransport(lambda r: next(answers)),
                    sleep=sleeps.append) as client:
        assert client._retried(lambda: client._send("GET", "/x")) == {"what": "echo GET /x", "ok": True}
    assert len(sleeps) == 1
    failing = EchoClient(base_url="https://echo.test", transport=httpx.MockTransport(lambda r: httpx.Response(503)),
                         retry_attempts=2, sleep=lambda s: None)
    with pytest.raises(GatewayTransient, match="echo GET /y: server error"):
        failing._retried(lambda: failing._send("GET", "/y"))


def test_event_hooks_and_the_transport_are_passed_to_httpx() -> None:
    seen: list[str] = []
    client = EchoClient(base_url="https://echo.test",
                        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
                        event_hooks={"request": [lambda request: seen.append(request.url.path)]})
    client._send("POST", "/z", json={})
    assert seen == ["/z"]


@pytest.mark.parametrize("make", [make_razorpay, make_payglocal], ids=["razorpay", "payglocal"])
def test_adapters_close_their_pool_and_work_as_context_managers(make) -> None:
    gateway, _fake = make(lambda request: httpx.Response(500))
    with gateway as entered:
        assert entered is gateway
    assert gateway._client._http.is_closed


def test_ids_become_one_quoted_path_segment() -> None:
    assert path_segment("../x y", gateway="echo") == "..%2Fx%20y"
    with pytest.raises(ValueError, match="an empty echo id cannot be used"):
        path_segment("", gateway="echo")
