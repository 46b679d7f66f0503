"""Importing a settlement report file (PayGlocal's dashboard export: it has no settlement API), in one
transaction: a file with one bad row is refused with the line and column named, and nothing of it is kept;
the same file imported twice is imported once (by its SHA-256). New rows are stored already matched (on
Postgres); ``settlement_match.match`` afterwards asks for the rechecks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update

from db import queries
from db.models import SettlementImport
from gateways.payglocal.settlement_report import MalformedReport, load_mapping, read_report
from worker.deps import Deps
from worker.logging import get_logger
from worker.services.settlement_store import store_all

#: The gateways whose reports can be imported, and how each is read.
READERS = {"payglocal": lambda deps: load_mapping(deps.settings.payglocal_report_mapping)}


@dataclass(frozen=True, slots=True)
class Imported:
    gateway: str
    file_name: str
    sha256: str
    rows: int  #: rows in the file
    new: bool  #: False: this very file was imported before (nothing was added)
    new_rows: int = 0  #: rows not held before (the others: the same transactions, from another file or a pull)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_report(path: Path, gateway: str, *, deps: Deps, imported_by: str,
                  progress: Callable[[int], None] | None = None) -> Imported:
    """Store every row of the report at ``path``; ``progress(n)`` after each batch of rows. Raises
    MalformedReport (nothing kept) or LookupError (no report format for ``gateway``)."""
    if gateway not in READERS:
        raise LookupError(f"no settlement report format for {gateway!r} (known: {sorted(READERS)})")
    mapping = READERS[gateway](deps)
    sha = file_sha256(path)
    source = f"import:{sha[:16]}"
    with deps.unit() as uow:
        # The file's hash is claimed first: a second import of it at the same time waits here for the first,
        # then finds it imported.
        claimed = queries.insert_ignore(uow.session, SettlementImport, {
            "sha256": sha, "gateway": gateway, "file_name": path.name[:255], "rows": 0,
            "imported_by": imported_by[:120], "created_at": uow.now}, ("sha256",))
        if claimed is None:
            earlier = uow.session.get(SettlementImport, sha)
            return Imported(gateway, path.name, sha, earlier.rows if earlier else 0, new=False)
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows, new_rows = store_all(uow.session, gateway, read_report(handle, mapping), source=source,
                                       now=uow.now, progress=progress)
        if rows == 0:
            raise MalformedReport(f"{path.name}: no rows after the header")
        uow.session.execute(update(SettlementImport).where(SettlementImport.sha256 == sha).values(rows=rows))
        uow.audit("settlements_import", requested_by=imported_by[:120], reason=None,
                  outcome={"gateway": gateway, "file": path.name, "sha256": sha, "rows": rows, "new_rows": new_rows})
        uow.commit()
    get_logger(gateway=gateway).info("settlement_report_imported", file=path.name, rows=rows, new_rows=new_rows)
    return Imported(gateway, path.name, sha, rows, new=True, new_rows=new_rows)
