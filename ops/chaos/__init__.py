"""``make chaos``: thousands of orders through the real processes while workers are ``kill -9``-ed, Redis is
restarted empty and database connections are cut, with refunds and disputes in flight; afterwards every capture
must be credited exactly once, and every order and organisation must hold the credits the money the gateway
still holds pays for (granted − reversed + restored), each refund made and reversed once, each dispute in step.

Everything listens on 127.0.0.1 and is stopped at the end, failure or not: a redis-server of its own on a
spare port, a Postgres database of its own (migrated, then dropped), the gateway simulator with faults
(5xx, 429, slow answers; each webhook three times, shuffled), and the Procfile's processes as supervised
subprocesses (``recon web``, two ``dramatiq worker.main:start``, ``recon scheduler``): one that exits is restarted.

- ``stack``: the own Redis, the own database, supervised process groups, the faults.
- ``customers``: orders on both gateways (some manual-capture), checkouts, callbacks, late banks, wrong amounts,
  refunds through our API (full, partial, sent twice, twice at once) and in the gateway's dashboard, refunds the
  gateway fails, Razorpay disputes (won, lost, closed, reopened by pre-arbitration), webhooks replayed under fresh
  event ids, support rechecks and review decisions.
- ``checks``: what the run is judged on (the gateway's truth, read from the simulator, against our database), and
  the table.
- ``run``: puts it together: stand up, drive while shaking, drain, judge, tear down.

    python -m ops.chaos --orders 10000        # exit status 1 if money was over- or under-credited, a payment
                                              # credited or refunded twice, a capture missed, a refund or
                                              # dispute out of step with the gateway, or anything left stuck
"""

from ops.chaos.run import ChaosConfig, ChaosResult, run_chaos

__all__ = ["ChaosConfig", "ChaosResult", "run_chaos"]
