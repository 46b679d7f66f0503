"""Fast service tests: the real services and unit of work on SQLite (the embedded default, migrated
like production) with an in-memory gateway (:class:`gateways.fake.FakeGateway`). No Postgres, Redis
or HTTP: ``make test-fast`` runs them in seconds. The integration suite runs the same services on
Postgres against the simulator."""

from __future__ import annotations

import shutil

import pytest

from db.migrate import upgrade
from gateways.fake import FakeGateway
from worker.clock import FrozenClock
from worker.deps import Deps, build_deps
from worker.services.organisations import add_member, create_organisation
from worker.settings import Settings


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory):
    """One migrated SQLite file per run, copied for each test (migrating takes longer than a test)."""
    path = tmp_path_factory.mktemp("fast-db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def fake() -> FakeGateway:
    return FakeGateway("razorpay")


@pytest.fixture
def deps(migrated_db, tmp_path, fake) -> Deps:
    db = tmp_path / "recon.db"
    shutil.copy(migrated_db, db)
    settings = Settings(database_url=f"sqlite:///{db}", broker_url="stub://", redis_url=None)
    built = build_deps(settings, clock=FrozenClock(), gateways={"razorpay": fake})
    create_organisation("org-in", "Acme India", "IN", deps=built)
    add_member("admin-1", "org-in", "admin@acme.example", "admin", deps=built)
    yield built
    built.engine.dispose()
