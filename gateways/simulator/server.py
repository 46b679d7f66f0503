"""Run the simulator app under uvicorn in a background thread (for tests, demo, benchmarks).

::

    with SimulatorServer(SimulatorConfig(webhook_url=url, seed=7)) as server:
        httpx.get(f"{server.base_url}/v1/orders/...", auth=(server.config.key_id, server.config.key_secret))
        server.sim.pay(order_id, "success")

The server binds only to a loopback address. ``port=0`` picks a free port; ``.port`` and
``.base_url`` report the real one once started.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from gateways.simulator.app import create_app
from gateways.simulator.config import SimulatorConfig
from gateways.simulator.core import Simulator

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to a loopback ``host`` (``port`` 0 = any free port)."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the simulator binds only to loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto set: asyncio then sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1" if host == "localhost" else host, port))
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(sim: Simulator) -> uvicorn.Config:
    """The uvicorn settings used for the simulator app (quiet, no lifespan, fast shutdown)."""
    return uvicorn.Config(
        create_app(sim),
        loop="asyncio",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


class SimulatorServer:
    """The simulator app served by uvicorn on a background thread; a context manager."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sim: Simulator | None = None,
    ):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the simulator binds only to loopback addresses, not {host!r}")
        self.sim = sim if sim is not None else Simulator(config)
        self.config = self.sim.config
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        """Bind, start serving and wait until uvicorn accepts connections."""
        if self._thread is not None:
            return self
        self._socket = bind_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.sim))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"sim-uvicorn-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop uvicorn and the webhook sender; safe to call twice."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        if sock is not None:
            sock.close()
        self.sim.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(host: str = "127.0.0.1", port: int = 8765, **knobs: Any) -> None:
    """Serve a simulator built from ``SimulatorConfig(**knobs)`` in the foreground until Ctrl-C."""
    config = SimulatorConfig(**knobs)
    sim = Simulator(config)
    sock = bind_socket(host, port)
    print(
        f"gateway simulator on http://{host}:{sock.getsockname()[1]}  razorpay key_id={config.key_id} "
        f"webhook_url={config.webhook_url}  payglocal mid={config.payglocal_merchant_id} (keys: /_sim/payglocal/keys)  "
        "control: /_sim/state /_sim/knobs /_sim/razorpay/pay /_sim/payglocal/pay",
        flush=True,
    )
    try:
        uvicorn.Server(uvicorn_config(sim)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the captured Ctrl-C after its shutdown
        pass
    finally:
        sock.close()
        sim.close()


def parse_args(argv: list[str]) -> dict[str, Any]:
    """Command-line flags for :func:`main`: ``--host``, ``--port`` and one per config field."""
    parser = argparse.ArgumentParser(prog="python -m gateways.simulator", description="Run the gateway simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    for f in dataclasses.fields(SimulatorConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.default is None:
            parser.add_argument(flag, type=int if f.name == "seed" else str, default=None)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    return vars(parser.parse_args(argv))
