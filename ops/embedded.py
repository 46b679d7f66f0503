"""The embedded set-up: SQLite, the in-process broker with an in-process worker, the web app and
the gateway simulator, all in one process, running the production code paths.

Environment variables are set before ``worker.actors`` is imported, because the broker is chosen
when the actors are declared.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx


#: A fresh bearer token for this demo run only.
DEMO_TOKEN = secrets.token_urlsafe(24)


@dataclass
class Embedded:
    deps: object
    broker: object
    simulator: object
    web_url: str
    http: httpx.Client
    workdir: Path

    def drain(self, timeout_ms: int = 30_000) -> None:
        """Wait until every webhook was delivered and every queued message processed."""
        from worker.broker import QUEUES

        for _ in range(3):  # processing can enqueue more work (captures, follow-ups)
            self.simulator.sim.wait_for_webhooks(timeout=timeout_ms / 1000)
            for queue in QUEUES:
                self.broker.join(queue, timeout=timeout_ms, fail_fast=False)


def start_embedded(stack: ExitStack, *, abandon_after_s: int, workdir: Path | None = None, seed: int = 7) -> Embedded:
    from gateways.simulator import SimulatorConfig, SimulatorServer

    workdir = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recon-demo-")))
    simulator = stack.enter_context(SimulatorServer(SimulatorConfig(seed=seed)))
    os.environ["RECON_BROKER_URL"] = "stub://"
    from ops.serve import ThreadedServer
    from ops.web import app

    web = stack.enter_context(ThreadedServer(app))  # requests use the Deps installed below
    keys = simulator.sim.payglocal.adapter_kwargs()
    os.environ.update({
        "RECON_DATABASE_URL": f"sqlite:///{workdir / 'recon-demo.db'}",
        "RECON_RAZORPAY_BASE_URL": simulator.base_url,
        "RECON_RAZORPAY_KEY_ID": simulator.config.key_id,
        "RECON_RAZORPAY_KEY_SECRET": simulator.config.key_secret,
        "RECON_RAZORPAY_WEBHOOK_SECRET": simulator.config.webhook_secret,
        "RECON_PAYGLOCAL_BASE_URL": simulator.base_url,
        "RECON_PAYGLOCAL_MERCHANT_ID": keys["merchant_id"],
        "RECON_PAYGLOCAL_PRIVATE_KEY_PEM": keys["private_key_pem"],
        "RECON_PAYGLOCAL_PRIVATE_KID": keys["private_kid"],
        "RECON_PAYGLOCAL_PUBLIC_KEYS": json.dumps(keys["payglocal_public_keys"]),
        "RECON_PAYGLOCAL_PUBLIC_KID": keys["payglocal_public_kid"],
        "RECON_PAYGLOCAL_CALLBACK_URL": f"{web.base_url}/webhooks/payglocal",
        "RECON_ABANDON_AFTER_S": str(abandon_after_s),
        "RECON_API_TOKENS": json.dumps({"demo-billing": DEMO_TOKEN}),
    })
    from db.migrate import upgrade
    from worker.deps import build_deps, set_deps
    from worker.logging import configure_logging
    from worker.settings import Settings

    from worker import actors  # noqa: F401  (declares the actors on the stub broker)

    settings = Settings()
    log_file = stack.enter_context(open(workdir / "recon.log", "w"))
    configure_logging(level="INFO", json=True, stream=log_file)
    upgrade(settings.database_url)
    deps = build_deps(settings)
    set_deps(deps)
    stack.callback(set_deps, None)

    import dramatiq

    from worker.broker import broker

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    stack.callback(worker.stop)
    simulator.sim.set_knobs(webhook_url=f"{web.base_url}/webhooks/razorpay")
    http = stack.enter_context(httpx.Client(base_url=web.base_url, timeout=30,
                                            headers={"Authorization": f"Bearer {DEMO_TOKEN}"}))
    return Embedded(deps, broker, simulator, web.base_url, http, workdir)
