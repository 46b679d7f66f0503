"""Storing settled transactions as received: once per gateway, kind and entity, so re-pulls, overlapping
pages and a report imported twice change nothing."""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cache, lru_cache
from itertools import islice

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from db.models import SettlementRow
from gateways.port import SettlementLine
from worker.services.settlement_match import insert_matched

COLUMNS = ("gateway", "kind", "entity_id", "amount_minor", "currency", "fee_minor", "tax_minor", "credit_minor",
           "debit_minor", "settlement_id", "utr", "settled_at", "payment_id", "gateway_order_id", "dispute_id",
           "source", "raw", "received_at")


@cache
def _insert() -> TextClause:
    table = SettlementRow.__table__
    return text(f"INSERT INTO settlement_rows ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)}) "
                "ON CONFLICT (gateway, kind, entity_id) DO NOTHING").bindparams(
        *(bindparam(c, type_=table.c[c].type) for c in COLUMNS))


def values(gateway: str, line: SettlementLine, *, source: str, now: datetime) -> dict:
    return {"gateway": gateway, "kind": line.kind, "entity_id": line.entity_id, "amount_minor": line.amount_minor,
            "currency": line.currency, "fee_minor": line.fee_minor, "tax_minor": line.tax_minor,
            "credit_minor": line.credit_minor, "debit_minor": line.debit_minor, "settlement_id": line.settlement_id,
            "utr": line.utr,
            "settled_at": None if line.settled_at is None else datetime.fromtimestamp(line.settled_at, UTC),
            "payment_id": line.payment_id, "gateway_order_id": line.gateway_order_id, "dispute_id": line.dispute_id,
            "source": source, "raw": dict(line.raw), "received_at": now}


def store(session: Session, gateway: str, lines: Iterable[SettlementLine], *, source: str,
          now: datetime) -> tuple[int, int]:
    """Insert the lines not held yet (one statement, many rows); returns (lines given, rows new). A line held
    already (same gateway, kind and entity) is kept as first received."""
    batch = [values(gateway, line, source=source, now=now) for line in lines]
    if not batch:
        return 0, 0
    return len(batch), max(0, session.execute(_insert(), batch).rowcount)


#: Rows per COPY'd chunk of a report: about 4 MB of COPY text (three at most: read, queued, written).
CHUNK = 5_000
_STAGE = "settlement_stage"


def store_all(session: Session, gateway: str, lines: Iterable[SettlementLine], *, source: str, now: datetime,
              progress: Callable[[int], None] | None = None, chunk: int | None = None) -> tuple[int, int]:
    """Every line of a report (a million, say), as :func:`store` would, already matched: on Postgres each chunk
    is ``COPY``'d into a temporary table and inserted with its bucket (``settlement_match.insert_matched``) by a
    thread of its own, on this session's connection, while this thread reads the next chunk (the parsing and the
    database's work overlap, on two cores); elsewhere (SQLite) in batches through :func:`store`, unmatched.
    Returns (lines given, rows new); ``progress(n)`` after each chunk read. An error in either thread stops both
    and is raised here: the caller's transaction then keeps nothing."""
    chunk = chunk or CHUNK
    if session.get_bind().dialect.name != "postgresql":
        given = new = 0
        for batch in _chunks(lines, chunk):
            counted = store(session, gateway, batch, source=source, now=now)
            given, new = given + counted[0], new + counted[1]
            if progress is not None:
                progress(given)
        return given, new
    writer = _ChunkWriter(session.connection().connection.driver_connection, now)
    given = 0
    with _quick_handover():
        writer.start()
        try:
            for data, given in _copy_chunks(lines, gateway, source, now, chunk):
                writer.put(data)
                if progress is not None:
                    progress(given)
        except BaseException:
            writer.abandon()  # a bad line, or the writer's own failure (raised instead): stop writing, then raise
            if writer.error is not None:
                raise writer.error from None
            raise
        return given, writer.finish()


def _copy_chunks(lines: Iterable[SettlementLine], gateway: str, source: str, now: datetime,
                 size: int) -> Iterator[tuple[bytes, int]]:
    """The lines as COPY text, ``size`` at a time, with how many so far: each line's objects are gone once it is
    formatted."""
    fixed = (_copy_text(source), _copy_text(now.isoformat()))  # source and received_at: one per file
    pending: list[str] = []
    for given, line in enumerate(lines, start=1):
        pending.append(_copy_line(given - 1, gateway, line, fixed))
        if len(pending) == size:
            yield "".join(pending).encode(), given
            pending = []
    if pending:
        yield "".join(pending).encode(), given


_handover_lock = threading.Lock()
_handovers = {"active": 0, "saved": 0.0}


@contextlib.contextmanager
def _quick_handover() -> Iterator[None]:
    """A shorter GIL switch interval while a writer runs. The reading thread parses without pause; the writer needs
    the GIL back after every 128 kB it sends and every statement, and waited the whole interval (5 ms) each time: a
    third of the import, measured. Counted, so that imports at once in one process restore it once, last."""
    with _handover_lock:
        if _handovers["active"] == 0:
            _handovers["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_handovers["saved"], 0.0005))
        _handovers["active"] += 1
    try:
        yield
    finally:
        with _handover_lock:
            _handovers["active"] -= 1
            if _handovers["active"] == 0:
                sys.setswitchinterval(_handovers["saved"])


def _chunks(lines: Iterable[SettlementLine], size: int) -> Iterator[list[SettlementLine]]:
    iterator = iter(lines)
    while batch := list(islice(iterator, size)):
        yield batch


def _copy_line(line_number: int, gateway: str, line: SettlementLine, fixed: tuple[str, str]) -> str:
    """One row of the stage table in COPY's text format: its ``line``, then the columns of :data:`COLUMNS`
    (``fixed``: the source and the time received, already in that format)."""
    text = _copy_text
    return (f"{line_number}\t{gateway}\t{text(line.kind)}\t{text(line.entity_id)}\t{line.amount_minor}\t"
            f"{text(line.currency)}\t{line.fee_minor}\t{line.tax_minor}\t{line.credit_minor}\t{line.debit_minor}\t"
            f"{text(line.settlement_id)}\t{text(line.utr)}\t{_copy_time(line.settled_at)}\t{text(line.payment_id)}\t"
            f"{text(line.gateway_order_id)}\t{text(line.dispute_id)}\t{fixed[0]}\t{text(json.dumps(dict(line.raw)))}\t"
            f"{fixed[1]}\n")


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str | None) -> str:
    """A value in COPY's text format: ``\\N`` for NULL; backslash, tab, newline and return escaped."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


@lru_cache(maxsize=4_096)
def _copy_time(seconds: int | None) -> str:
    """A report has a few distinct settlement times: each formatted once."""
    return "\\N" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


class _ChunkWriter(threading.Thread):
    """COPYs each chunk it is given into the stage table and inserts it matched, in order, alone on the
    connection (the thread that gives the chunks does not use it until :meth:`finish`)."""

    def __init__(self, connection, now: datetime):
        super().__init__(name="settlement-chunk-writer", daemon=True)
        self.connection, self.now = connection, now
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self.new, self.error = 0, None
        self.stop = threading.Event()

    def put(self, rows: bytes) -> None:
        while not self.stop.is_set():
            try:
                self.chunks.put(rows, timeout=0.5)
                return
            except queue.Full:
                continue
        raise RuntimeError("the settlement writer stopped") from self.error

    def abandon(self) -> None:
        """Write nothing more; wait for the chunk being written (the connection is free afterwards)."""
        self.stop.set()
        with contextlib.suppress(queue.Empty):
            self.chunks.get_nowait()
        with contextlib.suppress(queue.Full):
            self.chunks.put_nowait(None)
        self.join()

    def finish(self) -> int:
        """Wait for every chunk given; raise what the writer raised. Returns the rows inserted."""
        while self.is_alive():
            try:
                self.chunks.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self.join()
        if self.error is not None:
            raise self.error
        return self.new

    def run(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DROP AS SELECT 0::bigint AS "
                               f"line, {', '.join(COLUMNS)} FROM settlement_rows WITH NO DATA")
                cursor.execute(f"TRUNCATE {_STAGE}")  # a caller that went on after a failed import left rows
                cursor.execute("SET LOCAL enable_hashjoin = off")  # index lookups per row (insert_matched)
                cursor.execute("SET LOCAL enable_mergejoin = off")
                cursor.execute("SET LOCAL work_mem = '64MB'")  # a chunk sorted by line in memory, not on disk
                inserts = insert_matched(_STAGE, COLUMNS)
                while (rows := self.chunks.get()) is not None and not self.stop.is_set():
                    with cursor.copy(f"COPY {_STAGE} (line, {', '.join(COLUMNS)}) FROM STDIN") as copy:
                        copy.write(rows)
                    for insert in inserts:
                        cursor.execute(insert, {"now": self.now})
                        self.new += max(0, cursor.rowcount)
                    cursor.execute(f"TRUNCATE {_STAGE}")
                for setting in ("enable_hashjoin", "enable_mergejoin", "work_mem"):
                    cursor.execute(f"SET LOCAL {setting} TO DEFAULT")
        except BaseException as exc:  # noqa: BLE001  (handed to the reading thread, which raises it)
            self.error = exc
            self.stop.set()
