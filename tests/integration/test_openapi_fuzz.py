"""Schemathesis explores every operation of the OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.runtime import app
from tests.support import AUTH

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def api_ready(deps, org):
    return deps


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_causes_a_server_error(case, api_ready):
    response = case.call(headers=AUTH)
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
