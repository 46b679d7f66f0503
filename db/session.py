"""Engines and session factories, built on request (never at import time)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # LIFO: the connection used last is used next, so at low load the same few stay warm and the rest age past
    # PING_WHEN_IDLE_S (pinged, or closed by the server) instead of every one being pinged in turn.
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True)
    _ping_when_idle(engine)
    return engine


#: A pooled connection idle for longer than this is pinged before use. One returned a moment ago is not:
#: the ping is a round trip per transaction, a tenth of a webhook's CPU (issue 13), and a connection cut
#: in that moment fails its statement instead, which SQLAlchemy takes as a disconnect (the pool is
#: invalidated) and the caller's retry (the gateway's, Dramatiq's) meets a fresh connection.
PING_WHEN_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections that sat in the pool (SQLAlchemy's documented checkout-event recipe:
    raising ``DisconnectionError`` makes the pool discard the connection and check out another)."""
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_WHEN_IDLE_S:
            return  # new, or back in the pool a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(f"idle pooled connection failed its ping: {error}") from error


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # the driver's own BEGIN off: _sqlite_begin_immediate says when
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _sqlite_begin_immediate(connection) -> None:
    """SQLite has no row locks (``FOR UPDATE`` is ignored): each transaction takes the database's write lock
    when it begins, so the embedded default serialises units of work the way Postgres's row locks do (two
    threads deciding on the same order one after the other, never on the same stale read). SQLAlchemy's
    documented recipe for pysqlite's transactions."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")
