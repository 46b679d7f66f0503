"""Fixtures for the simulator tests: a webhook receiver and a simulator posting to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from simulator import SimulatorServer
from tests.unit.simulator.support import Receiver, start


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def server(receiver: Receiver) -> Iterator[SimulatorServer]:
    srv = start(webhook_url=receiver.url, seed=7)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Every simulator thread a test started is gone when it ends (clean shutdown)."""
    before = set(threading.enumerate())
    yield
    leftovers = [t.name for t in threading.enumerate()
                 if t.name.startswith("sim-") and t.is_alive() and t not in before]
    assert leftovers == []
