"""Gateway-neutral HTTP plumbing: a client with timeouts, error translation, bounded GET retries.

Every adapter (Razorpay, PayGlocal) builds its ``httpx.Client`` with :func:`build_client`, wraps
each request in :func:`translate_errors` and sends idempotent GETs through :func:`retry_idempotent`.

httpx exceptions never leave an adapter; they become :mod:`gateways.errors` at this boundary::

    httpx.TimeoutException            -> GatewayTransient
    httpx.UnsupportedProtocol         -> GatewayPermanent   (a wrong base URL; retrying won't help)
    httpx.TransportError / Decoding   -> GatewayTransient   (connect, read, write, protocol errors)
    httpx.TooManyRedirects            -> GatewayPermanent

Retries here are short and in-call. Anything longer (minutes) belongs to the Dramatiq retry of
the actor that called the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
import tenacity

from gateways.errors import GatewayPermanent, GatewayRateLimited, GatewayTransient

T = TypeVar("T")

#: Default timeouts: a gateway that is slow to accept a connection is down; give it 5 s.
#: A slow answer (15 s) is still better than a duplicate write.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=5.0)

#: Total attempts (first try included) for an idempotent GET.
DEFAULT_ATTEMPTS = 3

#: Backoff for in-call GET retries: ``multiplier * 2**(n-1) + uniform(0, jitter)``, capped.
DEFAULT_BACKOFF_MULTIPLIER = 0.5
DEFAULT_BACKOFF_MAX = 5.0
DEFAULT_BACKOFF_JITTER = 0.5

EventHooks = Mapping[str, list[Callable[..., object]]]


def build_client(
    *,
    base_url: str,
    auth: httpx.Auth | tuple[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    event_hooks: EventHooks | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """Build the ``httpx.Client`` an adapter talks through.

    Args:
        base_url: the gateway's API root, e.g. ``https://api.razorpay.com``.
        auth: passed to httpx (``httpx.BasicAuth`` for Razorpay).
        transport: ``None`` in production; ``httpx.MockTransport(handler)`` in tests.
        timeout: an ``httpx.Timeout`` or seconds. ``None`` (wait forever) is refused.
        event_hooks: httpx ``{"request": [...], "response": [...]}``, e.g. latency metrics.
        headers: default headers sent with every request.

    Raises:
        ValueError: when the timeout, or its connect or read part, is missing.
    """
    if timeout is None:
        raise ValueError("a gateway client needs a timeout; refusing to wait forever")
    timeout_config = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
    if timeout_config.connect is None or timeout_config.read is None:
        raise ValueError("a gateway client needs connect and read timeouts")
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        transport=transport,
        timeout=timeout_config,
        event_hooks={key: list(hooks) for key, hooks in (event_hooks or {}).items()},
        headers=dict(headers or {}),
        follow_redirects=False,
    )


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn httpx exceptions raised inside the block into gateway errors (``raise ... from exc``).

    Args:
        what: names the operation in the message, e.g. ``"razorpay GET /v1/orders/{id}"``.
            It must not contain credentials.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise GatewayTransient(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.UnsupportedProtocol as exc:
        raise GatewayPermanent(f"{what}: unsupported URL scheme ({exc})") from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise GatewayTransient(f"{what}: connection failed ({type(exc).__name__}: {exc})") from exc
    except httpx.TooManyRedirects as exc:
        raise GatewayPermanent(f"{what}: too many redirects") from exc


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or ``None``.

    Unparseable values give ``None``; a date in the past gives ``0.0``.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def retry_idempotent(
    fn: Callable[[], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER,
    backoff_max: float = DEFAULT_BACKOFF_MAX,
    backoff_jitter: float = DEFAULT_BACKOFF_JITTER,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> T:
    """Call ``fn`` and retry it on :class:`GatewayTransient`, at most ``attempts`` calls in all.

    Only for idempotent requests (GETs). ``GatewayRateLimited`` is a transient error and shares the
    same bound; when it carries ``retry_after`` that wait is used instead of the backoff, and when
    that wait is longer than ``backoff_max`` no in-call retry happens (the caller's scheduler should
    wait instead). ``GatewayNotFound``, ``GatewayPermanent`` and any other exception are raised at once.
    The last error is re-raised as is (never wrapped in ``tenacity.RetryError``).

    Args:
        fn: the zero-argument call to make.
        attempts: total number of calls, the first included (>= 1).
        sleep: injected for tests (``lambda s: None``).
        backoff_multiplier, backoff_max, backoff_jitter: exponential backoff with jitter, in seconds.
        before_sleep: optional tenacity hook, e.g. to log the retry.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    backoff = tenacity.wait_exponential_jitter(multiplier=backoff_multiplier, max=backoff_max, jitter=backoff_jitter)

    def server_asked_for(retry_state: tenacity.RetryCallState) -> float | None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return error.retry_after if isinstance(error, GatewayRateLimited) else None

    def wait(retry_state: tenacity.RetryCallState) -> float:
        asked = server_asked_for(retry_state)
        return asked if asked is not None else backoff(retry_state)

    def asked_too_long(retry_state: tenacity.RetryCallState) -> bool:
        asked = server_asked_for(retry_state)
        return asked is not None and asked > backoff_max

    retrying = tenacity.Retrying(
        stop=tenacity.stop_any(tenacity.stop_after_attempt(attempts), asked_too_long),
        wait=wait,
        retry=tenacity.retry_if_exception_type(GatewayTransient),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
