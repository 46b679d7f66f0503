"""Drive the gateway simulator as a separate process, over its HTTP control API (``/_sim/``).

The simulator (``python -m simulator``) is the gateways' stand-in, an independent witness: nothing in the
service packages imports it. This module only knows its control API's JSON (``simulator/README.md``):

- :class:`SimulatorProcess` starts ``python -m simulator`` on a free loopback port, waits until it answers
  and stops it again (a context manager);
- :class:`SimulatorClient` calls the control API: the customers' actions (``pay``, ``late_authorize``,
  ``refund`` ...), the knobs, the webhook log and events, the keys to configure our adapters with.

A control call the simulator refuses (an unknown order, a paid order, a bad knob) raises
:class:`SimulatorRefused` with the HTTP status and the simulator's message.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
#: Ids starting with this are PayGlocal gids; Razorpay's start with ``order_`` / ``pay_``.
PAYGLOCAL_PREFIX = "gl_"


class SimulatorRefused(Exception):
    """The simulator answered a control call with an error (``status``: its HTTP status)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"simulator refused ({status}): {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SimulatorEvent:
    """One webhook (or browser callback) the simulator generated: its exact bytes and headers."""

    event_id: str
    event: str
    gateway: str
    body: bytes
    headers: dict[str, str]
    created_at: int


class SimulatorClient:
    """The simulator's ``/_sim/`` control API, from another process."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, max_connections: int = 64):
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, limits=limits)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        response = self.http.request(method, path, json=body, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SimulatorRefused(response.status_code, str(message))
        return response.json()

    # -- readiness, keys, knobs, clock ------------------------------------------------------
    def healthy(self) -> bool:
        """Whether the simulator answers ``/_sim/health``."""
        try:
            return self.http.get("/_sim/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def razorpay_keys(self) -> dict[str, str]:
        """``key_id``, ``key_secret``, ``webhook_secret``, ``account_id`` of the simulated Razorpay account."""
        return self._call("GET", "/_sim/razorpay/keys")

    def payglocal_keys(self) -> dict[str, Any]:
        """The PayGlocal keys as served: merchant id/kid/private and public PEM, PayGlocal's kid and public PEM."""
        return self._call("GET", "/_sim/payglocal/keys")

    def payglocal_settings(self) -> dict[str, Any]:
        """What our PayGlocal settings need: merchant id, our private key and kid, PayGlocal's public keys and kid."""
        keys = self.payglocal_keys()
        if not keys.get("merchant_private_pem"):
            raise LookupError("the simulator was given the merchant's public key only; it has no private half")
        return {"merchant_id": keys["merchant_id"], "private_key_pem": keys["merchant_private_pem"],
                "private_kid": keys["merchant_kid"], "payglocal_public_keys": {keys["payglocal_kid"]:
                                                                                keys["payglocal_public_pem"]},
                "payglocal_public_kid": keys["payglocal_kid"]}

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """Change run-time knobs; returns them all."""
        return self._call("POST", "/_sim/knobs", knobs)["knobs"]

    def advance_clock(self, seconds: float) -> float:
        """Move the simulated clock forward; returns its new time (epoch seconds)."""
        return self._call("POST", "/_sim/clock/advance", {"seconds": seconds})["now"]

    def state(self, *, webhooks: bool = True) -> dict[str, Any]:
        """Knobs, clock, every entity of both gateways and (unless ``webhooks`` is False) the webhook counts."""
        return self._call("GET", "/_sim/state", params={} if webhooks else {"webhooks": "false"})

    def reset(self) -> None:
        """Forget every entity and webhook (knobs stay)."""
        self._call("POST", "/_sim/reset")

    # -- the customers ----------------------------------------------------------------------
    def pay(self, gateway_order_id: str, outcome: str, *, deliver_webhooks: bool = True,
            amount_minor: int | None = None, currency: str | None = None) -> dict[str, Any]:
        """A checkout attempt on a Razorpay order, or on a PayGlocal gid (then ``deliver_webhooks`` is the callback)."""
        if gateway_order_id.startswith(PAYGLOCAL_PREFIX):
            return self.pay_payglocal(gateway_order_id, outcome, deliver_callback=deliver_webhooks,
                                      amount_minor=amount_minor, currency=currency)
        return self._call("POST", "/_sim/razorpay/pay", _given(
            gateway_order_id=gateway_order_id, outcome=outcome, deliver_webhooks=deliver_webhooks,
            amount_minor=amount_minor, currency=currency))

    def pay_payglocal(self, gid: str, outcome: str, *, deliver_callback: bool = True, amount_minor: int | None = None,
                      currency: str | None = None, callback_style: str | None = None) -> dict[str, Any]:
        """The shopper on PayGlocal's hosted page."""
        return self._call("POST", "/_sim/payglocal/pay", _given(
            gid=gid, outcome=outcome, deliver_callback=deliver_callback, amount_minor=amount_minor, currency=currency,
            callback_style=callback_style))

    def late_authorize(self, payment_id: str, *, deliver_webhooks: bool = True,
                       minutes_after_creation: float | None = None) -> dict[str, Any]:
        """The bank reports success late for a failed Razorpay payment (or PayGlocal gid)."""
        if payment_id.startswith(PAYGLOCAL_PREFIX):
            return self._call("POST", "/_sim/payglocal/late_authorize", {"gid": payment_id})
        return self._call("POST", "/_sim/razorpay/late_authorize", _given(
            gateway_payment_id=payment_id, deliver_webhooks=deliver_webhooks,
            minutes_after_creation=minutes_after_creation))

    def refund(self, payment_id: str, amount_minor: int | None = None, *,
               deliver_webhooks: bool = True) -> dict[str, Any]:
        """Refund a captured Razorpay payment (all of it by default)."""
        return self._call(
            "POST",
            "/_sim/razorpay/refund",
            _given(gateway_payment_id=payment_id, amount_minor=amount_minor, deliver_webhooks=deliver_webhooks),
        )

    def upi_retry(self, payment_id: str, *, deliver_webhooks: bool = True) -> dict[str, Any]:
        """A failed UPI payment that completes after all, on the same id (captured)."""
        return self._call("POST", "/_sim/razorpay/upi_retry",
                          _given(gateway_payment_id=payment_id, deliver_webhooks=deliver_webhooks))

    def dashboard_refund(self, payment_id: str, amount: int | None = None, *, fail: bool = False) -> dict[str, Any]:
        """A refund made in Razorpay's dashboard, with its whole lifecycle and webhooks."""
        return self._call("POST", f"/_sim/razorpay/payments/{payment_id}/dashboard_refund",
                          _given(amount=amount, fail=fail))

    def refund_behaviour(self, *, processed_after_s: float | None = None, fail_next: int | None = None) -> dict:
        """How refunds go from now on: pending time (simulated seconds), and how many of the next ones fail."""
        return self._call("POST", "/_sim/refunds/behaviour",
                          _given(processed_after_s=processed_after_s, fail_next=fail_next))

    def refunds_of(self, payment_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/_sim/payments/{payment_id}/refunds")["refunds"]

    def open_dispute(self, payment_id: str, *, amount: int | None = None, respond_in_s: float | None = None) -> dict:
        """A chargeback on a captured Razorpay payment (sends ``payment.dispute.created``)."""
        return self._call("POST", f"/_sim/razorpay/payments/{payment_id}/disputes",
                          _given(amount=amount, respond_in_s=respond_in_s))

    def move_dispute(self, dispute_id: str, *, status: str | None = None, phase: str | None = None) -> dict:
        """Move a dispute (won, lost, under_review, …) and send its webhook."""
        return self._call("POST", f"/_sim/razorpay/disputes/{dispute_id}", _given(status=status, phase=phase))

    def refund_payglocal(self, gid: str) -> dict[str, Any]:
        """Refund a captured PayGlocal transaction in full."""
        return self._call("POST", "/_sim/payglocal/refund", {"gid": gid})

    # -- settlements ------------------------------------------------------------------------
    def settle(self, gateway: str = "razorpay", *, everything: bool = False,
               deliver_webhooks: bool = True) -> list[dict[str, Any]]:
        """Settle now what is due (``everything``: every captured payment); Razorpay sends ``settlement.processed``."""
        return self._call("POST", f"/_sim/{gateway}/settle",
                          {"all": everything, "deliver_webhooks": deliver_webhooks})["settlements"]

    def settlement_faults(self, *, skip_payment_ids: list[str] | None = None,
                          amount_delta: dict[str, int] | None = None, delay_payment_ids: dict[str, float] | None = None,
                          unknown_rows: int | None = None) -> dict[str, Any]:
        """What goes wrong in the next settlements: rows left out, amounts off, payments settled late, strangers."""
        return self._call("POST", "/_sim/settlements/faults", _given(
            skip_payment_ids=skip_payment_ids, amount_delta=amount_delta, delay_payment_ids=delay_payment_ids,
            unknown_rows=unknown_rows))

    def payglocal_settlement_report(self, day: str | None = None) -> str:
        """PayGlocal's dashboard export of settlements (CSV; the simulator's reading of an undocumented format)."""
        response = self.http.get("/_sim/payglocal/settlement-report", params={"date": day} if day else None)
        if response.status_code != 200:
            raise SimulatorRefused(response.status_code, response.text[:200])
        return response.text

    # -- webhooks ---------------------------------------------------------------------------
    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until no delivery is queued or in flight; False on timeout."""
        return self._call("POST", "/_sim/webhooks/wait", {"timeout": timeout},
                          timeout=timeout + 30)["idle"]

    def webhook_backlog(self) -> int:
        """Deliveries queued or in flight (cheap)."""
        return self._call("GET", "/_sim/webhooks/backlog")["backlog"]

    def webhook_stats(self) -> dict[str, int]:
        """Counts of events and deliveries by outcome."""
        return self._call("GET", "/_sim/webhooks")["stats"]

    def delivery_log(self) -> list[dict[str, Any]]:
        """One entry per delivery copy."""
        return self._call("GET", "/_sim/webhooks")["log"]

    def webhook_events(self, since: int = 0) -> list[SimulatorEvent]:
        """The events generated, oldest first, from index ``since``."""
        found = self._call("GET", "/_sim/webhooks/events", params={"since": since})["events"]
        return [SimulatorEvent(e["event_id"], e["event"], e["gateway"], e["body"].encode("utf-8"), dict(e["headers"]),
                               e["created_at"]) for e in found]


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are set (the simulator's defaults apply to the rest)."""
    return {name: value for name, value in fields.items() if value is not None}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def simulator_argv(port: int, **settings: Any) -> list[str]:
    """``python -m simulator --port N`` plus one flag a setting (``shuffle_webhooks=True``: ``--shuffle-webhooks``)."""
    argv = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)]
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            argv += [flag, str(value)]
    return argv


class SimulatorProcess:
    """``python -m simulator`` as a child process on a free port; ``.client`` drives it. A context manager."""

    def __init__(self, *, log_path: Path | None = None, start_timeout_s: float = 30.0, **settings: Any):
        self.settings = settings
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.popen: subprocess.Popen[bytes] | None = None
        self.client: SimulatorClient | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimulatorClient:
        """Start the process and wait until it answers; returns the client."""
        self.port = free_port()
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(simulator_argv(self.port, **self.settings), cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        self.client = SimulatorClient(self.base_url)
        deadline = time.monotonic() + self.start_timeout_s
        while not self.client.healthy():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start (exit code {self.popen.returncode}); "
                                   f"log: {self.log_path or 'not kept'}")
            time.sleep(0.05)
        return self.client

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL); safe to call twice."""
        if self.client is not None:
            self.client.close()
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)

    def __enter__(self) -> SimulatorClient:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
