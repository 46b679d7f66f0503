"""The worker process's start-up: ``dramatiq worker.main:start`` (Procfile).

Dramatiq's CLI calls :func:`start` in every worker process it forks: settings are read from the
environment once, then the broker, the Deps and the actors are built here, explicitly.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from functools import partial

import dramatiq

from gateways import registry
from worker import metrics
from worker.actors import Actors, declare_actors, events
from worker.broker import build_broker
from worker.deps import Deps, build_deps
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    """What one process runs on: its settings, broker, Deps and the actors declared on that broker."""

    settings: Settings
    broker: dramatiq.Broker
    deps: Deps
    actors: Actors


def build_runtime(settings: Settings, *, deps: Deps | None = None) -> Runtime:
    """Broker, Deps and actors for ``settings``: what every entry point (worker, web, scheduler, CLI) starts with."""
    broker = build_broker(settings)
    built = deps if deps is not None else build_deps(settings)
    actors = declare_actors(broker, lambda: built)
    built.deliver_now = partial(events.send_now, actors.deliver_events, built)
    built.recheck_now = actors.recheck_settled_order.send
    metrics.initialise((adapter.name for adapter in registry.ADAPTERS), (e.name for e in settings.event_endpoints))
    return Runtime(settings, broker, built, actors)


def start() -> None:
    """The worker process: build everything from the environment (Dramatiq then consumes the broker)."""
    build_runtime(Settings())
    freeze_startup_heap()


def freeze_startup_heap() -> None:
    """Keep what start-up made (modules, the ORM's mappers, pydantic's models: some 140,000 objects that live
    as long as the process) out of every later garbage collection (``gc.freeze``). A full collection walks
    every tracked object with the GIL held, pausing every thread of the process; without this, one took some
    30 ms here on the start-up heap alone, a credit's whole latency budget many times over."""
    gc.collect()
    gc.freeze()
