"""A real Prometheus for the dashboard and alert tests, over samples of every series the service exports."""

from __future__ import annotations

import time

import pytest

from tests.ops.prometheus import SLOT_S, Family, Prometheus, Samples, process_families, scrape_time_families


@pytest.fixture(scope="session")
def exported(pg_url, simulator, web_server) -> list[Family]:
    """Every metric ``/metrics`` serves: ``worker.metrics`` plus the scrape-time gauges of the real
    ``StateCollector`` (run once against the test database and Redis)."""
    from tests.conftest import settings_for
    from worker.deps import build_deps

    deps = build_deps(settings_for(pg_url, simulator, web_server.base_url))
    try:
        return process_families() + scrape_time_families(deps)
    finally:
        deps.engine.dispose()


@pytest.fixture(scope="session")
def prometheus(exported, tmp_path_factory) -> Prometheus:
    names = {name for family in exported for name in family.series}
    # Whole slots in the past: the last one (every series at once) ends two slots before now.
    start = int(time.time()) - (len(names) + 3) * SLOT_S
    samples = Samples(exported, start_s=start - start % SLOT_S)
    with Prometheus(samples, tmp_path_factory.mktemp("prometheus")) as server:
        yield server
