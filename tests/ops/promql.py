"""Helpers for the ops tests: the metric names the service defines, and the metric names a PromQL
expression uses (a small lexer, enough for the alert rules and the dashboard)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPOSITION = ROOT / "ops" / "exposition.py"

#: PromQL functions and aggregation operators allowed in our expressions (a typo is an error).
FUNCTIONS = frozenset("""
abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min count
count_over_time count_values day_of_month day_of_week day_of_year days_in_month delta deriv exp floor group
histogram_quantile holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10
log2 max max_over_time min min_over_time minute month predict_linear present_over_time quantile
quantile_over_time rate resets round scalar sgn sort sort_desc sqrt stddev stddev_over_time stdvar
stdvar_over_time sum sum_over_time time timestamp topk vector year
""".split())
#: Keywords that may stand where a metric name could.
KEYWORDS = frozenset("and or unless bool offset inf nan group_left group_right".split())
_MODIFIER = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def defined_metric_names() -> set[str]:
    """Every series name the service exposes: the process metrics of ``worker.metrics`` (counters
    as ``_total``, histograms as ``_bucket``/``_sum``/``_count``) and the scrape-time gauges of
    ``ops/exposition.py`` (``GaugeMetricFamily("name", …)``)."""
    from prometheus_client.metrics import MetricWrapperBase

    import worker.metrics

    names: set[str] = set()
    for obj in vars(worker.metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    gauges = re.findall(r'GaugeMetricFamily\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', EXPOSITION.read_text())
    assert gauges, "no GaugeMetricFamily found in ops/exposition.py"
    return names | set(gauges)


def _strip(expr: str) -> str:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = _MODIFIER.sub(" ", expr)  # by (…), on (…), group_left (…)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    return re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects. Raises ValueError on unknown functions and on
    ``__name__`` matchers (which would hide a metric name from this check)."""
    if "__name__" in expr:
        raise ValueError(f"__name__ matchers are not allowed: {expr}")
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", _strip(expr)):
        word, call = match.group(1), match.group(2)
        if call:
            if word not in FUNCTIONS:
                raise ValueError(f"unknown PromQL function {word!r} in: {expr}")
        elif word.lower() not in KEYWORDS:
            names.add(word)
    return names


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (…)``/``without (…)``/``on (…)`` clauses."""
    labels: set[str] = set()
    for _, inner in _MODIFIER.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
        labels.update(label.strip() for label in inner.split(",") if label.strip())
    return labels
