"""CSV import and export of SimLedger (R-IO1, R-BK4).

Filled in by the bulk-operations work; kept apart from the commands in ``ledger.py``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

from simledger.adapters.batch_load import load_many
from simledger.adapters.logs import get_logger
from simledger.domain.errors import CsvImportError, InvalidIccid
from simledger.domain.iccid import normalise_iccid
from simledger.domain.types import SimType

if TYPE_CHECKING:
    from simledger.domain.sim import Sim
    from simledger.runners.ledger import SimLedger

log = get_logger("simledger")

IMPORT_COLUMNS = ("iccid", "operator", "sim_type", "esim")
"""The columns of a delivery file, named in its header (any order, case-insensitive)."""

PROGRESS_EVERY = 10_000
"""Rows between two progress log records."""

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0", ""})


@dataclass(frozen=True)
class DeliveryRow:
    """A valid row of a delivery file."""

    line: int
    iccid: str
    operator: str
    sim_type: SimType
    esim: bool


def _text_lines(stream: IO[str] | IO[bytes] | Iterable[str]) -> Iterable[str]:
    """Text lines of ``stream``; a binary stream is read as UTF-8 (a BOM is dropped)."""
    if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return io.TextIOWrapper(cast(IO[bytes], stream), encoding="utf-8-sig", newline="")
    return cast(Iterable[str], stream)


Record = list[str] | csv.Error


def _records(lines: Iterable[str]) -> Iterator[tuple[int, Record]]:
    """(line number where the record starts, its fields or why it is unreadable) for every
    record that is not blank."""
    reader = csv.reader(lines)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, error
            continue
        if any(cell.strip() for cell in row):
            yield start, row


def _header(fields: list[str]) -> dict[str, int] | str:
    """Column positions by name, or why the header is wrong."""
    names = [f.strip().lstrip("\ufeff").strip().lower() for f in fields]
    expected = ",".join(IMPORT_COLUMNS)
    missing = [c for c in IMPORT_COLUMNS if c not in names]
    unknown = [n for n in names if n not in IMPORT_COLUMNS]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if not (missing or unknown or repeated):
        return {name: names.index(name) for name in IMPORT_COLUMNS}
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
    if repeated:
        problems.append(f"column(s) named twice: {', '.join(repeated)}")
    return f"expected the header {expected}; {'; '.join(problems)}"


def _esim(value: str) -> bool | None:
    flag = value.strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    return None


def _row(line: int, fields: Record, columns: dict[str, int]) -> DeliveryRow | str:
    """A valid row, or every reason it is not (joined with ``; ``)."""
    if isinstance(fields, csv.Error):
        return f"unreadable CSV: {fields}"
    if len(fields) != len(IMPORT_COLUMNS):
        return (
            f"expected {len(IMPORT_COLUMNS)} fields ({','.join(IMPORT_COLUMNS)}), got {len(fields)}"
        )
    raw = {name: fields[index] for name, index in columns.items()}
    reasons: list[str] = []
    iccid = ""
    try:
        iccid = normalise_iccid(raw["iccid"])
    except InvalidIccid as error:
        reasons.append(error.message)
    operator = raw["operator"].strip()
    if not operator:
        reasons.append("operator is empty")
    sim_type: SimType | None = None
    try:
        sim_type = SimType(raw["sim_type"].strip().lower())
    except ValueError:
        reasons.append(
            f"unknown SIM type {raw['sim_type']!r}; one of {', '.join(t.value for t in SimType)}"
        )
    esim = _esim(raw["esim"])
    if esim is None:
        reasons.append(f"eSIM must be true/false, yes/no or 1/0 (or blank): {raw['esim']!r}")
    if reasons or sim_type is None or esim is None:
        return "; ".join(reasons)
    return DeliveryRow(line=line, iccid=iccid, operator=operator, sim_type=sim_type, esim=esim)


class CsvTransfer:
    """Mixin of SimLedger: delivery import and SIM list export."""

    def import_sims_csv(self, stream: IO[str] | IO[bytes] | Iterable[str]) -> list[str]:
        """Receive the SIMs of a delivery file (header ``iccid,operator,sim_type,esim``).

        All or nothing (R-IO1): any bad row raises :class:`CsvImportError` whose ``errors``
        maps the line number in the file (header = line 1) of EVERY bad row to its reasons,
        and nothing is recorded. A good file is received in one transaction through the same
        path as ``receive_sims`` (each SIM ``pending``, or ``not_available`` for an operator
        without integration). Returns the ICCIDs received, in file order.
        """
        records = _records(_text_lines(stream))
        first = next(records, None)
        if first is None:
            raise CsvImportError({1: f"empty file; expected the header {','.join(IMPORT_COLUMNS)}"})
        header_line, header_fields = first
        columns = (
            f"unreadable CSV: {header_fields}"
            if isinstance(header_fields, csv.Error)
            else _header(header_fields)
        )
        if isinstance(columns, str):
            raise CsvImportError({header_line: columns})
        errors: dict[int, str] = {}
        rows: list[DeliveryRow] = []
        first_seen: dict[str, int] = {}
        count = 0
        for count, (line, fields) in enumerate(records, 1):
            parsed = _row(line, fields, columns)
            if isinstance(parsed, str):
                errors[line] = parsed
            elif parsed.iccid in first_seen:
                errors[line] = f"ICCID {parsed.iccid} is already on line {first_seen[parsed.iccid]}"
            else:
                first_seen[parsed.iccid] = line
                rows.append(parsed)
            if count % PROGRESS_EVERY == 0:
                log.info("csv.import.progress", rows=count, bad=len(errors))
        log.info("csv.import.read", rows=count, bad=len(errors))
        from simledger.runners.ledger import command

        return command(self._receive_delivery)(rows, errors)

    def _receive_delivery(self, rows: list[DeliveryRow], errors: dict[int, str]) -> list[str]:
        """Check the rows against the store, then save them all at once (re-run on conflict)."""
        ledger = cast("SimLedger", self)
        errors = dict(errors)
        existing = load_many(ledger, [row.iccid for row in rows])
        for row in rows:
            if row.iccid in existing:
                errors[row.line] = f"ICCID {row.iccid} was already received"
        if errors:
            log.info("csv.import.refused", bad=len(errors))
            raise CsvImportError(errors)
        groups: dict[tuple[str, SimType, bool], list[str]] = {}
        for row in rows:
            groups.setdefault((row.operator, row.sim_type, row.esim), []).append(row.iccid)
        sims: list[Sim] = []
        for (operator, sim_type, esim), keys in groups.items():
            sims.extend(ledger._new_sims(keys, operator, sim_type, esim))
        if sims:
            ledger.save(*sims)
        log.info("sims.imported", count=len(sims), groups=len(groups))
        return [row.iccid for row in rows]
