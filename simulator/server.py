"""The simulator's HTTP app (Razorpay ``/v1``, PayGlocal ``/gl/v1/payments``, control ``/_sim``) and the ways to
serve it: :class:`SimulatorServer` (uvicorn on a background thread, for tests and benchmarks) and :func:`main`
(the foreground process ``python -m simulator`` / ``recon simulator`` runs).

::

    with SimulatorServer(SimulatorConfig(webhook_url=url, seed=7)) as server:
        httpx.get(f"{server.base_url}/v1/orders/...", auth=(server.config.key_id, server.config.key_secret))
        server.sim.pay(order_id, "success")

The server binds only to a loopback address. ``port=0`` picks a free port; ``.port`` and ``.base_url`` report
the real one once started.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import types
import typing
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator.config import SimulatorConfig
from simulator.control import build_router as build_control_router
from simulator.core import Simulator
from simulator.errors import SimulatorError
from simulator.payglocal import routes as payglocal_routes
from simulator.payglocal.codec import PayGlocalApiError
from simulator.razorpay import routes as razorpay_routes
from simulator.razorpay.codec import RazorpayApiError, error_body

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def create_app(sim: Simulator) -> FastAPI:
    """A FastAPI app serving ``sim``: Razorpay under ``/v1``, PayGlocal under ``/gl/v1/payments``, control under
    ``/_sim`` (the fault knobs apply to the first two only)."""
    app = FastAPI(title="gateway simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = sim
    app.middleware("http")(sim.faults.middleware([razorpay_routes.FAULTS, payglocal_routes.FAULTS]))

    @app.exception_handler(RazorpayApiError)
    async def razorpay_error(_: Request, exc: RazorpayApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(PayGlocalApiError)
    async def payglocal_error(_: Request, exc: PayGlocalApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        # razorpay.md §6: "The requested URL was not found on the server" for an unknown URL
        description = "The requested URL was not found on the server." if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(error_body("BAD_REQUEST_ERROR", description), status_code=exc.status_code)

    @app.exception_handler(SimulatorError)
    async def simulator_error(_: Request, exc: SimulatorError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app.include_router(razorpay_routes.build_router(sim.razorpay))
    app.include_router(payglocal_routes.build_router(sim.payglocal))
    app.include_router(build_control_router(sim))
    return app


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
    return uvicorn.Config(create_app(sim), loop="asyncio", lifespan="off", log_level="warning", access_log=False,
                          timeout_graceful_shutdown=1)


class SimulatorServer:
    """The simulator app served by uvicorn on a background thread; a context manager."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 sim: Simulator | None = None):
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
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"sim-uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop uvicorn, the webhook sender and the timers; safe to call twice."""
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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(host: str = "127.0.0.1", port: int = 8765, **settings: Any) -> None:
    """Serve a simulator built from ``SimulatorConfig(**settings)`` in the foreground until Ctrl-C or SIGTERM."""
    config = SimulatorConfig(**settings)
    sim = Simulator(config)
    sock = bind_socket(host, port)
    print(f"gateway simulator on http://{host}:{sock.getsockname()[1]}  razorpay key_id={config.key_id} "
          f"webhook_url={config.webhook_url}  payglocal mid={config.payglocal_merchant_id} (keys: /_sim/payglocal/keys)"
          "  control: /_sim/state /_sim/knobs /_sim/razorpay/pay /_sim/payglocal/pay", flush=True)
    try:
        uvicorn.Server(uvicorn_config(sim)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the captured Ctrl-C after its shutdown
        pass
    finally:
        sock.close()
        sim.close()


def _flag_type(annotation: Any) -> type:
    """The scalar type of a config field (``int | None`` -> int)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def parse_args(argv: list[str]) -> dict[str, Any]:
    """Command-line flags for :func:`main`: ``--host``, ``--port`` and one per config field."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Run the gateway simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    for name, info in SimulatorConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = _flag_type(info.annotation)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=info.default)
        else:
            parser.add_argument(flag, type=kind, default=info.default)
    return vars(parser.parse_args(argv))


def run(argv: list[str] | None = None) -> None:
    """``python -m simulator [flags]``."""
    main(**parse_args(sys.argv[1:] if argv is None else argv))
