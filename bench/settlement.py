"""Benchmark 6: matching 1,000,000 settlement rows (issue 16 "Tests and scale"), time and memory, against a plain
``COPY`` of the same rows in the same run. Goals: ingest + match within 3 × of the COPY; memory flat.

In a scratch database of its own (migrated to head), set up by ``COPY`` and not timed: N PayGlocal orders, their
captured ``gateway_payments``, ledger grants and some refunds, and the settlement report of those N transactions as
the simulator writes it (``simulator/payglocal/settlements.py``: every field quoted, ``DD/MM/YYYY`` dates, signed
amounts in major units), a CSV file of N rows. The mix (per 1,000 rows) makes matching find every bucket:

- 937 sales of credited payments → ``settled_credited``;
- 10 sales whose gross differs from the payment's amount → ``amount_mismatch``;
- 1 sale of a payment never credited → ``settled_not_credited`` (its order is marked for a recheck);
- 1 sale of a payment fully refunded before any credit → ``settled_refunded``;
- 5 sales of payments we do not know → ``unmatched``;
- 40 refunds processed on our side → ``deduction_reversed``, 6 still pending → ``deduction_not_reversed``.

Timed, one after the other, each after a ``CHECKPOINT``:

- **baseline**: a plain ``COPY`` of the same N rows (the 18 columns the service stores, ``raw`` the same JSON text)
  from a file written beforehand into ``settlement_rows_copy`` (``LIKE settlement_rows INCLUDING ALL``: the same
  indexes and unique constraint), committed;
- **service**, in a fresh process (``python -m bench.settlement service``) so that its RSS is its own: the real
  ingest path for a report file, ``worker.services.settlement_import.import_report`` (SHA-256 of the file, CSV
  parsed through the declared mapping, ``settlement_store.store_all``: chunks of 5,000 rows COPY'd into a
  temporary table and inserted already matched by a writer thread while the next chunk is parsed, one
  transaction), then ``worker.services.settlement_match.match(deps=...)`` (the set-wise MATCH of the rows left
  in buckets that can still move, then the rechecks). VmRSS is read
  after each batch (``progress``) and every 20 ms by a sampler thread. Each phase also reports the process's CPU
  and its Postgres backend's (``/proc/<pid>/stat``), which says where the time went.

Checked: the buckets against the mix, and a 1 % sample of the COPY's rows against the service's (every stored
column but ``received_at``). Goals: (ingest + match) / COPY ≤ 3; peak RSS growth over the run ≤ 50 MB (the claim
path's bound) from the RSS after start-up (imports, ``build_deps``, one query). ``python -m bench.settlement
--rows N`` runs this benchmark alone (``bench/results/settlement.json``); ``bench/settlement_variants.py`` measures
alternatives to the service code.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench import harness
from bench.harness import log

MB = 1024
GATEWAY = "payglocal"
RSS_GOAL_MB = 50
RATIO_GOAL = 3.0
#: The report's columns, as the simulator writes them.
REPORT_COLUMNS = ("Transaction Date", "Transaction Type", "GID", "Original GID", "Merchant Txn Id",
                  "Merchant Unique Id", "Currency", "Gross Amount", "Fee", "Tax", "Net Amount", "Settlement Date",
                  "Settlement Id", "UTR")
#: What ``settlement_store.store`` inserts, in its order.
STORE_COLUMNS = ("gateway", "kind", "entity_id", "amount_minor", "currency", "fee_minor", "tax_minor", "credit_minor",
                 "debit_minor", "settlement_id", "utr", "settled_at", "payment_id", "gateway_order_id", "dispute_id",
                 "source", "raw", "received_at")
ORDER_COLUMNS = ("id", "organisation_id", "requested_by", "plan", "credits", "currency", "subtotal_minor",
                 "tax_rate_bp", "tax_minor", "amount_minor", "gateway", "gateway_order_id", "manual_capture", "state",
                 "state_reason", "granted_payment_id", "refund_policy_accepted_at", "created_at", "updated_at",
                 "paid_at", "check_count", "event_sequence")
PAYMENT_COLUMNS = ("order_id", "gateway", "gateway_payment_id", "status", "amount_minor", "currency",
                   "amount_refunded_minor", "first_seen_at", "updated_at")
GRANT_COLUMNS = ("organisation_id", "order_id", "gateway", "gateway_payment_id", "entry", "kind", "money_event_id",
                 "credits", "shortfall", "amount_minor", "currency", "created_at")
REFUND_COLUMNS = ("order_id", "gateway", "gateway_payment_id", "gateway_refund_id", "amount_minor", "currency",
                  '"full"', "state", "origin", "override_spent", "created_at", "updated_at", "processed_at",
                  "check_count")
ORGS = 10


def category(i: int) -> str:
    """The bucket row ``i`` of the report is made to land in."""
    m = i % 1000
    if m < 10:
        return "amount_mismatch"
    if m == 10:
        return "settled_not_credited"
    if m == 11:
        return "settled_refunded"
    if m < 17:
        return "unmatched"
    if 20 <= m < 60:
        return "deduction_reversed"
    if 60 <= m < 66:
        return "deduction_not_reversed"
    return "settled_credited"


def _major(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


class _Tee:
    """A text file that also hashes what is written to it (the report's SHA-256, as import_report takes it)."""

    def __init__(self, path: Path) -> None:
        self.handle, self.digest = path.open("w", encoding="utf-8", newline=""), hashlib.sha256()

    def writelines(self, lines: list[str]) -> None:
        text = "".join(lines)
        self.digest.update(text.encode("utf-8"))
        self.handle.write(text)

    def close(self) -> None:
        self.handle.close()


#: ``json.dumps`` of a report row (what the service keeps as ``raw``) for cells without quotes or backslashes.
_RAW = "{" + ", ".join(f'{json.dumps(name)}: "%s"' for name in REPORT_COLUMNS) + "}"


def generate(rows: int, out: Path) -> dict:
    """Write the COPY files of the setup, the report CSV and the baseline's COPY file (every column the service
    stores but ``source``: the table's default then, ``import:`` + the report's SHA-256) into ``out``, in one
    pass; returns their paths and the buckets the rows should land in."""
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.isoformat(sep=" ")
    first_day = (now - timedelta(days=40)).replace(hour=0, minute=0, second=0)
    paths = {name: out / f"{name}.copy" for name in ("orders", "payments", "grants", "refunds", "baseline")}
    paths["report"] = out / "payglocal-settlement-report.csv"
    expected: Counter[str] = Counter()
    files = {name: path.open("w", encoding="utf-8", newline="") for name, path in paths.items() if name != "report"}
    report = _Tee(paths["report"])
    buffers: dict[str, list[str]] = {name: [] for name in paths}
    days = []
    for d in range(31):
        day = first_day + timedelta(days=d)
        before = day - timedelta(days=2)
        days.append((str(day), day.strftime("%d/%m/%Y"), before.strftime("%d/%m/%Y"), before.strftime("%Y-%m-%d")))
    try:
        report.writelines(['"' + '","'.join(REPORT_COLUMNS) + '"\r\n'])
        orders, payments, grants, refunds, baseline, lines = (buffers[name] for name in (
            "orders", "payments", "grants", "refunds", "baseline", "report"))
        for i in range(rows):
            bucket = category(i)
            expected[bucket] += 1
            org = f"bench-org-{i % ORGS:04d}"
            order_id, txn_id, gid = f"ord_{i:020x}", f"{i:019X}", f"gl_{i:032x}"
            amount = 50_000 + (i % 997) * 100
            fee = amount * 2 // 100
            tax = fee * 18 // 100
            settled_at, settled_on, created_on, created_iso = days[i * 30 // rows]
            hh, rest = divmod(i % 86_400, 3600)
            clock = f"{hh:02d}:{rest // 60:02d}:{rest % 60:02d}"
            created = f"{created_iso} {clock}+00"
            credited = bucket not in ("settled_not_credited", "settled_refunded")
            if bucket != "unmatched":
                vat = amount * 18 // 118
                orders.append(f"{order_id}\t{org}\t{org}-admin\tpayg\t1000\tINR\t{amount - vat}\t1800\t{vat}\t"
                              f"{amount}\t{GATEWAY}\t{txn_id}\tf\tpaid\tcaptured\t{gid if credited else chr(92) + 'N'}"
                              f"\t{created}\t{created}\t{created}\t{created}\t0\t0\n")
                refunded = bucket == "settled_refunded"
                payments.append(f"{order_id}\t{GATEWAY}\t{gid}\t{'refunded' if refunded else 'captured'}\t{amount}"
                                f"\tINR\t{amount if refunded else 0}\t{created}\t{created}\n")
                if credited:
                    grants.append(f"{org}\t{order_id}\t{GATEWAY}\t{gid}\tgrant\tcredits\t{gid}\t1000\t0\t{amount}"
                                  f"\tINR\t{created}\n")
            refund_gid = f"gl_r{i:031x}"
            if bucket in ("settled_refunded", "deduction_reversed", "deduction_not_reversed"):
                processed = bucket != "deduction_not_reversed"
                refunds.append(f"{order_id}\t{GATEWAY}\t{gid}\t{refund_gid}\t{amount}\tINR\tt\t"
                               f"{'processed' if processed else 'pending'}\tsupport\tf\t{created}\t{created}\t"
                               f"{created if processed else chr(92) + 'N'}\t0\n")
            settlement = i // 5_000
            settlement_id, utr = f"PGSTL{settlement:012d}", f"SIMBNK{settlement:010d}"
            if bucket in ("deduction_reversed", "deduction_not_reversed"):
                cells = (f"{created_on} {clock}", "REFUND", refund_gid, gid, txn_id, "", "INR", _major(-amount),
                         "0.00", "0.00", _major(-amount), settled_on, settlement_id, utr)
                values = ("refund", refund_gid, amount, 0, 0, 0, amount, gid)
            else:
                gross = amount + 100 if bucket == "amount_mismatch" else amount
                entity = f"gl_u{i:031x}" if bucket == "unmatched" else gid
                cells = (f"{created_on} {clock}", "SALE", entity, "", txn_id, f"u-{i:x}", "INR", _major(gross),
                         _major(fee), _major(tax), _major(gross - fee - tax), settled_on, settlement_id, utr)
                values = ("payment", entity, gross, fee + tax, tax, gross - fee - tax, 0, None)
            lines.append('"' + '","'.join(cells) + '"\r\n')
            kind, entity, gross, fee_minor, tax_minor, credit, debit, payment_id = values
            baseline.append(f"{GATEWAY}\t{kind}\t{entity}\t{gross}\tINR\t{fee_minor}\t{tax_minor}\t{credit}\t"
                            f"{debit}\t{settlement_id}\t{utr}\t{settled_at}\t{payment_id or chr(92) + 'N'}\t\\N\t"
                            f"\\N\t{_RAW % cells}\t{stamp}\n")
            if i % 20_000 == 19_999:
                _flush(buffers, files, report)
        _flush(buffers, files, report)
    finally:
        for handle in files.values():
            handle.close()
        report.close()
    return {"paths": paths, "expected": dict(expected), "source": "import:" + report.digest.hexdigest()[:16]}


def _flush(buffers: dict[str, list[str]], files: dict, report: _Tee) -> None:
    for name, lines in buffers.items():
        (report if name == "report" else files[name]).writelines(lines)
        lines.clear()


def _dsn(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://")


def _copy_file(cursor, table: str, columns, path: Path) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy, path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            copy.write(block)


#: The setup's tables, their COPY files and columns.
SETUP = (("orders", "orders", ORDER_COLUMNS), ("gateway_payments", "payments", PAYMENT_COLUMNS),
         ("ledger_entries", "grants", GRANT_COLUMNS), ("refunds", "refunds", REFUND_COLUMNS))


def _secondary_indexes(cursor, table: str) -> list[tuple[str, str | None, str]]:
    """(name, constraint name or None, definition) of each index of ``table`` but its primary key."""
    return cursor.execute(
        "SELECT i.indexrelid::regclass::text, c.conname, "
        "       CASE WHEN c.oid IS NULL THEN pg_get_indexdef(i.indexrelid) ELSE pg_get_constraintdef(c.oid) END "
        "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary", (table,)).fetchall()


def setup(db_url: str, data: dict) -> float:
    """Organisations, orders, payments, grants and refunds by COPY, then VACUUM ANALYZE; returns the seconds it
    took. Foreign-key triggers are off (the data is consistent by construction) and the secondary indexes are
    dropped before the COPY and built again after it (faster than maintaining them row by row)."""
    started = time.monotonic()
    paths = data["paths"]
    with psycopg.connect(_dsn(db_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for i in range(ORGS):
            org = f"bench-org-{i:04d}"
            cursor.execute("INSERT INTO organisations (id, name, region, plan, credit_balance, created_at) "
                           "VALUES (%s, %s, 'IN', 'payg', 0, now())", (org, org))
            cursor.execute("INSERT INTO members (id, organisation_id, email, role) VALUES (%s, %s, %s, 'admin')",
                           (f"{org}-admin", org, f"admin@{org}.example"))
        for table, name, columns in SETUP:
            indexes = _secondary_indexes(cursor, table)
            for index, constraint, _ in indexes:
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}" if constraint else
                               f"DROP INDEX {index}")
            _copy_file(cursor, table, columns, paths[name])
            for _, constraint, definition in indexes:
                cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {definition}" if constraint else
                               definition)
        cursor.execute("CREATE TABLE settlement_rows_copy (LIKE settlement_rows INCLUDING ALL)")
    with psycopg.connect(_dsn(db_url), autocommit=True) as connection:
        for table in ("orders", "gateway_payments", "ledger_entries", "refunds", "settlement_rows"):
            connection.execute(f"VACUUM ANALYZE {table}")
    return time.monotonic() - started


#: Of a 1 % sample of the COPY's rows: how many, and how many the service stored identically (but received_at).
_COMPARED = [c for c in STORE_COLUMNS if c not in ("raw", "received_at")]
IDENTICAL = f"""
SELECT count(*), count(s.id) FILTER (WHERE ({', '.join('s.' + c for c in _COMPARED)}, s.raw::text)
    IS NOT DISTINCT FROM ({', '.join('c.' + c for c in _COMPARED)}, c.raw::text))
FROM settlement_rows_copy c TABLESAMPLE SYSTEM (1)
LEFT JOIN settlement_rows s ON (s.gateway, s.kind, s.entity_id) = (c.gateway, c.kind, c.entity_id)
"""


def checkpoint(db_url: str) -> None:
    with psycopg.connect(_dsn(db_url), autocommit=True) as connection:
        connection.execute("CHECKPOINT")


class Phase:
    """Wall time, this process's CPU and the Postgres backend's CPU (``/proc/<pid>/stat``: same machine) of one
    timed phase, and the 1-minute load average at its end."""

    def __init__(self, backend_pid: int) -> None:
        self.backend_pid = backend_pid
        self.wall, self.cpu, self.backend = time.perf_counter(), time.process_time(), harness.cpu_seconds(backend_pid)

    def done(self) -> dict:
        wall = time.perf_counter() - self.wall
        return {"s": round(wall, 2), "client_cpu_s": round(time.process_time() - self.cpu, 2),
                "postgres_cpu_s": round(harness.cpu_seconds(self.backend_pid) - self.backend, 2),
                "load_1m": round(os.getloadavg()[0], 1)}


def baseline_copy(db_url: str, path: Path, source: str) -> dict:
    """The plain COPY of the N rows into the copy of settlement_rows, committed. ``source`` is the column's
    default (the same value in every row, as the service stores it)."""
    with psycopg.connect(_dsn(db_url), autocommit=True) as connection:
        connection.execute("TRUNCATE settlement_rows_copy")
        connection.execute(f"ALTER TABLE settlement_rows_copy ALTER COLUMN source SET DEFAULT '{source}'")
    checkpoint(db_url)
    with psycopg.connect(_dsn(db_url)) as connection:
        phase = Phase(connection.info.backend_pid)
        with connection.cursor() as cursor:
            _copy_file(cursor, "settlement_rows_copy", [c for c in STORE_COLUMNS if c != "source"], path)
        connection.commit()
        return phase.done()


def service(db_url: str, report: Path, logs: Path) -> dict:
    """The import and the match in a fresh process; its report."""
    checkpoint(db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update({"RECON_DATABASE_URL": db_url, "RECON_BROKER_URL": "stub://", "RECON_LOG_LEVEL": "WARNING"})
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "settlement-service.log", "wb") as stderr:
        run = subprocess.run([sys.executable, "-m", "bench.settlement", "service", str(report)], cwd=harness.ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False)
    if run.returncode != 0:
        tail = (logs / "settlement-service.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"bench.settlement service exited with {run.returncode}: {tail}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """VmRSS every ``interval`` seconds, with the phase it was read in."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval, self.phase, self.samples = interval, "start", []
        self.peak: dict[str, int] = {}
        self._halt = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        while not self._halt.is_set():
            self.read()
            self._halt.wait(self.interval)

    def read(self) -> int:
        kb = _status_kb("VmRSS")
        self.peak[self.phase] = max(self.peak.get(self.phase, 0), kb)
        self.samples.append((round(time.perf_counter() - self.started_at, 3), self.phase, kb))
        return kb

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.read()


def _service_main(report: str) -> None:
    """In a fresh process: import the report, then match; print timings and RSS as JSON."""
    from sqlalchemy import text

    from worker.deps import build_deps
    from worker.logging import configure_logging
    from worker.services import settlement_import, settlement_match
    from worker.settings import Settings

    settings = Settings()
    configure_logging(level=settings.log_level, json=True, stream=sys.stderr)
    deps = build_deps(settings)
    with deps.engine.connect() as connection:  # the pool's one connection: the units of work below take it
        backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    sampler = Sampler()
    rss_start = sampler.read()
    sampler.start()
    batches: list[tuple[int, int]] = []

    def progress(rows: int) -> None:
        batches.append((rows, _status_kb("VmRSS")))

    sampler.phase = "ingest"
    phase = Phase(backend_pid)
    imported = settlement_import.import_report(Path(report), GATEWAY, deps=deps, imported_by="bench:settlement",
                                               progress=progress)
    ingest = phase.done()
    rss_after_ingest = sampler.read()
    sampler.phase = "match"
    phase = Phase(backend_pid)
    matched = settlement_match.match(deps=deps)
    match = phase.done()
    sampler.stop()
    with deps.engine.connect() as connection:
        same_backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == backend_pid
        buckets = dict(connection.execute(text(
            "SELECT bucket, count(*) FROM settlement_rows GROUP BY bucket")).all())
        marked = connection.execute(text(
            "SELECT count(*) FROM settlement_rows WHERE recheck_requested_at IS NOT NULL")).scalar_one()
    tenth = next((kb for rows, kb in batches if rows >= imported.rows // 10), batches[0][1] if batches else None)
    print(json.dumps({
        "rows": imported.rows, "new": imported.new, "ingest": ingest, "match": match,
        "ingest_s": ingest["s"], "match_s": match["s"], "same_backend": same_backend,
        "matched": matched.rows, "rechecks": len(matched.rechecks), "marked_for_recheck": marked, "buckets": buckets,
        "rss_kb": {"start": rss_start, "after_tenth": tenth, "after_ingest": rss_after_ingest,
                   "end": sampler.samples[-1][2], "peak_ingest": sampler.peak.get("ingest"),
                   "peak_match": sampler.peak.get("match"), "hwm": _status_kb("VmHWM")},
        "batches": batches[:: max(1, len(batches) // 50)],
        "pid": os.getpid(),
    }))


def run(*, rows: int, logs: Path) -> dict:
    result: dict = {"rows": rows}
    with tempfile.TemporaryDirectory(prefix="recon-bench-settlement-") as scratch, \
            harness.scratch_db("settle") as db_url:
        started = time.monotonic()
        log(f"settlement: writing {rows:,} orders, payments, grants, refunds and the report")
        data = generate(rows, Path(scratch))
        result["generate_s"] = round(time.monotonic() - started, 1)
        result["report_mb"] = round(data["paths"]["report"].stat().st_size / 2**20, 1)
        log(f"settlement: COPY setup (report {result['report_mb']} MB)")
        result["setup_s"] = round(setup(db_url, data), 1)
        with psycopg.connect(_dsn(db_url)) as connection:
            result["setup_rows"] = dict(connection.execute(
                "SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'gateway_payments', count(*) FROM "
                "gateway_payments UNION ALL SELECT 'grants', count(*) FROM ledger_entries UNION ALL "
                "SELECT 'refunds', count(*) FROM refunds").fetchall())
        log("settlement: baseline, plain COPY of the rows")
        result["copy"] = baseline_copy(db_url, data["paths"]["baseline"], data["source"])
        result["copy_s"] = result["copy"]["s"]
        log(f"settlement: COPY {result['copy_s']} s; service: import_report + match (fresh process)")
        result["service"] = service(db_url, data["paths"]["report"], logs)
        with psycopg.connect(_dsn(db_url)) as connection:
            result["sample_identical"] = list(connection.execute(IDENTICAL).fetchone())
            result["sizes"] = dict(zip(("settlement_rows", "settlement_rows_copy"), connection.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('settlement_rows')), "
                "pg_size_pretty(pg_total_relation_size('settlement_rows_copy'))").fetchone(), strict=True))
    s = result["service"]
    result["expected"] = data["expected"]
    sampled, same = result["sample_identical"]
    result["buckets_as_expected"] = s["buckets"] == data["expected"] and s["rows"] == rows and sampled == same
    total = s["ingest_s"] + s["match_s"]
    ratio = total / result["copy_s"] if result["copy_s"] else float("inf")
    rss = s["rss_kb"]
    peak = max(rss["peak_ingest"] or 0, rss["peak_match"] or 0, rss["end"])
    growth_mb = (peak - rss["start"]) / MB
    after_tenth_mb = (peak - (rss["after_tenth"] or rss["start"])) / MB
    result.update({"service_s": round(total, 2), "ratio": round(ratio, 2), "rss_growth_mb": round(growth_mb, 1)})
    checked = "rows and buckets as expected" if result["buckets_as_expected"] else \
        f"WRONG: buckets {s['buckets']} (expected {data['expected']}), {same} of {sampled} sampled rows as COPY's"
    result["goals"] = [{
        "benchmark": "6 settlement: ingest + match",
        "goal": f"import_report of a {rows:,}-row PayGlocal report + match() within {RATIO_GOAL:g} × a plain COPY "
                "of the same rows",
        "measured": f"{total:.1f} s = ingest {s['ingest_s']} s + match {s['match_s']} s "
                    f"({rows / total:,.0f} rows/s; {checked})",
        "baseline": f"COPY {result['copy_s']} s into settlement_rows_copy (same indexes) "
                    f"({rows / result['copy_s']:,.0f} rows/s)",
        "ratio": round(ratio, 2), "target": f"≤ {RATIO_GOAL:g}",
        "met": ratio <= RATIO_GOAL and result["buckets_as_expected"],
    }, {
        "benchmark": "6 settlement: memory",
        "goal": f"peak RSS growth ≤ {RSS_GOAL_MB} MB importing and matching {rows:,} rows (fresh process)",
        "measured": f"+{growth_mb:.1f} MB peak over start-up ({rss['start'] // MB} → {peak // MB} MB; "
                    f"+{after_tenth_mb:.1f} MB after the first 10 % of rows; match peak "
                    f"{(rss['peak_match'] or 0) // MB} MB)",
        "baseline": f"RSS at start-up {rss['start'] // MB} MB",
        "ratio": round(growth_mb / RSS_GOAL_MB, 2), "target": "≤ 1.0", "met": growth_mb <= RSS_GOAL_MB,
    }]
    return result


def markdown(r: dict) -> list[str]:
    """The section of bench/RESULTS.md."""
    s, rss, copy = r["service"], r["service"]["rss_kb"], r["copy"]
    ingest, match = s["ingest"], s["match"]
    out = [
        "## 6. Settlement matching at scale", "",
        f"- {r['rows']:,} report rows (a {r['report_mb']} MB PayGlocal CSV as the simulator writes it) against "
        f"{', '.join(f'{v:,} {k}' for k, v in r['setup_rows'].items())}; setup by COPY {r['setup_s']} s and data "
        f"written in {r['generate_s']} s (neither timed). `bench/settlement.py`.",
        f"- baseline: plain `COPY` of the same rows (the 18 columns the service stores) into `settlement_rows_copy` "
        f"(`LIKE settlement_rows INCLUDING ALL`): **{copy['s']} s** (Postgres CPU {copy['postgres_cpu_s']} s).",
        f"- service, in a fresh process: `settlement_import.import_report` **{ingest['s']} s** (its own CPU "
        f"{ingest['client_cpu_s']} s: CSV parsing and SettlementLine checks, overlapped with the writer thread "
        f"COPYing 5,000-row chunks into a temporary table and inserting each matched; Postgres CPU "
        f"{ingest['postgres_cpu_s']} s), then `settlement_match.match` **{match['s']} s** (Postgres CPU "
        f"{match['postgres_cpu_s']} s: the rows in buckets that can still move, matched again) — {s['matched']:,} "
        f"rows re-matched, {s['rechecks']:,} orders marked for a recheck: "
        f"{r['service_s']} s, **{r['ratio']} ×** the COPY.",
        f"- buckets: {', '.join(f'{k} {v:,}' for k, v in sorted(s['buckets'].items()))} "
        f"({'as the mix makes them' if r['buckets_as_expected'] else 'NOT as expected'}); "
        f"{r['sample_identical'][1]:,} of {r['sample_identical'][0]:,} sampled rows stored exactly as COPY's.",
        f"- RSS (MB): start {rss['start'] // MB}, after 10 % of rows {(rss['after_tenth'] or 0) // MB}, after "
        f"ingest {rss['after_ingest'] // MB}, peak in ingest {(rss['peak_ingest'] or 0) // MB}, in match "
        f"{(rss['peak_match'] or 0) // MB}, end {rss['end'] // MB}: **+{r['rss_growth_mb']} MB** (chunks of 5,000 "
        "rows streamed, two at most in memory; the match is one statement).",
        f"- 1-minute load at the end of COPY / ingest / match: {copy['load_1m']} / {ingest['load_1m']} / "
        f"{match['load_1m']}; table sizes after: settlement_rows {r['sizes']['settlement_rows']}, "
        f"settlement_rows_copy {r['sizes']['settlement_rows_copy']}.", "",
    ]
    variants = harness.RESULTS / "settlement-variants.json"
    if variants.exists():
        v = json.loads(variants.read_text())
        copy_s = min(v["copy_before"]["s"], v["copy_after"]["s"])
        out += [f"Alternatives measured by `python -m bench.settlement_variants --rows {v['rows']:,}` (copies of the "
                f"service code in `bench/settlement_variants.py`; the same stored rows and buckets; "
                f"{v.get('at', '?')}, git {v.get('git', '?')}; COPY {copy_s} s in that run):", "",
                "| variant | ingest s (client CPU / Postgres CPU) | match s | total s | × COPY |",
                "|---|---|---|---|---|"]
        out += [f"| {x['variant']} | {x['ingest']['s']} ({x['ingest']['client_cpu_s']} / "
                f"{x['ingest']['postgres_cpu_s']}) | {x['match']['s']} | {x['total_s']} | "
                f"{x['total_s'] / copy_s:.2f} |" for x in v["variants"]]
        out.append("")
    return out


def main(argv: list[str]) -> None:
    if argv[:1] == ["service"]:
        _service_main(argv[1])
        return
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.settlement")
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args(argv)
    result = run(rows=args.rows, logs=harness.RESULTS / "logs")
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "settlement.json").write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(markdown(result)))
    for goal in result["goals"]:
        print(f"{'MET ' if goal['met'] else 'MISS'} {goal['benchmark']}: {goal['measured']} | {goal['baseline']} | "
              f"ratio {goal['ratio']} (target {goal['target']})")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main(sys.argv[1:])
