"""Least privilege for API tokens: each named token may do only what its scopes say; 403 outside them."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from tests.runtime import CURRENT, app
from tests.support import new_order
from worker.settings import Settings

TOKENS = {"billing": "billing-token-0123456789", "support": "support-token-0123456789",
          "reviewer": "reviewer-token-0123456789"}


@pytest.fixture
def client(deps, org):
    settings = deps.settings.model_copy(update={
        "api_tokens": {**deps.settings.api_tokens, **TOKENS},
        "api_token_scopes": {name: [name] for name in TOKENS}})
    CURRENT["deps"] = dataclasses.replace(deps, settings=Settings.model_validate(settings.model_dump()))
    with TestClient(app) as test_client:
        yield test_client


def call(client, token: str, method: str, path: str, body: dict | None = None) -> int:
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKENS[token]}"}).status_code


def test_each_token_may_do_its_own_work_and_nothing_else(client, deps):
    order = new_order(deps, "org-in", credits=1_000)
    review = ("post", f"/orders/{order.id}/review", {"decision": "close", "reason": "r", "requested_by": "x"})
    refund = ("post", f"/orders/{order.id}/refunds", {"reason": "r", "requested_by": "x"})
    recheck = ("post", f"/orders/{order.id}/recheck", {"requested_by": "x", "wait": False})
    transactions = ("get", "/organisations/org-in/transactions", None)
    replay = ("post", "/events/replay", {"all_dead": True, "reason": "r", "requested_by": "x"})
    assert call(client, "billing", *review) == 403  # a billing token cannot resolve reviews
    assert call(client, "billing", *refund) == 403 and call(client, "billing", *replay) == 403
    assert call(client, "billing", *transactions) == 200
    assert call(client, "support", *transactions) == 403 and call(client, "support", *review) == 403
    assert call(client, "support", *recheck) == 202 and call(client, "support", *replay) == 200
    assert call(client, "support", *refund) == 422  # allowed; refused by the rules (the order is not paid)
    assert call(client, "reviewer", *refund) == 403 and call(client, "reviewer", *transactions) == 403
    assert call(client, "reviewer", *review) == 422  # allowed; refused by the rules (the order is not in review)
    for token in TOKENS:  # reading one order needs a token, any scope
        assert call(client, token, "get", f"/orders/{order.id}") == 200
