"""CSV import and export of SimLedger (R-IO1, R-BK4).

Two different formats, kept apart from the commands in ``ledger.py``:

* the **delivery file** read by ``import_sims_csv``: the four columns ``iccid,operator,
  sim_type,esim`` describing SIMs that arrive (:data:`IMPORT_COLUMNS`);
* the **SIM list export** written by ``export_sims_csv``: every column of the SIM list view
  (:data:`EXPORT_COLUMNS`). An export is not a delivery file and cannot be imported back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, TYPE_CHECKING, Any, cast

from simledger.adapters.logs import get_logger
from simledger.adapters.store.batch_load import load_many
from simledger.domain.errors import CsvImportError, InvalidIccid, InvalidInput
from simledger.domain.iccid import normalise_iccid
from simledger.domain.types import LABEL_SEPARATOR, SimType

if TYPE_CHECKING:
    from simledger.application.ledger import SimLedger
    from simledger.domain.sim import Sim

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


EXPORT_COLUMNS: tuple[str, ...] = (
    "iccid",
    "esim",
    "status",
    "in_session",
    "operator",
    "plan",
    "company",
    "end_user",
    "data_left_mb",
    "days_left",
    "this_month_mb",
    "note",
    "rules",
    "labels",
    "sim_type",
    "group_id",
    "package_id",
    "copy_id",
    "expires_at",
    "suspended_reason",
    "version",
    "updated_at",
)
"""The header of a SIM list export: the fields of ``SimListItem`` (the R-SIM2 columns of the
SIM list view, then the ids and times it carries), in their order. Stable: a column is only
ever added at the end."""

EXPORT_FILTERS = frozenset(
    {
        "status",
        "sim_type",
        "operator",
        "company",
        "label",
        "group_id",
        "search",
        "sort",
        "descending",
    }
)
"""The keywords of ``sims()`` that ``export_sims_csv`` accepts."""

EXPORT_PAGE = 1000
"""Rows read from the view per ``sims()`` call (its largest ``limit``)."""

LIST_SEPARATOR = LABEL_SEPARATOR
"""Joins the items of a list column (labels, rules) in one CSV field."""


def csv_value(value: object) -> str:
    """The text of one export field: "" for None, ``true``/``false``, an enum's value, a
    decimal in plain notation (never ``1E+3``), a time in ISO 8601 UTC, list items joined
    with :data:`LIST_SEPARATOR`, anything else (ICCIDs, UUIDs, whole numbers) as ``str``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return when.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(csv_value(item) for item in value)
    return str(value)


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
        from simledger.application.ledger import command

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

    def export_sims_csv(self, stream: IO[str] | IO[bytes], **filters: Any) -> int:
        """Write the SIM list rows that ``sims(**filters)`` selects as CSV (R-BK4); returns
        how many rows were written (the header not counted).

        ``filters`` are the keywords of ``sims()`` except the paging ones: ``status``,
        ``sim_type``, ``operator``, ``company``, ``label``, ``group_id``, ``search``,
        ``sort`` and ``descending``. ``limit`` and ``cursor`` are refused (an export holds
        the whole selection; the view is read 1,000 rows at a time through its cursors), as
        is any other keyword, with :class:`InvalidInput` (R-BK4) before anything is written;
        a bad filter value is refused as ``sims()`` refuses it, also before anything is
        written.

        The file: the header :data:`EXPORT_COLUMNS` (every column of the SIM list view, in
        the order of ``SimListItem``), then one row per SIM in the order ``sort`` /
        ``descending`` give. Fields are those of ``sims()`` in text form (:func:`csv_value`):
        empty for None, ``true``/``false``, enum values, plain decimals, ISO 8601 UTC times,
        labels and rules joined with ``;``; ``days_left`` and ``this_month_mb`` as the view
        computes them with the ledger's clock when each page is read. Reading the file back
        with ``csv.DictReader`` gives, row by row, those same strings. An empty selection
        writes the header alone.

        This is NOT a delivery file: ``import_sims_csv`` reads only ``iccid,operator,
        sim_type,esim`` (:data:`IMPORT_COLUMNS`) and refuses an export's header.

        ``stream``: a text stream (open files with ``newline=""``; rows end with CRLF as
        RFC 4180 says), or a binary one, written as UTF-8. Progress is logged every
        :data:`PROGRESS_EVERY` rows.
        """
        paging = sorted({"limit", "cursor"} & set(filters))
        if paging:
            raise InvalidInput(
                f"an export holds every SIM the filters select: {' and '.join(paging)} "
                "cannot be given (R-BK4)",
                rule="R-BK4",
            )
        unknown = sorted(set(filters) - EXPORT_FILTERS)
        if unknown:
            raise InvalidInput(
                f"unknown export filter(s) {', '.join(unknown)}; "
                f"the filters are {', '.join(sorted(EXPORT_FILTERS))}",
                rule="R-BK4",
            )
        ledger = cast("SimLedger", self)
        page = ledger.sims(**filters, limit=EXPORT_PAGE)  # refuses bad filters: nothing written
        wrapper: io.TextIOWrapper | None = None
        text = cast(IO[str], stream)
        if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
            wrapper = io.TextIOWrapper(cast(IO[bytes], stream), encoding="utf-8", newline="")
            text = wrapper
        log.info("csv.export.start", total=page.total, filters=sorted(filters))
        written = 0
        try:
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(EXPORT_COLUMNS)
            while True:
                writer.writerows(
                    [csv_value(getattr(item, column)) for column in EXPORT_COLUMNS]
                    for item in page.items
                )
                before, written = written, written + len(page.items)
                if written // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    log.info("csv.export.progress", rows=written, total=page.total)
                if page.next_cursor is None:
                    break
                page = ledger.sims(**filters, limit=EXPORT_PAGE, cursor=page.next_cursor)
        finally:
            if wrapper is not None:
                wrapper.flush()
                wrapper.detach()
        log.info("csv.export.written", rows=written)
        return written
