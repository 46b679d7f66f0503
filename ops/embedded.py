"""The embedded set-up: SQLite, the in-process broker with an in-process worker and the web app in one
process, running the production code paths, against the gateway simulator in a child process (driven over
its control API: :mod:`ops.simulator_client`).
Everything is built here, explicitly, from settings given in code: nothing is read from the environment.
"""

from __future__ import annotations

import secrets
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dramatiq
import httpx

from db.migrate import upgrade
from ops.console.people import hash_password
from ops.demo_receiver import DemoReceiver
from ops.serve import ThreadedServer
from ops.simulator_client import SimulatorClient, SimulatorProcess
from ops.web import create_app
from worker.actors import Actors, declare_actors, events
from worker.broker import build_broker
from worker.deps import Deps, build_deps
from worker.logging import configure_logging
from worker.queues import QUEUES
from worker.settings import ConsoleAccount, EventEndpoint, Settings

#: A fresh bearer token for this demo run only.
DEMO_TOKEN = secrets.token_urlsafe(24)
#: The demo's support console account (support and reviewer), with a fresh password per run.
CONSOLE_NAME, CONSOLE_PASSWORD = "demo", secrets.token_urlsafe(12)


@dataclass
class Embedded:
    deps: Deps
    broker: dramatiq.Broker
    actors: Actors
    simulator: SimulatorClient
    web_url: str
    http: httpx.Client
    workdir: Path
    receiver: DemoReceiver  #: the billing backend's endpoint for order events

    def drain(self, timeout_ms: int = 30_000) -> None:
        """Wait until every webhook was delivered and every queued message processed."""
        for _ in range(3):  # processing can enqueue more work (captures, follow-ups)
            self.simulator.wait_for_webhooks(timeout=timeout_ms / 1000)
            for queue in QUEUES:
                self.broker.join(queue, timeout=timeout_ms, fail_fast=False)


def start_embedded(stack: ExitStack, *, abandon_after_s: int, workdir: Path | None = None, seed: int = 7) -> Embedded:
    """Start the simulator, the stub broker with an in-process worker and the web app; returns them wired."""
    workdir = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recon-demo-")))
    simulator = stack.enter_context(SimulatorProcess(seed=seed, log_path=workdir / "simulator.log"))
    built: dict[str, Deps] = {}  # the web app needs its port before the Deps (PayGlocal's callback URL names it)
    broker = build_broker(Settings(broker_url="stub://"))
    actors = declare_actors(broker, lambda: built["deps"])
    web = stack.enter_context(ThreadedServer(create_app(lambda: built["deps"], lambda: actors,
                                                        console_secret=secrets.token_urlsafe(32),
                                                        console_secure_cookies=False)))  # plain HTTP on loopback
    keys = simulator.payglocal_settings()
    receiver = DemoReceiver()
    stack.callback(receiver.shutdown)
    razorpay = simulator.razorpay_keys()
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'recon-demo.db'}", broker_url="stub://",
        razorpay_base_url=simulator.base_url, razorpay_key_id=razorpay["key_id"],
        razorpay_key_secret=razorpay["key_secret"], razorpay_webhook_secret=razorpay["webhook_secret"],
        payglocal_base_url=simulator.base_url, payglocal_merchant_id=keys["merchant_id"],
        payglocal_private_key_pem=keys["private_key_pem"], payglocal_private_kid=keys["private_kid"],
        payglocal_public_keys=keys["payglocal_public_keys"], payglocal_public_kid=keys["payglocal_public_kid"],
        payglocal_callback_url=f"{web.base_url}/webhooks/payglocal", abandon_after_s=abandon_after_s,
        api_tokens={"demo-billing": DEMO_TOKEN},
        console_accounts={CONSOLE_NAME: ConsoleAccount(roles=["support", "reviewer"],
                                                       password_hash=hash_password(CONSOLE_PASSWORD))},
        event_endpoints=[EventEndpoint(name="billing-demo", url=receiver.url, secrets=[receiver.secret])],
        # the demo's day is compressed: a credited payment is expected in the very next settlement
        settlement_expected_s={"razorpay": 0, "payglocal": 0}, settlement_slack_s=0)
    log_file = stack.enter_context(open(workdir / "recon.log", "w"))  # noqa: SIM115  (the ExitStack closes it)
    configure_logging(level="INFO", json=True, stream=log_file)
    upgrade(settings.database_url)
    deps = built["deps"] = build_deps(settings)
    deps.deliver_now = partial(events.send_now, actors.deliver_events, deps)  # as build_runtime wires it
    deps.recheck_now = actors.recheck_settled_order.send
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    stack.callback(worker.stop)
    simulator.set_knobs(webhook_url=f"{web.base_url}/webhooks/razorpay")
    http = stack.enter_context(httpx.Client(base_url=web.base_url, timeout=30,
                                            headers={"Authorization": f"Bearer {DEMO_TOKEN}"}))
    return Embedded(deps, broker, actors, simulator, web.base_url, http, workdir, receiver)
