"""The gateway-neutral HTTP helpers: timeouts always set, httpx errors translated, bounded GET retries."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from gateways.errors import GatewayNotFound, GatewayPermanent, GatewayRateLimited, GatewayTransient
from gateways.http import DEFAULT_TIMEOUT, build_client, parse_retry_after, retry_idempotent, translate_errors


class Flaky:
    """A call that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_build_client_always_sets_connect_and_read_timeouts() -> None:
    """The default has connect and read timeouts; None (wait forever) is refused."""
    client = build_client(base_url="https://gateway.test")
    assert client.timeout == DEFAULT_TIMEOUT
    assert client.timeout.connect == 5.0 and client.timeout.read == 15.0
    assert build_client(base_url="https://gateway.test", timeout=2.0).timeout.read == 2.0
    with pytest.raises(ValueError, match="timeout"):
        build_client(base_url="https://gateway.test", timeout=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect and read"):
        build_client(base_url="https://gateway.test", timeout=httpx.Timeout(5.0, read=None))


def test_build_client_uses_the_injected_transport_and_headers() -> None:
    """Requests go to the injected transport with the default headers."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Test"] == "yes"
        return httpx.Response(200, json={"path": request.url.path})

    client = build_client(
        base_url="https://gateway.test", transport=httpx.MockTransport(handler), headers={"X-Test": "yes"}
    )
    assert client.get("/v1/thing").json() == {"path": "/v1/thing"}


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ReadTimeout("slow"), GatewayTransient),
        (httpx.PoolTimeout("pool"), GatewayTransient),
        (httpx.ConnectError("refused"), GatewayTransient),
        (httpx.ReadError("reset"), GatewayTransient),
        (httpx.UnsupportedProtocol("ftp"), GatewayPermanent),
        (httpx.TooManyRedirects("loop"), GatewayPermanent),
    ],
)
def test_translate_errors_maps_httpx_exceptions(raised: Exception, expected: type[Exception]) -> None:
    """Each httpx failure becomes a gateway error that keeps the httpx one as its cause."""
    with pytest.raises(expected, match="example GET /x") as caught, translate_errors("example GET /x"):
        raise raised
    assert caught.value.__cause__ is raised


def test_translate_errors_leaves_other_exceptions_alone() -> None:
    """Only httpx errors are translated."""
    with pytest.raises(KeyError), translate_errors("example"):
        raise KeyError("x")


def test_retry_idempotent_retries_transient_errors_up_to_the_bound() -> None:
    """Three attempts in all; the last transient error is re-raised as is."""
    call = Flaky(*(GatewayTransient(f"down {n}") for n in range(5)))
    sleeps: list[float] = []
    with pytest.raises(GatewayTransient, match="down 2"):
        retry_idempotent(call, attempts=3, sleep=sleeps.append)
    assert call.calls == 3 and len(sleeps) == 2


def test_retry_idempotent_backs_off_exponentially_within_the_cap() -> None:
    """Waits grow from the multiplier and never exceed the cap (jitter included)."""
    call = Flaky(*(GatewayTransient("down") for _ in range(4)))
    sleeps: list[float] = []
    retry_idempotent(
        call, attempts=5, sleep=sleeps.append, backoff_multiplier=1.0, backoff_max=3.0, backoff_jitter=0.0
    )
    assert sleeps == [1.0, 2.0, 3.0, 3.0]


def test_retry_idempotent_returns_once_the_call_succeeds() -> None:
    """A transient error followed by success returns the result."""
    call = Flaky(GatewayTransient("blip"))
    assert retry_idempotent(call, sleep=lambda seconds: None) == "ok"
    assert call.calls == 2


@pytest.mark.parametrize("error", [GatewayNotFound("gone"), GatewayPermanent("bad"), ValueError("bug")])
def test_retry_idempotent_never_retries_non_transient_errors(error: Exception) -> None:
    """Not found, permanent and foreign errors are raised on the first attempt."""
    call = Flaky(error)
    sleeps: list[float] = []
    with pytest.raises(type(error)):
        retry_idempotent(call, sleep=sleeps.append)
    assert call.calls == 1 and sleeps == []


def test_retry_idempotent_bounds_rate_limits_and_honours_short_retry_after() -> None:
    """429s share the same bound; a short Retry-After is used as the wait."""
    call = Flaky(*(GatewayRateLimited("429", retry_after=1.5) for _ in range(5)))
    sleeps: list[float] = []
    with pytest.raises(GatewayRateLimited):
        retry_idempotent(call, attempts=3, sleep=sleeps.append)
    assert call.calls == 3 and sleeps == [1.5, 1.5]


def test_retry_idempotent_leaves_long_retry_after_to_the_caller() -> None:
    """A Retry-After beyond the backoff cap stops in-call retries at once."""
    call = Flaky(GatewayRateLimited("429", retry_after=60.0), GatewayRateLimited("429"))
    with pytest.raises(GatewayRateLimited) as caught:
        retry_idempotent(call, attempts=3, sleep=lambda seconds: None, backoff_max=5.0)
    assert caught.value.retry_after == 60.0 and call.calls == 1


def test_retry_idempotent_refuses_zero_attempts() -> None:
    """At least one attempt is required."""
    with pytest.raises(ValueError):
        retry_idempotent(lambda: "ok", attempts=0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(header: str | None, expected: float | None) -> None:
    """Delta-seconds and HTTP-dates (relative to an injected now) are both understood."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected
