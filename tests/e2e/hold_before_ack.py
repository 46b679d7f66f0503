"""A Dramatiq middleware loaded only by the crash tests' worker
(``dramatiq worker.main:start tests.e2e.hold_before_ack``).

- Every message a worker process finished is appended to the file ``$CRASH_TEST_JOURNAL`` (message id, actor,
  pid, time, whether it raised), so a test can see that a message ran again in another process.
- While the file ``$CRASH_TEST_HOLD_FILE`` exists, a message that finished without an exception writes
  ``<hold file>.reached`` (its message id) and then sleeps in ``after_process_message``: the actor has returned,
  so its transaction has committed, and the worker has not acknowledged the message yet (the Redis consumer
  acknowledges only after every ``after_process_message`` has run). A ``kill -9`` then lands in the window
  "died after commit, before ack".

Nothing of the service is patched: the middleware is added to the configured broker when this module is imported.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dramatiq
from dramatiq.middleware import Middleware

#: How long a held message waits for the kill (a bound, so a forgotten hold file cannot block a worker forever).
HOLD_S = float(os.environ.get("CRASH_TEST_HOLD_S", "120"))


class HoldBeforeAck(Middleware):
    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        journal = os.environ.get("CRASH_TEST_JOURNAL")
        if journal:
            with open(journal, "a") as out:
                out.write(json.dumps({"message_id": message.message_id, "actor": message.actor_name,
                                      "pid": os.getpid(), "at": time.time(), "failed": exception is not None}) + "\n")
        hold = os.environ.get("CRASH_TEST_HOLD_FILE")
        if exception is None and hold and os.path.exists(hold):
            Path(hold + ".reached").write_text(message.message_id)
            deadline = time.monotonic() + HOLD_S
            while os.path.exists(hold) and time.monotonic() < deadline:
                time.sleep(0.05)


dramatiq.get_broker().add_middleware(HoldBeforeAck())
