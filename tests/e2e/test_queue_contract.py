"""The documented queue contract: the schema files match the code, and a message enqueued with plain
Redis commands (as another language would) is processed like one sent from Python."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jsonschema
import pytest

from tests.runtime import NAMESPACE
from tests.support import balance, new_order, order_row
from worker.contract import RecheckOrderArgs, VerifyPaymentArgs

CONTRACT = Path(__file__).resolve().parents[2] / "ops" / "contract"


@pytest.mark.parametrize("name, model", [("verify_payment", VerifyPaymentArgs), ("recheck_order", RecheckOrderArgs)])
def test_the_published_json_schema_is_the_one_the_workers_enforce(name, model):
    published = json.loads((CONTRACT / f"{name}.schema.json").read_text())
    generated = model.model_json_schema()
    assert {k: v for k, v in published.items() if not k.startswith("$")} == generated
    jsonschema.Draft202012Validator.check_schema(published)


def test_the_schema_and_the_worker_agree_on_what_is_valid():
    schema = json.loads((CONTRACT / "recheck_order.schema.json").read_text())
    good = {"order_id": "ord_1", "requested_by": "billing", "reason": None}
    bad = [{"order_id": "ord_1"}, {"order_id": "", "requested_by": "x"}, {"order_id": 5, "requested_by": "x"},
           {"order_id": "ord_1", "requested_by": "x", "extra": 1}]
    jsonschema.validate(good, schema)
    for message in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(message, schema)


def test_a_message_pushed_with_plain_redis_commands_is_processed(deps, org, simulator, broker, worker, redis_client):
    order = new_order(deps)
    simulator.sim.pay(order.gateway_order_id, "success", deliver_webhooks=False)
    namespace = NAMESPACE
    redis_id = str(uuid.uuid4())
    message = {"queue_name": "recon_priority", "actor_name": "recheck_order", "args": [],
               "kwargs": {"order_id": order.id, "requested_by": "billing-backend", "reason": "from another language"},
               "options": {"redis_message_id": redis_id}, "message_id": str(uuid.uuid4()),
               "message_timestamp": int(time.time() * 1000)}
    redis_client.hset(f"{namespace}:recon_priority.msgs", redis_id, json.dumps(message))
    redis_client.rpush(f"{namespace}:recon_priority", redis_id)
    deadline = time.monotonic() + 20
    while order_row(deps, order.id).state != "paid" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert order_row(deps, order.id).state == "paid" and balance(deps) == 5_000
