"""Write the results: ``bench/results/latest.json`` and ``latest.md`` (git-ignored, every run) and
``bench/RESULTS.md`` (the same Markdown, committed), and print the goal table."""

from __future__ import annotations

import json
from pathlib import Path

from bench.harness import RESULTS, ROOT

COMMITTED = ROOT / "bench" / "RESULTS.md"


def costs_lines(c: dict | None) -> list[str]:
    """The webhook path's items (bench/costs.py), for the profiles section."""
    if not c:
        return []
    one, batched = c["statements"]["one_by_one"], c["statements"]["batched"]
    st, msg, req = c["per_statement"], c["per_message"], c["per_request"]
    return [f"- statements per credited order (web + worker): one by one (low load) {one.get('web statements', 0)} + "
            f"{one.get('worker statements', 0)} with {one.get('web commits', 0)} + {one.get('worker commits', 0)} "
            f"commits; an order's three rows applied together (a backlog) {batched.get('web statements', 0)} + "
            f"{batched.get('worker statements', 0)} with {batched.get('web commits', 0)} + "
            f"{batched.get('worker commits', 0)} commits (the floor: 3 + about 15, with 3 + 3).",
            f"- CPU per statement: a primary-key read of an order through the ORM {st['orm_read_ms']} ms vs bare "
            f"psycopg {st['psycopg_read_ms']} ms; an inbox insert {st['orm_insert_ms']} ms vs "
            f"{st['psycopg_insert_ms']} ms ({st['calls']:,} calls each).",
            f"- Dramatiq per message (no-op actor, this run's Redis, {', '.join(msg['middleware'])}): send "
            f"{msg['send_ms']} ms, consume + ack {msg['consume_ms']} ms; ×3 messages per order = "
            f"{3 * (msg['send_ms'] + msg['consume_ms']):.2f} ms.",
            f"- FastAPI per webhook-shaped request in-process (thread-pool handler): {req['fastapi_ms']} ms vs a bare "
            f"ASGI callable {req['bare_asgi_ms']} ms."]


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "**yes**" if value else "**NO**"
    return str(value).replace("|", "\\|").replace("\n", " ")


def goal_rows(results: dict) -> list[dict]:
    rows = []
    for name in ("callbacks", "sweep", "recheck", "due_query", "memory", "settlement"):
        part = results.get("benchmarks", {}).get(name)
        if isinstance(part, dict):
            rows += part.get("goals", [])
    return rows


def table_md(rows: list[dict]) -> str:
    lines = ["| benchmark | goal | measured | baseline (same run) | ratio | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        keys = ("benchmark", "goal", "measured", "baseline", "ratio", "target", "met")
        lines.append("| " + " | ".join(_cell(r.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def table_text(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append(f"{'MET ' if r.get('met') else 'MISS'}  {r['benchmark']}: {r['goal']}\n"
                   f"      measured: {r['measured']}\n      baseline: {r['baseline']}\n"
                   f"      ratio {r.get('ratio')} (target {r.get('target')})")
    return "\n".join(out)


def callbacks_md(c: dict) -> list[str]:
    """Section 1: the service against its floor."""
    from bench.floor import LEAVES_OUT

    s, f = c["service"], c["floor"]

    def row(name: str, p: dict) -> str:
        cpu = p["cpu_ms_per_credited"]
        offered = f"{p['offered_per_s']}/s" if p["offered_per_s"] else "as fast as they go"
        return (f"| {name} | {p['label']} | {offered} | {p['orders']:,} | {p['credited_per_s']} | "
                f"{p['received_to_credited_p50_ms']} | {p['received_to_credited_p99_ms']} | {cpu['web']} | "
                f"{cpu['workers']} | {cpu['total']} | {p.get('messages_per_order', 3)} | {p['http']['http_p99_ms']} |")

    out = ["## 1. Webhook → credit: the service against its floor", "",
           f"{c['clients']} senders (`bench/loadgen.py`: one keep-alive connection each, pre-built requests), each "
           "order's 3 signed webhooks (payment.authorized, payment.captured, order.paid, the simulator's exact "
           "bytes) one after another; both systems on the same Postgres server (scratch databases of their own) "
           "and the run's private Redis, one system at a time.", "",
           f"- **service**: {s['layout']}; credited each exactly once: {_cell(s['credited_exactly_once'])}.",
           f"- **floor**: {f['layout']} (`bench/floor.py`, `bench/floor_worker.py`); credited each exactly once: "
           f"{_cell(f['credited_exactly_once'])}.",
           f"- web processes: {c['web_workers']} for both (`python -m bench --web-workers N`).",
           f"- fixed load for the latency goal: {c['fixed_load_per_s']} orders/s (half the service's sustained rate), "
           "open loop (order k due at k / rate whatever the answers do).",
           *([f"- warm-up: each system first ran as fast as it goes for {s['warm_up']['seconds']:g} s, unmeasured "
              f"(service {s['warm_up']['orders']:,} orders, floor {f['warm_up']['orders']:,}): a cold start cost the "
              "service a quarter of its sustained rate."] if "warm_up" in s and "warm_up" in f else []), "",
           "| system | phase | offered | orders | credited/s | p50 ms | p99 ms | CPU ms/order web | workers | total "
           "| messages/order | HTTP p99 ms |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, sysres in (("service", s), ("floor", f)):
        out += [row(name, p) for p in [sysres["sustained"], sysres["fixed"], *sysres["phases"]]]
    out += ["", "Received → credited: from the insert of the order's first capture-carrying inbox row to the insert "
            "of its ledger row, both stamped by Postgres's `clock_timestamp()` in triggers the benchmark adds to "
            "both systems' tables (`bench/credit_path.py` `stamp_sql`). The sustained phase's latency is behind "
            "its own backlog (the senders outrun the workers); CPU is utime + stime of the web and worker process "
            "trees over the phase, drain included, per credited order. Messages/order: broker messages the web "
            "sent per order (`recon_inbox_messages_total`): a payment's later webhooks send none while one about it "
            "is queued (the floor sends one per webhook).", ""]
    out += profile_md(s.get("profile"))
    if "pgbench" in c.get("baseline", {}):
        pg = c["baseline"]["pgbench"]
        out += [f"For reference, pgbench TPC-B on the same server: {pg['tps']:.0f} tps (scale {pg['scale']}, "
                f"-c {pg['clients']} -j 2 -T {pg['seconds']}).", ""]
    out += ["What the floor leaves out that the service must do:", ""] + [f"- {x}" for x in LEAVES_OUT] + [""]
    return out


def profile_md(p: dict | None) -> list[str]:
    """Where the service's CPU per order goes, from py-spy's samples during a sustained phase of its own."""
    if not p or "web" not in p:
        return [f"(no CPU profile: {p['error']})", ""] if p and "error" in p else []
    cpu = p["cpu_ms_per_credited"]
    out = [f"Where the service's CPU per order goes: py-spy `--gil` samples (Python holding the GIL: CPU, not waits) "
           f"of the web ({p['web']['samples']:,} samples) and worker ({p['workers']['samples']:,}) process trees in a "
           f"sustained phase of their own ({cpu['web']} + {cpu['workers']} ms per order in it), shares × that CPU "
           "(`bench/spy_layers.py`):", ""]
    for view, title in (("by_step", "step"), ("by_library", "library (innermost frame)")):
        out += [f"| {title} | web ms/order | workers ms/order |", "|---|---|---|"]
        names = list(dict.fromkeys([*p["web"][view], *p["workers"][view]]))
        rows = [(n, p["web"][view].get(n, 0) * cpu["web"], p["workers"][view].get(n, 0) * cpu["workers"])
                for n in names]
        for name, web, workers in sorted(rows, key=lambda r: -(r[1] + r[2])):
            if web + workers >= 0.05:
                out.append(f"| {name} | {web:.2f} | {workers:.2f} |")
        out.append("")
    return out


def markdown(results: dict) -> str:
    rows = goal_rows(results)
    run = results["run"]
    b = results.get("benchmarks", {})
    parts = [
        "# Benchmark results",
        "",
        f"`make bench` (`python -m bench {' '.join(run['argv'])}`), {run['started_at']}, "
        f"{run['duration_s']:.0f} s, {run['machine']['cpus']} CPUs, git {run.get('git', '?')}. "
        "Every ratio is against a baseline measured in the same run on the same machine. "
        "Timing thresholds live here, never in the test suite.",
        "",
        f"**Machine during the run:** {run['busy_verdict']}",
        "",
        table_md(rows),
        "",
    ]
    charts = results.get("charts", {})
    if charts:
        parts += [" ".join(f"![{name}](results/{Path(path).name})" for name, path in charts.items()), ""]
    if "callbacks" in b and isinstance(b["callbacks"], dict) and "credited_per_s" in b["callbacks"]:
        c = b["callbacks"]
        parts += ["## 1. Callback throughput", "",
                  f"- {c['orders']:,} orders, {c['webhooks']:,} signed webhooks (payment.authorized, payment.captured, "
                  f"order.paid per order) from {c['clients']} concurrent httpx clients to `recon web`; "
                  f"`dramatiq worker.main:start --processes {c['worker']['processes']} "
                  f"--threads {c['worker']['threads']}`.",
                  f"- credited {c['credited']:,} orders "
                  f"({'each exactly once' if c['credited_exactly_once'] else 'NOT exactly once'}) "
                  f"at **{c['credited_per_s']} orders/s**; webhooks accepted at {c['webhooks_per_s']}/s "
                  f"(HTTP p50 {c['http']['http_p50_ms']} ms, p99 {c['http']['http_p99_ms']} ms).",
                  f"- received → credited: p50 {c['received_to_credited_p50_ms']} ms, "
                  f"p99 {c['received_to_credited_p99_ms']} ms.",
                  f"- CPU: web {c['cpu_s']['web']} s, workers {c['cpu_s']['workers']} s during the run.",
                  f"- pgbench: {c['baseline']['pgbench']['tps']:.0f} tps "
                  f"(TPC-B, scale {c['baseline']['pgbench']['scale']}, "
                  f"-c {c['baseline']['pgbench']['clients']} -j 2 -T {c['baseline']['pgbench']['seconds']}).", ""]
    if "callbacks" in b and isinstance(b["callbacks"], dict) and "floor" in b["callbacks"]:
        parts += callbacks_md(b["callbacks"])
    if "sweep" in b and isinstance(b["sweep"], dict) and "checked_per_s" in b["sweep"]:
        s = b["sweep"]
        capped = "" if s["finished"] else f"; the run stopped at its {s['max_seconds']:.0f} s cap"
        parts += ["## 2. Sweep throughput", "",
                  f"- {s['orders']:,} due orders, simulator latency {s['simulator_latency_ms']} ms per request, "
                  f"R = {s['rate_limit_per_s']}/s (sweeps get × {s['sweep_share']}), workers "
                  f"{s['worker']['processes']} × {s['worker']['threads']} threads; "
                  "scheduler, workers and web as in the Procfile.",
                  f"- checked {s['checked']:,} in {s['check_window_s']} s: **{s['checked_per_s']} orders/s** "
                  f"(ideal bound {s['bound_per_s']}/s){capped}.",
                  f"- credited by the sweep {s['credited_by_sweep']} "
                  f"(expected {s['credited_expected']} among the checked "
                  f"share); states after: {s['states']}; polls per untouched order {s['polls_per_untouched_order']}.",
                  f"- CPU seconds during the sweep: {s['cpu_s']}.",
                  f"- official SDK, sequential: {s['baseline']['sdk_sequential']['orders_per_s']} orders/s over "
                  f"{s['baseline']['sdk_sequential']['orders']} orders (one request each, as our check makes).", ""]
        r = b.get("recheck") or s.get("recheck")
        if r:
            parts += ["## 3. Recheck latency under load", "",
                      f"- {r['requests']} rechecks (`wait=true`) at {r['rate_target_per_s']}/s during the sweep: "
                      f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms; statuses {r['statuses']}; "
                      f"outcomes {r['outcomes']}.",
                      *([f"- the check's own request (`GET /v1/orders/{{id}}/payments`) sent straight to the simulator "
                         f"at the same rate meanwhile, from a process of its own: p50 {rt['p50_ms']} ms, p99 "
                         f"{rt['p99_ms']} ms over {rt['requests']} requests; a recheck's p99 beyond it: "
                         f"{round(r['p99_ms'] - rt['p99_ms'], 1)} ms."]
                        if (rt := r.get("round_trip")) and rt.get("p99_ms") and r.get("p99_ms") else []), ""]
    if "due_query" in b and isinstance(b["due_query"], dict) and "small" in b["due_query"]:
        d = b["due_query"]
        parts += ["## 4. Due-orders claim at scale", ""]
        for key in ("small", "large"):
            m = d[key]
            parts += [f"### {m['orders']:,} orders ({m['in_due_index']:,} in `ix_orders_due`, {m['due']:,} due; "
                      f"index {m['index_size']}, table {m['table_size']})", "",
                      f"claim (SELECT … FOR UPDATE SKIP LOCKED + UPDATE, limit {m['limit']}, {m['claimed']} claimed): "
                      f"median {m['median_ms']} ms, p90 {m['p90_ms']} ms over {m['repeats']} runs.", "",
                      "```", *m["explain"], "```", ""]
        if "large_full_budget" in d:
            m = d["large_full_budget"]
            parts += [f"For information, the full round budget ({m['limit']}) on {m['orders']:,} orders: "
                      f"{m['claimed']} claimed, median {m['median_ms']} ms, p90 {m['p90_ms']} ms "
                      "(cost is linear in rows claimed).", ""]
    if "memory" in b and isinstance(b["memory"], dict):
        m = b["memory"]
        parts += ["## 5. Memory", ""]
        if m.get("full_run"):
            f = m["full_run"]
            parts += [f"- check path, measured to the goal (`make bench-memory`, {f.get('finished_at', '?')}, git "
                      f"{f.get('git', '?')}): {f['checks']:,} checks in one worker process (16 threads, simulator at "
                      f"zero latency) in {f['seconds']:.0f} s, {f['worker_cpu_ms_per_check']} ms of worker CPU per "
                      f"check; RSS {f['rss_kb']['boot'] // 1024} MB at boot, {f['rss_kb']['warm'] // 1024} MB after "
                      f"{f['rss_kb']['warm_at']:,} checks, {f['rss_kb']['end'] // 1024} MB at the end: "
                      f"**{f['growth_mb']:+.1f} MB after warm-up** (the chart). The earlier +239 MB per million was "
                      "warm-up extrapolated, plus database connections opened and closed per check while threads "
                      "outnumbered the pool (fixed: `RECON_DB_POOL_SIZE`); tracemalloc showed no growing site."]
        if m.get("claim_path"):
            c = m["claim_path"]
            parts += [f"- claim path, measured: {c['claimed']:,} orders claimed by `sweep_due_orders` in "
                      f"{c['rounds']} rounds of ≤ {c['round_budget']} ({c['seconds']} s; round median first 10 "
                      f"{c['round_ms_first10_median']} ms, last 10 {c['round_ms_last10_median']} ms); RSS "
                      f"{c['rss_kb']['start'] // 1024} → {c['rss_kb']['end'] // 1024} MB."]
        if m.get("check_path"):
            c = m["check_path"]
            parts += [f"- check path, measured over {c['checks']:,} checks by {c['processes']} worker processes and "
                      "extrapolated to 1,000,000 checks per process:"]
            parts += [f"  - pid {r['pid']}: boot {r['boot_mb']} MB, mid-run {r['warm_mb']} MB, end {r['end_mb']} MB; "
                      f"{r['kb_per_check_after_warmup']} kB/check over the second half → projected "
                      f"{r['projected_growth_1m_checks_mb']:+} MB" for r in c["per_process"]]
        parts.append("")
    if "settlement" in b and isinstance(b["settlement"], dict) and "service" in b["settlement"]:
        from bench import settlement

        parts += settlement.markdown(b["settlement"])
    if "profile" in b and isinstance(b["profile"], dict) and "webhook_path" in b["profile"]:
        p = b["profile"]
        w, br, rc = p["webhook_path"], p["breaker"], p.get("recheck_path")
        parts += ["## Profiles", "",
                  f"- webhook → credit path (pyinstrument, {w['events_profiled']} events in-process; full tree in "
                  f"`{w['profile_file']}`). Our functions by inclusive share:", ""]
        parts += [f"  - {h['function']}: {h['share']:.0%}" for h in w["hot_spots"]]
        parts += ["", f"- in-process CPU per webhook (no HTTP, no broker; {w['events_measured']} events stored, then "
                  f"applied): store {w['store_ms_cpu']} ms + apply {w['process_ms_cpu']} ms.",
                  *costs_lines(w.get("costs")),
                  *([f"- recheck path in-process against the simulator without latency ({rc['rechecks']} rechecks; "
                     f"`{rc['profile_file']}`): {rc['ms_wall_per_recheck']} ms wall, {rc['ms_cpu_per_recheck']} ms CPU "
                     "per recheck (CPU includes the in-process simulator's two answers). Our functions by inclusive "
                     "share: " + "; ".join(f"{h['function']} {h['share']:.0%}" for h in rc["hot_spots"][:8]) + "."]
                    if rc else []),
                  f"- `GuardedGateway` with {br['threads']} threads and a {br['latency_s'] * 1000:.0f} ms gateway: "
                  f"{br['sweep_priority_calls_per_s']} calls/s at sweep priority (through pybreaker) vs "
                  f"{br['support_priority_calls_per_s']} calls/s at support priority "
                  f"(ideal {br['ideal_calls_per_s']}).", ""]
    if results.get("findings"):
        parts += ["## Findings", ""] + [f"{i}. {f}" for i, f in enumerate(results["findings"], 1)] + [""]
    parts += ["## Machine snapshots", "", "| when | load (1/5/15 min) | other busy processes |", "|---|---|---|"]
    parts += [f"| {s['label']} | {' / '.join(f'{x:.1f}' for x in s['loadavg'])} "
              f"| {_cell(', '.join(s['others_busy']) or 'none')} |"
              for s in run["snapshots"]]
    return "\n".join(parts) + "\n"


def write(results: dict) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    from bench import charts

    results["charts"] = {name: str(path) for name, path in charts.draw(results).items()}
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    (RESULTS / "latest.md").write_text(text)
    COMMITTED.write_text(text)
    return table_text(goal_rows(results))


def main(path: Path = RESULTS / "latest.json") -> None:
    """Re-render the Markdown from a saved JSON (``python -m bench.report``), with the last
    ``make bench-memory`` run."""
    from bench import memory

    results = json.loads(path.read_text())
    memory.attach_full_run(results)
    print(write(results))


if __name__ == "__main__":
    main()
