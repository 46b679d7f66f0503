"""``/metrics``: the process metrics of every process on this host, plus what the database and the
broker hold right now (orders by state, pending orders by age, queue depth and age, dead letters,
refunds in flight, open disputes and their deadlines, the credit shortfall, settlement rows by bucket, credited
payments missing from the settlements, and how fresh the settlement data is)."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from db.models import (
    Dispute,
    EventDelivery,
    InboxEvent,
    LedgerEntry,
    Order,
    Refund,
    SettlementImport,
    SettlementPull,
    SettlementRow,
)
from worker.deps import Deps
from worker.domain.dispute_state import AWAITING_US, DisputeState
from worker.domain.refund_state import IN_FLIGHT
from worker.domain.settlement import Bucket
from worker.queues import QUEUES
from worker.services.settlement_match import expected_since, unsettled_grants

#: Disputes still to be decided (someone may still answer them); those awaiting us have a deadline.
UNDECIDED_DISPUTES = (DisputeState.OPEN.value, DisputeState.UNDER_REVIEW.value)
#: Pending-order age buckets: label → upper bound in seconds.
AGE_BUCKETS = (("lt_5m", 300), ("5m_30m", 1800), ("30m_2h", 7200), ("2h_1d", 86400), ("gt_1d", None))
#: The ``bucket`` label of settlement rows: every bucket a row can be in (credited_not_settled has no row: it is
#: a gauge of its own), and ``new`` for rows stored but not matched yet (matching runs after each pull and import).
SETTLEMENT_BUCKETS = (*(bucket.value for bucket in Bucket if bucket is not Bucket.CREDITED_NOT_SETTLED), "new")


class StateCollector:
    """Reads the database and Redis at scrape time; labels stay bounded."""

    def __init__(self, deps: Deps):
        self.deps = deps

    def collect(self):
        yield from self._orders()
        yield from self._money()
        yield from self._events()
        yield from self._settlements()
        yield from self._queues()
        last = self.deps.coordination.last_sweep()
        sweep = GaugeMetricFamily("recon_last_successful_sweep_timestamp_seconds", "When a sweep last completed.")
        sweep.add_metric([], last or 0)
        yield sweep

    def _orders(self):
        now = self.deps.clock.now()
        by_state = GaugeMetricFamily("recon_orders", "Orders by state.", labels=["gateway", "state"])
        pending = GaugeMetricFamily("recon_pending_orders", "Open orders (created or pending) by age.",
                                    labels=["gateway", "age"])
        inbox = GaugeMetricFamily("recon_inbox_pending", "Stored webhooks and callbacks not yet processed.",
                                  labels=["gateway"])
        age = func.extract("epoch", now - Order.created_at) if self._postgres else None
        with self.deps.sessions() as session:
            for gateway, state, count in session.execute(
                    select(Order.gateway, Order.state, func.count()).group_by(Order.gateway, Order.state)):
                by_state.add_metric([gateway, state], count)
            open_rows = session.execute(select(Order.gateway, Order.created_at if age is None else age)
                                        .where(Order.state.in_(("created", "pending")))).all()
            pending_inbox = dict(session.execute(select(InboxEvent.gateway, func.count())
                                                 .where(InboxEvent.status == "pending")
                                                 .group_by(InboxEvent.gateway)).all())
        for gateway in set(pending_inbox) | set(self.deps.gateways):
            inbox.add_metric([gateway], pending_inbox.get(gateway, 0))
        counts: dict[tuple[str, str], int] = {}
        for gateway, value in open_rows:
            seconds = value if age is not None else (now - value).total_seconds()
            label = next(name for name, bound in AGE_BUCKETS if bound is None or float(seconds) < bound)
            counts[(gateway, label)] = counts.get((gateway, label), 0) + 1
        for gateway in {g for g, _ in counts} | set(self.deps.gateways):
            for label, _ in AGE_BUCKETS:
                pending.add_metric([gateway, label], counts.get((gateway, label), 0))
        yield from (by_state, pending, inbox)

    def _money(self):
        """Refunds in flight, disputes to answer, and credits owed back but not taken (aggregates: one row per
        gateway and state, the times compared with now in Python on any database)."""
        now = self.deps.clock.now()
        in_flight = GaugeMetricFamily("recon_refunds_in_flight", "Refunds asked for or pending at the gateway.",
                                      labels=["gateway", "state"])
        oldest = GaugeMetricFamily("recon_refund_oldest_in_flight_seconds",
                                   "Age of the oldest refund in flight (0 when none).", labels=["gateway"])
        disputes = GaugeMetricFamily("recon_disputes_open", "Disputes open or under review.", labels=["gateway"])
        respond_by = GaugeMetricFamily("recon_dispute_respond_by_seconds",
                                       "Seconds until the earliest respond-by deadline of an open dispute "
                                       "(negative: passed); absent when no open dispute has one.", labels=["gateway"])
        shortfall = GaugeMetricFamily("recon_credit_shortfall_credits",
                                      "Credits reversals should have taken back but could not (already spent), net "
                                      "of restores.", labels=["gateway"])
        states = sorted(state.value for state in IN_FLIGHT)
        with self.deps.sessions() as session:
            refunds = session.execute(select(Refund.gateway, Refund.state, func.count(), func.min(Refund.created_at))
                                      .where(Refund.state.in_(states)).group_by(Refund.gateway, Refund.state)).all()
            open_disputes = dict(session.execute(select(Dispute.gateway, func.count())
                                                 .where(Dispute.state.in_(UNDECIDED_DISPUTES))
                                                 .group_by(Dispute.gateway)).all())
            deadlines = session.execute(select(Dispute.gateway, func.min(Dispute.respond_by))
                                        .where(Dispute.state.in_(sorted(AWAITING_US)), Dispute.respond_by.is_not(None))
                                        .group_by(Dispute.gateway)).all()
            owed = dict(session.execute(select(LedgerEntry.gateway, func.sum(LedgerEntry.shortfall))
                                        .where(LedgerEntry.shortfall != 0).group_by(LedgerEntry.gateway)).all())
        gateways = set(self.deps.gateways) | {row[0] for row in refunds} | set(open_disputes) | set(owed)
        counts = {(gateway, state): count for gateway, state, count, _ in refunds}
        first: dict[str, float] = {}
        for gateway, _, _, created_at in refunds:
            first[gateway] = max(first.get(gateway, 0.0), (now - created_at).total_seconds())
        for gateway in sorted(gateways):
            for state in states:
                in_flight.add_metric([gateway, state], counts.get((gateway, state), 0))
            oldest.add_metric([gateway], max(0.0, first.get(gateway, 0.0)))
            disputes.add_metric([gateway], open_disputes.get(gateway, 0))
            shortfall.add_metric([gateway], int(owed.get(gateway) or 0))
        for gateway, earliest in deadlines:
            respond_by.add_metric([gateway], (earliest - now).total_seconds())
        yield from (in_flight, oldest, disputes, respond_by, shortfall)

    def _events(self):
        """Order events not yet delivered per endpoint: waiting, dead (holding their orders' later events), and
        the age of the oldest one waiting (the delivery lag billing sees)."""
        now = self.deps.clock.now()
        pending = GaugeMetricFamily("recon_event_deliveries_pending", "Order events waiting to be delivered.",
                                    labels=["endpoint"])
        dead = GaugeMetricFamily("recon_event_deliveries_dead", "Order event deliveries whose attempts are spent "
                                 "(each holds its order's later events until replayed).", labels=["endpoint"])
        lag = GaugeMetricFamily("recon_event_delivery_lag_seconds", "Age of the oldest order event waiting to be "
                                "delivered (0 when none).", labels=["endpoint"])
        with self.deps.sessions() as session:
            rows = session.execute(select(EventDelivery.endpoint, EventDelivery.state, func.count(),
                                          func.min(EventDelivery.created_at))
                                   .where(EventDelivery.state.in_(["pending", "dead"]))
                                   .group_by(EventDelivery.endpoint, EventDelivery.state)).all()
        found = {(endpoint, state): (count, oldest) for endpoint, state, count, oldest in rows}
        for endpoint in sorted({e.name for e in self.deps.settings.event_endpoints} | {e for e, _ in found}):
            waiting, oldest = found.get((endpoint, "pending"), (0, None))
            pending.add_metric([endpoint], waiting)
            dead.add_metric([endpoint], found.get((endpoint, "dead"), (0, None))[0])
            lag.add_metric([endpoint], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        yield from (pending, dead, lag)

    def _settlements(self):
        """Settlement rows per gateway and bucket (the ``(gateway, bucket)`` index answers the count), credited
        payments no settlement names past the gateway's delay plus the slack (a count, as
        :func:`worker.services.settlement_match.credited_not_settled` finds them), and freshness: when the newest
        settled transaction we hold settled, and when settlement data last came in (a pulled page, an import)."""
        now = self.deps.clock.now()
        rows = GaugeMetricFamily("recon_settlement_rows", "Settlement rows by matching bucket (new: not matched "
                                 "yet).", labels=["gateway", "bucket"])
        missing = GaugeMetricFamily("recon_settlement_credited_not_settled",
                                    "Credited payments no settlement row names though the gateway's expected delay "
                                    "and the slack have passed.", labels=["gateway"])
        settled_age = GaugeMetricFamily("recon_settlement_last_settled_age_seconds",
                                        "Seconds since the newest settled transaction we hold was settled; absent "
                                        "before the first.", labels=["gateway"])
        received_age = GaugeMetricFamily("recon_settlement_last_received_age_seconds",
                                         "Seconds since settlement data last came in (a page pulled, a report "
                                         "imported); absent before the first.", labels=["gateway"])
        with self.deps.sessions() as session:
            counts = session.execute(select(SettlementRow.gateway, SettlementRow.bucket, func.count())
                                     .group_by(SettlementRow.gateway, SettlementRow.bucket)).all()
            held = {gateway for gateway, _, _ in counts}
            # one gateway at a time: the settled_at index answers each max
            newest = {gateway: session.execute(select(func.max(SettlementRow.settled_at))
                                               .where(SettlementRow.gateway == gateway)).scalar_one()
                      for gateway in sorted(held)}
            received: dict[str, datetime] = {}
            for table, column in ((SettlementPull, SettlementPull.updated_at),
                                  (SettlementImport, SettlementImport.created_at)):
                for gateway, at in session.execute(select(table.gateway, func.max(column)).group_by(table.gateway)):
                    received[gateway] = max(at, received.get(gateway, at))
            late = self._credited_not_settled(session, now)
        found = {(gateway, bucket or "new"): count for gateway, bucket, count in counts}
        for gateway in sorted(held | set(self.deps.gateways)):
            for bucket in SETTLEMENT_BUCKETS:
                rows.add_metric([gateway, bucket], found.get((gateway, bucket), 0))
        for gateway, count in sorted(late.items()):
            missing.add_metric([gateway], count)
        for gateway, at in sorted(newest.items()):
            if at is not None:
                settled_age.add_metric([gateway], max(0.0, (now - at).total_seconds()))
        for gateway, at in sorted(received.items()):
            received_age.add_metric([gateway], max(0.0, (now - at).total_seconds()))
        yield from (rows, missing, settled_age, received_age)

    def _credited_not_settled(self, session, now) -> dict[str, int]:
        """Per gateway with an expected settlement delay: the count of
        :func:`~worker.services.settlement_match.credited_not_settled`'s rows, without loading them (0 while
        nothing of the gateway has settled yet: its reports are not in)."""
        settings, counts = self.deps.settings, {}
        for name, delay_s in settings.settlement_expected_s.items():
            if name not in self.deps.gateways:
                continue
            since = expected_since(name, deps=self.deps, session=session)
            if since is None:
                counts[name] = 0
                continue
            cutoff = now - timedelta(seconds=delay_s + settings.settlement_slack_s)
            counts[name] = session.execute(unsettled_grants(select(func.count()).select_from(LedgerEntry), name,
                                                            since, cutoff)).scalar_one()
        return counts

    @property
    def _postgres(self) -> bool:
        return self.deps.engine.dialect.name == "postgresql"

    def _queues(self):
        client = self.deps.coordination.client
        if client is None or not self.deps.settings.broker_url.startswith(("redis://", "rediss://")):
            return
        ns = self.deps.settings.broker_namespace
        depth = GaugeMetricFamily("recon_queue_depth", "Messages waiting, delayed and dead, per queue.",
                                  labels=["queue", "kind"])
        oldest = GaugeMetricFamily("recon_queue_oldest_message_age_seconds", "Age of the oldest waiting message.",
                                   labels=["queue"])
        dead = GaugeMetricFamily("recon_dead_letters", "Messages in the dead-letter queue.", labels=["queue"])
        now_ms = time.time() * 1000
        for queue in QUEUES:
            depth.add_metric([queue, "ready"], client.llen(f"{ns}:{queue}"))
            depth.add_metric([queue, "delayed"], client.hlen(f"{ns}:{queue}.DQ.msgs"))
            dead.add_metric([queue], client.zcard(f"{ns}:{queue}.XQ"))
            first = client.lindex(f"{ns}:{queue}", 0)
            payload = client.hget(f"{ns}:{queue}.msgs", first) if first else None
            age_s = (now_ms - json.loads(payload)["message_timestamp"]) / 1000 if payload else 0
            oldest.add_metric([queue], max(0.0, age_s))
        yield from (depth, oldest, dead)


def render_metrics(deps: Deps) -> bytes:
    """Everything for one scrape, in the Prometheus text format."""
    state = CollectorRegistry()
    state.register(StateCollector(deps))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        return generate_latest(processes) + generate_latest(state)
    return generate_latest(REGISTRY) + generate_latest(state)
