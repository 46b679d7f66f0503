"""Importing a settlement report file (PayGlocal's dashboard export: it has no settlement API), in one
transaction: a file with one bad row is refused with the line and column named, and nothing of it is kept;
the same file imported twice is imported once (by its SHA-256)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from db.models import SettlementImport
from gateways.payglocal.settlement_report import MalformedReport, load_mapping, read_report
from worker.deps import Deps
from worker.logging import get_logger
from worker.services.settlement_store import store

BATCH = 5_000
#: The gateways whose reports can be imported, and how each is read.
READERS = {"payglocal": lambda deps: load_mapping(deps.settings.payglocal_report_mapping)}


@dataclass(frozen=True, slots=True)
class Imported:
    gateway: str
    file_name: str
    sha256: str
    rows: int
    new: bool  #: False: this very file was imported before (nothing was added)


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
        earlier = uow.session.get(SettlementImport, sha)
        if earlier is not None:
            return Imported(gateway, path.name, sha, earlier.rows, new=False)
        rows = 0
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = read_report(handle, mapping)
            while batch := list(islice(lines, BATCH)):
                rows += store(uow.session, gateway, batch, source=source, now=uow.now)
                if progress is not None:
                    progress(rows)
        if rows == 0:
            raise MalformedReport(f"{path.name}: no rows after the header")
        uow.session.add(SettlementImport(sha256=sha, gateway=gateway, file_name=path.name[:255], rows=rows,
                                         imported_by=imported_by, created_at=uow.now))
        uow.audit("settlements_import", requested_by=imported_by, reason=None,
                  outcome={"gateway": gateway, "file": path.name, "sha256": sha, "rows": rows})
        uow.commit()
    get_logger(gateway=gateway).info("settlement_report_imported", file=path.name, rows=rows)
    return Imported(gateway, path.name, sha, rows, new=True)
