"""The charts of ``make bench`` (PNG in ``bench/results/``, linked from ``bench/RESULTS.md``).

- ``callbacks-load.png``: credited orders/s and received → credited p99 against offered load, the
  service and its floor on one chart (the saturated, closed-loop point drawn at its credited rate);
- ``memory-rss.png``: worker RSS against checks, when the memory result carries ``samples``.

Each function returns the PNG's path, or None when there is nothing to draw (or no matplotlib).
"""

from __future__ import annotations

from pathlib import Path

from bench.harness import RESULTS

COLOURS = {"service": "tab:red", "floor": "tab:blue"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_chart(callbacks: dict, out: Path = RESULTS / "callbacks-load.png") -> Path | None:
    plt = _pyplot()
    if plt is None or "floor" not in callbacks or "service" not in callbacks:
        return None
    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in ("service", "floor"):
        curve = callbacks[name]["curve"]
        xs = [c["offered_per_s"] if c["offered_per_s"] is not None else c["credited_per_s"] for c in curve]
        rate_ax.plot(xs, [c["credited_per_s"] for c in curve], "o-", color=COLOURS[name], label=name)
        p99_ax.plot(xs, [c["p99_ms"] for c in curve], "o-", color=COLOURS[name], label=name)
        sat = [(x, c) for x, c in zip(xs, curve, strict=True) if c.get("saturated")]
        for x, c in sat:
            rate_ax.annotate("sustained", (x, c["credited_per_s"]), textcoords="offset points", xytext=(-20, 6),
                             fontsize=8, color=COLOURS[name])
            p99_ax.annotate("sustained (backlog)", (x, c["p99_ms"]), textcoords="offset points", xytext=(-60, 6),
                            fontsize=8, color=COLOURS[name])
    top = max(c["credited_per_s"] for n in ("service", "floor") for c in callbacks[n]["curve"])
    rate_ax.plot([0, top], [0, top], ":", color="grey", linewidth=1, label="credited = offered")
    fixed = callbacks.get("fixed_load_per_s")
    for ax in (rate_ax, p99_ax):
        if fixed:
            ax.axvline(fixed, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("offered load (orders/s; 3 webhooks each)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    rate_ax.set_ylabel("credited orders/s")
    rate_ax.set_title("throughput")
    p99_ax.set_ylabel("received → credited p99 (ms, log)")
    p99_ax.set_yscale("log")
    p99_ax.set_title("latency" + (f" (dashed: the goal's fixed load, {fixed}/s)" if fixed else ""))
    fig.suptitle(f"webhook → credit, service vs floor ({callbacks.get('clients', '?')} senders, "
                 f"{callbacks.get('web_workers', 1)} web process(es))", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _rss_series(memory: dict) -> dict[str, list[tuple[float, float]]]:
    """Every ``samples`` list of [checks, rss_kb] (or [checks, {pid: rss_kb}]) found in the memory result."""
    series: dict[str, list[tuple[float, float]]] = {}

    def walk(node, label: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "samples" and isinstance(value, list):
                    for sample in value:
                        if not (isinstance(sample, list | tuple) and len(sample) == 2):
                            continue
                        checks, rss = sample
                        if isinstance(rss, dict):
                            for pid, kb in rss.items():
                                series.setdefault(f"{label} pid {pid}".strip(), []).append((checks, kb))
                        elif isinstance(rss, int | float):
                            series.setdefault(label or "worker", []).append((checks, rss))
                else:
                    walk(value, f"{label} {key}".strip() if isinstance(value, dict) else label)
        elif isinstance(node, list):
            for item in node:
                walk(item, label)

    walk(memory, "")
    return {k: v for k, v in series.items() if v}


def memory_chart(memory: dict, out: Path = RESULTS / "memory-rss.png") -> Path | None:
    plt = _pyplot()
    series = _rss_series(memory or {})
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, points in series.items():
        points = sorted(points)
        ax.plot([c for c, _ in points], [kb / 1024 for _, kb in points], "-", label=label)
    ax.set_xlabel("checks")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("worker RSS against checks (memory run)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def draw(results: dict) -> dict[str, Path]:
    """Every chart the results allow; name → PNG path."""
    b = results.get("benchmarks", {})
    drawn = {}
    if isinstance(b.get("callbacks"), dict) and "floor" in b["callbacks"]:
        path = load_chart(b["callbacks"])
        if path:
            drawn["callbacks"] = path
    if isinstance(b.get("memory"), dict):  # the full 200,000-check run when one was kept, else this run's
        path = memory_chart(b["memory"].get("full_run") or b["memory"])
        if path:
            drawn["memory"] = path
    return drawn
