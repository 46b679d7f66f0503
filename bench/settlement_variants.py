"""Experiments for benchmark 6 (not run by ``make bench``): the same report imported and matched in other ways, on
copies of the service's code kept here, to measure what would bring ingest + match nearer to a plain COPY.

``python -m bench.settlement_variants --rows 1000000`` sets up one scratch database as ``bench/settlement.py``
does, then for each variant (settlement_rows emptied, CHECKPOINT before each phase) times the ingest and the match,
checks the buckets against the mix and that the stored rows are the same as the service's; the plain COPY is
measured before and after the variants. The service has since taken the best of them (its reader is
``fastparse``'s, and it stores ``copy+match_on_insert``-style, chunk by chunk, with a writer thread so that the
parsing and Postgres's work overlap); the others are kept as they were measured, on copies of the code of the time
(``import_variant``'s plain store: 5,000-row executemany batches). Variants:

- ``service``: ``settlement_import.import_report`` + ``settlement_match.match``, as they are;
- ``fastparse``: the same, but the report read by :func:`read_report_fast` (``csv.reader``, column positions
  looked up once, each distinct date parsed once, amounts by integer arithmetic; the same checks and errors);
- ``copy``: :func:`read_report_fast`, the rows streamed by ``COPY`` into a temporary table, then one
  ``INSERT … SELECT … ON CONFLICT DO NOTHING``; ``match`` as it is;
- ``copy+analyze``: as ``copy``, then ``ANALYZE settlement_rows`` and ``work_mem`` 256 MB for the MATCH statement
  (the planner otherwise guesses ~1.7 % of the rows and the hash joins spill in 16-32 batches); ``match_on_insert``
  variants use the same work_mem;
- ``copy+match_on_insert``: as ``copy``, but the ``INSERT … SELECT`` computes each new row's bucket, order and
  ``matched_at`` with MATCH's own CASE and joins (each row written once, not inserted then rewritten by the
  UPDATE); ``match`` then only re-matches the reopened buckets and marks the rechecks.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import text

from bench import harness, settlement
from bench.harness import log
from gateways import settlement_lines
from gateways.currency import exponent
from gateways.payglocal.settlement_report import OPTIONAL, REQUIRED, MalformedReport, ReportMapping
from gateways.port import SettlementLine

# -- a faster reader with the same result --------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _amount_pattern(places: int) -> re.Pattern[str]:
    digits = f"[0-9]{{1,{places}}}" if places else "0"
    return re.compile(rf"^(-?)([0-9]+)(?:\.({digits})0*)?$")


@functools.lru_cache(maxsize=4096)
def _parse_date(value: str, formats: tuple[str, ...]) -> int | None:
    for pattern in formats:
        try:
            return int(datetime.strptime(value, pattern).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    return None


def read_report_fast(lines: Iterable[str], mapping: ReportMapping) -> Iterator[SettlementLine]:
    """:func:`gateways.payglocal.settlement_report.read_report`, faster: the same lines, the same errors."""
    try:
        yield from _rows_fast(lines, mapping)
    except UnicodeDecodeError as exc:
        raise MalformedReport(f"the file is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except csv.Error as exc:
        raise MalformedReport(f"not a readable CSV: {exc}") from None


def _rows_fast(lines: Iterable[str], mapping: ReportMapping) -> Iterator[SettlementLine]:
    reader = csv.reader(lines, delimiter=mapping.delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        header = []
    wanted = {field: column for field, column in mapping.columns.items() if field in REQUIRED or column in header}
    absent = [column for field, column in wanted.items() if column not in header]
    if absent:
        raise MalformedReport(f"line 1: the header lacks the columns {absent} (it has {header})")
    at = {field: header.index(column) for field, column in wanted.items()}
    width = len(header)
    kinds, formats, fee_includes_tax = mapping.kinds, mapping.date_formats, mapping.fee_includes_tax
    optional = {field: at.get(field) for field in OPTIONAL}
    currencies: dict[str, int] = {}
    for number, cells in enumerate(reader, start=2):
        if not cells:
            continue  # DictReader skips empty lines
        if len(cells) > width:
            raise MalformedReport(f"line {number}: {len(cells)} cells, the header has {width}")
        cells = [cell.strip() for cell in cells]
        if len(cells) < width:
            cells += [""] * (width - len(cells))

        def required(field: str, cells: list[str] = cells, number: int = number) -> str:
            value = cells[at[field]]
            if not value:
                raise MalformedReport(f"line {number}, column {wanted[field]!r}: empty")
            return value

        currency = required("currency").upper()
        places = currencies.get(currency)
        if places is None:
            if len(currency) != 3 or not currency.isalpha():
                raise MalformedReport(f"line {number}, column {wanted['currency']!r}: {currency!r} is not an ISO "
                                      "currency")
            places = currencies[currency] = exponent(currency)
        pattern = _amount_pattern(places)

        def money(field: str, *, needed: bool = False, cells: list[str] = cells, number: int = number,
                  places: int = places, pattern: re.Pattern[str] = pattern, currency: str = currency) -> int:
            index = at.get(field)
            value = required(field) if needed else (cells[index] if index is not None else "")
            if not value:
                return 0
            found = pattern.match(value)
            if found is None:
                _reject(number, wanted[field], value, currency)
            sign, whole, fraction = found.groups()
            minor = int(whole) * 10 ** places + (int(fraction.ljust(places, "0")) if fraction and places else 0)
            return -minor if sign else minor

        kind = kinds.get(required("kind").upper(), "other")
        if kind == "payment" and required("amount").startswith("-"):
            raise MalformedReport(f"line {number}, column {wanted['amount']!r}: a payment of a negative amount")
        amount, fee, tax = abs(money("amount", needed=True)), abs(money("fee")), abs(money("tax"))
        fee = fee if fee_includes_tax else fee + tax
        net_at = at.get("net")
        net = abs(money("net")) if net_at is not None and cells[net_at] else (
            amount - fee if kind == "payment" else amount)
        credit, debit = (net, 0) if kind == "payment" else (0, net)
        when_text = required("settled_at")
        when = _parse_date(when_text, formats)
        if when is None:
            raise MalformedReport(f"line {number}, column {wanted['settled_at']!r}: {when_text!r} is not a date "
                                  f"({list(formats)})")
        settlement_id, utr, payment_id = (cells[optional[f]] if optional[f] is not None else ""
                                          for f in ("settlement_id", "utr", "payment_id"))
        line = SettlementLine(
            entity_id=required("entity_id"), kind=kind, amount_minor=amount, currency=currency, fee_minor=fee,
            tax_minor=tax, credit_minor=credit, debit_minor=debit, settlement_id=settlement_id or None,
            utr=utr or None, settled_at=when, payment_id=payment_id or None, raw=dict(zip(header, cells, strict=True)))
        wrong = settlement_lines.problem(line)
        if wrong:
            raise MalformedReport(f"line {number}: {wrong}")
        yield line


def _reject(number: int, column: str, value: str, currency: str) -> None:
    """The error ``amount_to_minor`` would give (through ``read_report``'s wording)."""
    from gateways.errors import GatewayPermanent
    from gateways.payglocal.mapping import amount_to_minor

    try:
        amount_to_minor(value.lstrip("-"), currency)
    except GatewayPermanent as exc:
        raise MalformedReport(f"line {number}, column {column!r}: {exc}") from None
    raise MalformedReport(f"line {number}, column {column!r}: {value!r} is not an amount")


# -- COPY-staged storing --------------------------------------------------------------------------------------

STAGE = "settlement_stage"


def _match_parts() -> tuple[str, str, str]:
    """MATCH's ``refunded`` CTE, its select list (bucket, order_id) and its joins, to reuse them in an INSERT."""
    from worker.services import settlement_match as m

    return f"WITH {m._REFUNDED}", m._DECIDE, m._joins(m._REFUNDED_JOIN)


def store_copy(session, gateway: str, lines: Iterable[SettlementLine], *, source: str, now: datetime,
               match_on_insert: bool = False, work_mem: str | None = None) -> tuple[int, int]:
    """Stream ``lines`` by COPY into a temporary table, then insert the ones not held yet (one statement)."""
    from worker.services.settlement_store import COLUMNS

    connection = session.connection().connection.driver_connection
    rows = 0
    with connection.cursor() as cursor:
        if work_mem:
            cursor.execute(f"SET LOCAL work_mem = '{work_mem}'")
        cursor.execute(f"CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {', '.join(COLUMNS)} "
                       "FROM settlement_rows WITH NO DATA")
        with cursor.copy(f"COPY {STAGE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for line in lines:
                copy.write_row((gateway, line.kind, line.entity_id, line.amount_minor, line.currency, line.fee_minor,
                                line.tax_minor, line.credit_minor, line.debit_minor, line.settlement_id, line.utr,
                                datetime.fromtimestamp(line.settled_at, UTC) if line.settled_at else None,
                                line.payment_id, line.gateway_order_id, line.dispute_id, source,
                                json.dumps(dict(line.raw)), now))
                rows += 1
        cursor.execute(f"ANALYZE {STAGE}")
        columns = ", ".join(COLUMNS)
        if match_on_insert:
            refunded, select, joins = _match_parts()
            cursor.execute(f"{refunded} INSERT INTO settlement_rows ({columns}, bucket, order_id, matched_at) "
                           f"SELECT {', '.join('s.' + c for c in COLUMNS)}, {select}, %s FROM {STAGE} s {joins} "
                           "ON CONFLICT (gateway, kind, entity_id) DO NOTHING", (now,))
        else:
            cursor.execute(f"INSERT INTO settlement_rows ({columns}) SELECT {columns} FROM {STAGE} "
                           "ON CONFLICT (gateway, kind, entity_id) DO NOTHING")
        return rows, max(0, cursor.rowcount)


def import_variant(path: Path, gateway: str, *, deps, reader, copy: bool, match_on_insert: bool = False,
                   work_mem: str | None = None) -> int:
    """``settlement_import.import_report`` with another reader and/or storing (the same checks and records)."""
    from itertools import islice

    from sqlalchemy import update

    from db import queries
    from db.models import SettlementImport
    from worker.services import settlement_import
    from worker.services.settlement_store import store

    mapping = settlement_import.READERS[gateway](deps)
    sha = settlement_import.file_sha256(path)
    source = f"import:{sha[:16]}"
    with deps.unit() as uow:
        claimed = queries.insert_ignore(uow.session, SettlementImport, {
            "sha256": sha, "gateway": gateway, "file_name": path.name[:255], "rows": 0,
            "imported_by": "bench:variants", "created_at": uow.now}, ("sha256",))
        if claimed is None:
            raise RuntimeError("imported before")
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = reader(handle, mapping)
            if copy:
                rows, new_rows = store_copy(uow.session, gateway, lines, source=source, now=uow.now,
                                            match_on_insert=match_on_insert, work_mem=work_mem)
            else:
                rows = new_rows = 0
                while batch := list(islice(lines, 5_000)):
                    given, added = store(uow.session, gateway, batch, source=source, now=uow.now)
                    rows, new_rows = rows + given, new_rows + added
        if rows == 0:
            raise MalformedReport(f"{path.name}: no rows after the header")
        uow.session.execute(update(SettlementImport).where(SettlementImport.sha256 == sha).values(rows=rows))
        uow.audit("settlements_import", requested_by="bench:variants", reason=None,
                  outcome={"gateway": gateway, "file": path.name, "sha256": sha, "rows": rows, "new_rows": new_rows})
        uow.commit()
    return rows


# -- the file itself COPY'd, parsed in SQL ---------------------------------------------------------------------

_WHITESPACE = r"E' \t\n\r\f\v'"
_DECIMAL = "'^-?[0-9]+([.][0-9]+)?$'"


def _cell(index: int | None) -> str:
    return f"btrim(coalesce(c{index}, ''), {_WHITESPACE})" if index is not None else "''"


def import_sql(path: Path, gateway: str, *, deps, match_on_insert: bool = True, dedupe: bool = True,
               work_mem: str | None = None, steps: dict | None = None) -> int:
    """The report COPY'd as it is (``FORMAT csv``) into a temporary table of text cells; its distinct currencies,
    transaction types and dates checked and parsed in Python by the mapping; every row checked and converted in
    SQL, then inserted (with its bucket when ``match_on_insert``) in one statement. The first row the SQL checks
    refuse is read again by ``read_report``'s own code, for its exact error."""
    from sqlalchemy import update

    from db import queries
    from db.models import SettlementImport
    from gateways.payglocal import settlement_report as sr
    from worker.services import settlement_import
    from worker.services.settlement_store import COLUMNS

    steps = {} if steps is None else steps
    clock = [time.perf_counter()]

    def step(name: str) -> None:
        now = time.perf_counter()
        steps[name] = round(now - clock[0], 3)
        clock[0] = now

    mapping = settlement_import.READERS[gateway](deps)
    sha = settlement_import.file_sha256(path)
    source = f"import:{sha[:16]}"
    step("sha256")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = [name.strip() for name in next(csv.reader(handle, delimiter=mapping.delimiter), [])]
    wanted = {field: column for field, column in mapping.columns.items() if field in sr.REQUIRED or column in header}
    absent = [column for field, column in wanted.items() if column not in header]
    if absent:
        raise MalformedReport(f"line 1: the header lacks the columns {absent} (it has {header})")
    at = {field: header.index(column) for field, column in wanted.items()}
    cell = {field: _cell(at.get(field)) for field in (*sr.REQUIRED, *sr.OPTIONAL)}
    cells = ", ".join(f"c{i}" for i in range(len(header)))
    with deps.unit() as uow:
        claimed = queries.insert_ignore(uow.session, SettlementImport, {
            "sha256": sha, "gateway": gateway, "file_name": path.name[:255], "rows": 0,
            "imported_by": "bench:variants", "created_at": uow.now}, ("sha256",))
        if claimed is None:
            raise RuntimeError("imported before")
        connection = uow.session.connection().connection.driver_connection
        with connection.cursor() as cursor:
            if work_mem:
                cursor.execute(f"SET LOCAL work_mem = '{work_mem}'")
            typed = ", ".join(f"c{i} text" for i in range(len(header)))
            cursor.execute(f"CREATE TEMP TABLE stage (line bigserial, {typed}) ON COMMIT DROP")
            try:
                with cursor.copy(f"COPY stage ({cells}) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER "
                                 f"'{mapping.delimiter}')") as copy, path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        copy.write(block)
            except psycopg.Error as exc:
                raise MalformedReport(f"not a readable report: {str(exc).splitlines()[0]}") from None
            step("copy")
            # the few distinct values the mapping decides, decided by it in Python
            currencies = {}
            for (code,) in cursor.execute(f"SELECT DISTINCT upper({cell['currency']}) FROM stage").fetchall():
                if len(code) == 3 and code.isalpha() and code.isascii():
                    currencies[code] = exponent(code)
            kinds = {text_: mapping.kinds.get(text_, "other") for (text_,) in cursor.execute(
                f"SELECT DISTINCT upper({cell['kind']}) FROM stage").fetchall()}
            dates = {}
            for (text_,) in cursor.execute(f"SELECT DISTINCT {cell['settled_at']} FROM stage").fetchall():
                try:
                    when = sr._when(0, text_, "", mapping)
                except MalformedReport:
                    continue
                if settlement_lines.EARLIEST_S <= when < settlement_lines.LATEST_S:
                    dates[text_] = datetime.fromtimestamp(when, UTC)
            cursor.execute("CREATE TEMP TABLE stage_currency ON COMMIT DROP AS SELECT code, "
                           "10::numeric ^ places AS scale FROM unnest(%s::text[], %s::int[]) AS t(code, places)",
                           (list(currencies), list(currencies.values())))
            cursor.execute("CREATE TEMP TABLE stage_kind ON COMMIT DROP AS SELECT * FROM unnest(%s::text[], "
                           "%s::text[]) AS t(upper_kind, kind)", (list(kinds), list(kinds.values())))
            cursor.execute("CREATE TEMP TABLE stage_date ON COMMIT DROP AS SELECT * FROM unnest(%s::text[], "
                           "%s::timestamptz[]) AS t(text, at)", (list(dates), list(dates.values())))
            step("distinct")

            # 1: each cell trimmed once, raw built; 2: the lookups and the amounts as numerics; 3: checks, kept
            trimmed = ", ".join(f"{cell[field]} AS t_{field}" for field in cell)
            names = ", ".join("'" + name.replace("'", "''") + "'" for name in header)
            raw = f"json_object(ARRAY[{names}]::text[], ARRAY[{', '.join(_cell(i) for i in range(len(header)))}])"
            scaled = ", ".join(f"CASE WHEN t_{f} ~ {_DECIMAL} THEN abs(t_{f}::numeric) * cur.scale"
                               f" END AS n_{f}" for f in ("amount", "fee", "tax", "net"))
            level2 = (f"SELECT l.*, cur.code, k.kind, d.at, {scaled} FROM (SELECT line, {trimmed}, {raw} AS raw "
                      "FROM stage OFFSET 0) l "
                      "LEFT JOIN stage_currency cur ON cur.code = upper(l.t_currency) "
                      "LEFT JOIN stage_kind k ON k.upper_kind = upper(l.t_kind) "
                      "LEFT JOIN stage_date d ON d.text = l.t_settled_at OFFSET 0")
            fee_total = ("coalesce(n_fee, 0)" if mapping.fee_includes_tax
                         else "(coalesce(n_fee, 0) + coalesce(n_tax, 0))")
            net = ("CASE WHEN t_net <> '' THEN n_net WHEN kind = 'payment' THEN n_amount - "
                   f"{fee_total} ELSE n_amount END")
            top = settlement_lines.MAX_MINOR

            def amount_ok(f: str, needed: bool = False) -> str:
                check = f"(n_{f} IS NOT NULL AND n_{f} = trunc(n_{f}) AND n_{f} <= {top})"
                return check if needed else f"(t_{f} = '' OR {check})"

            def id_ok(f: str, needed: bool = False) -> str:
                check = f"(length(t_{f}) <= {settlement_lines.MAX_ID} AND t_{f} !~ '[[:cntrl:]]')"
                return f"(t_{f} <> '' AND {check})" if needed else check

            checks = " AND ".join([
                id_ok("entity_id", True), "t_kind <> ''", "code IS NOT NULL", "at IS NOT NULL",
                amount_ok("amount", True), amount_ok("fee"), amount_ok("tax"), amount_ok("net"),
                "NOT (kind = 'payment' AND t_amount LIKE '-%%')", id_ok("settlement_id"), id_ok("utr"),
                id_ok("payment_id"), f"{net} BETWEEN 0 AND {top}", f"{fee_total} <= {top}"])
            cursor.execute(
                "CREATE TEMP TABLE parsed ON COMMIT DROP AS SELECT line, "
                f"coalesce({checks}, false) AS ok, kind, t_entity_id AS entity_id, n_amount AS amount_minor, "
                f"code AS currency, {fee_total} AS fee_minor, coalesce(n_tax, 0) AS tax_minor, "
                f"CASE WHEN kind = 'payment' THEN {net} ELSE 0 END AS credit_minor, "
                f"CASE WHEN kind = 'payment' THEN 0 ELSE {net} END AS debit_minor, "
                "nullif(t_settlement_id, '') AS settlement_id, nullif(t_utr, '') AS utr, at AS settled_at, "
                f"nullif(t_payment_id, '') AS payment_id, raw FROM ({level2}) x")
            step("parse")
            bad, rows = cursor.execute("SELECT min(line) FILTER (WHERE NOT ok), count(*) FROM parsed").fetchone()
            step("check")
            if bad is not None:
                values = cursor.execute(f"SELECT {cells} FROM stage WHERE line = %s", (bad,)).fetchone()
                row = {name: (value or "").strip() for name, value in zip(header, values, strict=True)}
                line = sr._line(bad + 1, row, wanted, mapping)
                wrong = settlement_lines.problem(line)
                raise MalformedReport(f"line {bad + 1}: {wrong or 'refused'}")
            if rows == 0:
                raise MalformedReport(f"{path.name}: no rows after the header")
            first = "DISTINCT ON (kind, entity_id) " if dedupe else ""
            parsed = (f"SELECT {first}%(gateway)s::text AS gateway, kind, entity_id, amount_minor::bigint, currency, "
                      "fee_minor::bigint, tax_minor::bigint, credit_minor::bigint, debit_minor::bigint, "
                      "settlement_id, utr, settled_at, payment_id, NULL::text AS gateway_order_id, "
                      "NULL::text AS dispute_id, %(source)s::text AS source, raw, %(now)s::timestamptz AS received_at "
                      "FROM parsed" + (" ORDER BY kind, entity_id, line" if dedupe else ""))
            columns = ", ".join(COLUMNS)
            params = {"gateway": gateway, "source": source, "now": uow.now}
            if match_on_insert:
                refunded, select, match_joins = _match_parts()
                cursor.execute(f"{refunded}, parsed AS ({parsed}) INSERT INTO settlement_rows ({columns}, bucket, "
                               f"order_id, matched_at) SELECT {', '.join('s.' + c for c in COLUMNS)}, {select}, "
                               f"%(now)s FROM parsed s {match_joins} ON CONFLICT (gateway, kind, entity_id) DO NOTHING",
                               params)
            else:
                cursor.execute(f"WITH parsed AS ({parsed}) INSERT INTO settlement_rows ({columns}) SELECT {columns} "
                               "FROM parsed ON CONFLICT (gateway, kind, entity_id) DO NOTHING", params)
            new_rows = max(0, cursor.rowcount)
            step("insert")
        uow.session.execute(update(SettlementImport).where(SettlementImport.sha256 == sha).values(rows=rows))
        uow.audit("settlements_import", requested_by="bench:variants", reason=None,
                  outcome={"gateway": gateway, "file": path.name, "sha256": sha, "rows": rows, "new_rows": new_rows})
        uow.commit()
        step("commit")
    return rows


def match_tuned(*, deps):
    """``settlement_match.match`` after ANALYZE, with work_mem 64 MB for its statement (a copy of its body)."""
    from worker.services import settlement_match

    with deps.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE settlement_rows"))
    with deps.unit() as uow:
        uow.session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        rows = uow.session.execute(settlement_match.MATCH, {"now": uow.now}).rowcount
        due = uow.session.execute(settlement_match._TO_RECHECK.with_for_update()).all()
        if due:
            from db.models import SettlementRow

            uow.session.execute(SettlementRow.__table__.update()
                                .where(SettlementRow.id.in_([row_id for row_id, _ in due]))
                                .values(recheck_requested_at=uow.now))
        uow.commit()
    return rows, len(due)


# -- the runner -----------------------------------------------------------------------------------------------

VARIANTS = ("service", "fastparse", "copy", "copy+analyze", "copy+match_on_insert", "sql+match_on_insert")
#: for the statements that join the new rows to payments, orders and grants (hash tables of ~1,000,000 rows)
WORK_MEM = "256MB"


def run_variant(name: str, *, deps, db_url: str, report: Path) -> dict:
    from gateways.payglocal.settlement_report import read_report
    from worker.services import settlement_import, settlement_match

    with psycopg.connect(settlement._dsn(db_url), autocommit=True) as connection:
        connection.execute("TRUNCATE settlement_rows, settlement_imports")
    settlement.checkpoint(db_url)
    with deps.engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    phase = settlement.Phase(backend)
    if name == "service":
        settlement_import.import_report(report, settlement.GATEWAY, deps=deps, imported_by="bench:variants")
    elif name.startswith("sql"):
        import_sql(report, settlement.GATEWAY, deps=deps, match_on_insert=name.endswith("match_on_insert"),
                   work_mem=WORK_MEM)
    else:
        import_variant(report, settlement.GATEWAY, deps=deps,
                       reader=read_report if name == "service" else read_report_fast, copy=name.startswith("copy"),
                       match_on_insert=name.endswith("match_on_insert"),
                       work_mem=WORK_MEM if name.endswith("match_on_insert") else None)
    ingest = phase.done()
    settlement.checkpoint(db_url)
    phase = settlement.Phase(backend)
    if name == "copy+analyze":
        matched, rechecks = match_tuned(deps=deps)
    else:
        done = settlement_match.match(deps=deps)
        matched, rechecks = done.rows, len(done.rechecks)
    match = phase.done()
    with deps.engine.connect() as connection:
        buckets = dict(connection.execute(text("SELECT bucket, count(*) FROM settlement_rows GROUP BY bucket")).all())
        digest = connection.execute(text(
            "SELECT md5(string_agg(concat_ws('|', kind, entity_id, amount_minor, currency, fee_minor, tax_minor, "
            "credit_minor, debit_minor, settlement_id, utr, settled_at, payment_id, source, raw::jsonb, bucket, "
            "order_id, recheck_requested_at IS NULL), ',' ORDER BY kind, entity_id)) FROM settlement_rows")
        ).scalar_one()
    return {"variant": name, "ingest": ingest, "match": match, "total_s": round(ingest["s"] + match["s"], 2),
            "matched": matched, "rechecks": rechecks, "buckets": buckets, "digest": digest}


def main(argv: list[str]) -> None:
    from worker.deps import build_deps
    from worker.logging import configure_logging
    from worker.settings import Settings

    p = argparse.ArgumentParser(prog="python -m bench.settlement_variants")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    configure_logging(level="WARNING", json=True, stream=sys.stderr)
    out: dict = {"rows": args.rows, "variants": [], "at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "git": __import__("bench.__main__", fromlist=["git_head"]).git_head()}
    with tempfile.TemporaryDirectory(prefix="recon-bench-settlement-") as scratch, \
            harness.scratch_db("settlevar") as db_url:
        log(f"variants: {args.rows:,} rows")
        data = settlement.generate(args.rows, Path(scratch))
        settlement.setup(db_url, data)
        deps = build_deps(Settings(database_url=db_url, broker_url="stub://", db_pool_size=1))
        out["copy_before"] = settlement.baseline_copy(db_url, data["paths"]["baseline"], data["source"])
        log(f"variants: COPY {out['copy_before']['s']} s")
        for name in args.variants.split(","):
            result = run_variant(name, deps=deps, db_url=db_url, report=data["paths"]["report"])
            result["buckets_as_expected"] = result["buckets"] == data["expected"]
            out["variants"].append(result)
            log(f"variants: {name}: ingest {result['ingest']['s']} s, match {result['match']['s']} s "
                f"(buckets {'ok' if result['buckets_as_expected'] else 'WRONG'}, digest {result['digest'][:8]})")
        out["copy_after"] = settlement.baseline_copy(db_url, data["paths"]["baseline"], data["source"])
        deps.engine.dispose()
    copy_s = min(out["copy_before"]["s"], out["copy_after"]["s"])
    print(f"COPY {out['copy_before']['s']} s before, {out['copy_after']['s']} s after (ratio against {copy_s} s)")
    print("| variant | ingest s (client CPU / Postgres CPU) | match s (Postgres CPU) | total s | × COPY | buckets |")
    print("|---|---|---|---|---|---|")
    for v in out["variants"]:
        i, m = v["ingest"], v["match"]
        print(f"| {v['variant']} | {i['s']} ({i['client_cpu_s']} / {i['postgres_cpu_s']}) | {m['s']} "
              f"({m['postgres_cpu_s']}) | {v['total_s']} | {v['total_s'] / copy_s:.2f} | "
              f"{'ok' if v['buckets_as_expected'] else 'WRONG'}, {v['digest'][:8]} |")
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "settlement-variants.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
