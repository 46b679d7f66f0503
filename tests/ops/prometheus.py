"""A real Prometheus for the ops tests (:class:`PrometheusServer`; ``tests/e2e/test_procfile_prometheus.py``
has one scrape a running stack). Here: every series the service exports, backfilled with samples
(``promtool tsdb create-blocks-from openmetrics``), served by the ``prometheus`` binary, and
queried through its HTTP API. Prometheus parses each expression; nothing here reads PromQL.

Which metrics an expression uses is asked of Prometheus too: each series name gets a time slot of
its own (``SLOT`` apart, further than any range, offset and look-back of our queries), and a last
slot holds every series at once. An expression evaluated at the end of a series' slot loads
samples (``stats=all``: ``totalQueryableSamples``) only if it selects that series; at the end of
the last slot it must return data.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
#: Time between two slots, how long each slot has samples, and how often.
SLOT_S, WINDOW_S, STEP_S = 2 * 3600, 20 * 60, 30
#: What Grafana puts in for its variables when the dashboard shows every gateway.
GRAFANA_VARIABLES = {"gateway": ".*", "__rate_interval": "2m", "__interval": "1m", "__range": "1h"}
#: Label values the samples carry: each metric gets every combination of the values of its labels.
#: Taken from the code where it has a list; the rest are the values the code writes.
HISTOGRAM_LE = ("0.5", "5.0", "+Inf")
#: Gauges sit at about 1,000, above every alert threshold but these: an age alerted on past 2 days, and a
#: deadline alerted on when it comes closer than a day (1,000 s away is that too).
GAUGE_VALUES = {"recon_refund_oldest_in_flight_seconds": 3 * 86_400}


def label_values() -> dict[str, tuple[str, ...]]:
    from ops.exposition import AGE_BUCKETS, SETTLEMENT_BUCKETS
    from worker.domain.dispute_state import DisputeState
    from worker.domain.order_state import OrderState, Plan, Source
    from worker.domain.refund_state import RefundState
    from worker.queues import QUEUES

    states = (*OrderState, *RefundState, *DisputeState)
    return {
        "gateway": ("razorpay", "payglocal"),
        "state": tuple(dict.fromkeys(state.value for state in states)),  # orders', refunds' and disputes'
        "age": tuple(name for name, _ in AGE_BUCKETS),
        "queue": tuple(QUEUES),
        "kind": ("webhook", "callback", "order", "inbox", "ready", "delayed", "refund", "dispute", "chargeback"),
        "origin": ("support", "review", "duplicate", "gateway", "auto"),
        "outcome": ("accepted", "duplicate", "bad_signature", "rejected", "delivered", "failed", "dead"),
        "endpoint": ("orders", "payments"),
        "status_class": ("2xx", "4xx", "5xx", "error"),
        "source": (*(source.value for source in Source), "support", "local", "remote"),
        "result": ("decided", "deferred", "skipped"),
        "reason": ("abandoned", "amount_mismatch", "BadMessage"),
        "plan": tuple(plan.value for plan in Plan),
        "actor": ("check_order", "recheck_order", "process_inbox_event", "verify_payment"),
        "bucket": SETTLEMENT_BUCKETS,
    }


def require(binary: str) -> str:
    """The path of ``binary``; a missing one fails the test (never skips): CI's ``make test`` installs it."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"`{binary}` is not installed: run `make tools` (Debian's prometheus package, "
                    f"`apt-get install prometheus`); the ops tests need the real Prometheus tools", pytrace=False)
    return path


@dataclass(frozen=True)
class Family:
    """One exported metric: its name as registered, Prometheus type and label names."""

    name: str
    type: str
    labels: tuple[str, ...]

    @property
    def series(self) -> tuple[str, ...]:
        """The series names it is exposed as (counters as ``_total``, histograms in three parts)."""
        if self.type == "counter":
            return (f"{self.name.removesuffix('_total')}_total",)
        if self.type == "histogram":
            return tuple(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        return (self.name,)


def process_families() -> list[Family]:
    """The counters and histograms of ``worker.metrics``, as the real objects declare them."""
    from prometheus_client.metrics import MetricWrapperBase

    import worker.metrics

    families = []
    for obj in vars(worker.metrics).values():
        if isinstance(obj, MetricWrapperBase):
            [described] = obj.describe()
            # prometheus_client has no public accessor for a metric's label names.
            families.append(Family(described.name, described.type, tuple(obj._labelnames)))
    return families


def scrape_time_families(deps) -> list[Family]:
    """The gauges ``ops.exposition.StateCollector`` yields at scrape time, read from the real collector."""
    from ops.exposition import StateCollector

    return [Family(metric.name, metric.type, tuple(getattr(metric, "_labelnames", ())))
            for metric in StateCollector(deps).collect()]


@dataclass
class Samples:
    """The series to backfill: per series name its slot and, in every slot, one sample per step."""

    families: list[Family]
    start_s: int
    values: dict[str, tuple[str, ...]] = field(default_factory=label_values)

    @property
    def series_names(self) -> list[str]:
        return sorted({name for family in self.families for name in family.series})

    def slot_end(self, index: int) -> float:
        return self.start_s + index * SLOT_S + WINDOW_S

    @property
    def all_slot(self) -> int:
        return len(self.series_names)

    def _label_sets(self, family: Family, series: str) -> list[dict[str, str]]:
        unknown = [label for label in family.labels if label not in self.values]
        assert not unknown, f"{family.name}: no sample values for labels {unknown}: add them to label_values()"
        names = list(family.labels) + (["le"] if series.endswith("_bucket") else [])
        choices = [self.values[label] if label != "le" else HISTOGRAM_LE for label in names]
        return [dict(zip(names, combination, strict=True)) for combination in itertools.product(*choices)]

    def metrics(self) -> Iterator[Metric]:
        """Each series name as one OpenMetrics family of type unknown (Prometheus does not need the
        type to query), so that every name can sit in a slot of its own."""
        slots = {name: index for index, name in enumerate(self.series_names)}
        steps = range(WINDOW_S // STEP_S + 1)
        for family in self.families:
            for series in family.series:
                metric = Metric(series, f"{family.name} ({family.type})", "unknown")
                for labels in self._label_sets(family, series):
                    le = labels.get("le")
                    weight = HISTOGRAM_LE.index(le) + 1 if le else 1
                    for slot in (slots[series], self.all_slot):
                        for step in steps:
                            at = self.start_s + slot * SLOT_S + step * STEP_S
                            # counters rise (rates are non-zero); gauges trip every alert (GAUGE_VALUES)
                            gauge = GAUGE_VALUES.get(series, 1_000) + step % 3
                            value = (step + 1) * weight if family.type in ("counter", "histogram") else gauge
                            metric.add_sample(series, labels, value, timestamp=at)
                yield metric

    def openmetrics(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)


class _Collector:
    def __init__(self, samples: Samples):
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        return self.samples.metrics()


class QueryError(Exception):
    """Prometheus refused the expression (its ``error``, e.g. a parse error)."""


class PrometheusServer:
    """A ``prometheus`` server on a free port over ``config`` (its YAML) and a data directory of its own."""

    def __init__(self, workdir: Path, config: str = "global: {}\n"):
        self.workdir, self.config = workdir, config
        self.process: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self):
        prometheus = require("prometheus")
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                pytest.fail(f"prometheus did not start: {self.log()}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text()[-2000:]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def api(self, path: str, **params: str) -> dict:
        """``GET /api/v1/<path>``: its ``data`` (a refusal raises :class:`QueryError`)."""
        return self._call(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", None)

    def query(self, expr: str, at: float | None = None) -> dict:
        """``/api/v1/query`` (at ``at``, else now) with statistics: ``{"result": [...], "samples": n}``."""
        params = {"query": expr, "stats": "all", **({"time": f"{at:.3f}"} if at is not None else {})}
        data = self._call(f"{self.url}/api/v1/query", urllib.parse.urlencode(params).encode())
        return {"result": data["result"], "samples": data.get("stats", {}).get("samples", {}).get(
            "totalQueryableSamples", 0)}

    @staticmethod
    def _call(url: str, body: bytes | None) -> dict:
        try:
            with urllib.request.urlopen(url, data=body, timeout=30) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as exc:
            reply = json.load(exc)
        if reply.get("status") != "success":
            raise QueryError(f"{reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]


class Prometheus(PrometheusServer):
    """A ``prometheus`` server over backfilled blocks of :class:`Samples` (nothing to scrape)."""

    def __init__(self, samples: Samples, workdir: Path):
        super().__init__(workdir)
        self.samples = samples
        self._checks: dict[str, Check] = {}

    def __enter__(self) -> Prometheus:
        promtool = require("promtool")
        source = self.workdir / "samples.om.txt"
        source.write_bytes(self.samples.openmetrics())
        created = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                                  str(self.workdir / "data")], capture_output=True, text=True, timeout=300)
        assert created.returncode == 0, created.stdout + created.stderr
        return super().__enter__()

    def check(self, expr: str) -> Check:
        """Does Prometheus accept ``expr``, does it return data, and which series does it select?"""
        if expr not in self._checks:
            self._checks[expr] = self._check(expr)
        return self._checks[expr]

    def _check(self, expr: str) -> Check:
        try:
            final = self.query(expr, self.samples.slot_end(self.samples.all_slot))
        except QueryError as exc:
            return Check(expr, error=str(exc))
        used = {name for index, name in enumerate(self.samples.series_names)
                if self.query(expr, self.samples.slot_end(index))["samples"] > 0}
        labels = {label for series in final["result"] for label in series.get("metric", {})}
        return Check(expr, has_data=bool(final["result"]), used=used, result_labels=labels)


@dataclass
class Check:
    expr: str
    error: str | None = None
    has_data: bool = False
    used: set[str] = field(default_factory=set)
    #: Label names on the result series (what an alert would carry).
    result_labels: set[str] = field(default_factory=set)

    def problems(self) -> list[str]:
        if self.error:
            return [f"Prometheus refuses {self.expr!r}: {self.error}"]
        problems = []
        if not self.used:
            problems.append(f"selects no series the service exports: {self.expr!r}")
        if not self.has_data:
            problems.append(f"returns no data although every exported series has samples: {self.expr!r}")
        return problems


def grafana_expr(expr: str, variables: dict[str, str] = GRAFANA_VARIABLES) -> str:
    """The expression as Grafana sends it: ``$name`` and ``${name}`` replaced by their values."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    return expr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
