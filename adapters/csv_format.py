"""The CSV formats of the ledger (R-IO1, R-BK4): reading a delivery file, writing a SIM list
export.

Two different formats:

* the **delivery file** (:func:`delivery_rows`): the four columns ``iccid,operator,
  sim_type,esim`` describing SIMs that arrive (:data:`IMPORT_COLUMNS`);
* the **SIM list export** (:func:`export_row`): every column of the SIM list view
  (:data:`EXPORT_COLUMNS`). An export is not a delivery file and cannot be read as one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any, cast

from simledger.adapters.logs import get_logger
from simledger.domain.errors import CsvImportError, InvalidIccid, InvalidValue
from simledger.domain.iccid import normalise_iccid
from simledger.domain.types import LABEL_SEPARATOR, SimType
from simledger.domain.values import NAME_MAX, clean_text

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


_ESCAPED = re.compile("[\udc80-\udcff]")
"""A byte that is not UTF-8, as the ``surrogateescape`` error handler decodes it."""


def _text_lines(
    stream: IO[str] | IO[bytes] | Iterable[str], undecodable: dict[int, str]
) -> Iterable[str]:
    """Text lines of ``stream``, read once as they come (a pipe cannot be read twice); a
    binary stream is read as UTF-8 (a BOM is dropped) and each line holding bytes that are
    not UTF-8 is noted in ``undecodable`` (line number -> reason)."""
    if not isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return cast(Iterable[str], stream)
    # surrogateescape, not strict: a strict decoder fails on a whole chunk of the file, far
    # from the line that holds the bad bytes, and stops the reading of every later row.
    text = io.TextIOWrapper(
        cast(IO[bytes], stream), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    return _noting_undecodable(text, undecodable)


def _noting_undecodable(lines: Iterable[str], undecodable: dict[int, str]) -> Iterator[str]:
    # Numbered as csv.reader numbers them: one per line the stream yields.
    for number, line in enumerate(lines, 1):
        if not line.isascii() and (bad := _ESCAPED.search(line)) is not None:
            byte = ord(bad.group()) - 0xDC00
            undecodable[number] = (
                f"not UTF-8 text: byte 0x{byte:02X} at character {bad.start() + 1}; "
                "save the file as UTF-8"
            )
        yield line


Record = list[str] | str
"""A record's fields, or why it cannot be read."""


def _records(lines: Iterable[str], undecodable: dict[int, str]) -> Iterator[tuple[int, Record]]:
    """(line number where the record starts, its fields or why it is unreadable) for every
    record that is not blank. A record with bytes that are not UTF-8 is reported at the line
    that holds them."""
    reader = csv.reader(lines)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, f"unreadable CSV: {error}"
            continue
        if undecodable:
            bad = [n for n in range(start, reader.line_num + 1) if n in undecodable]
            if bad:
                yield bad[0], undecodable[bad[0]]
                continue
        if any(cell.strip() for cell in row):
            yield start, row


def _header(fields: list[str]) -> dict[str, int] | str:
    """Column positions by name, or why the header is wrong."""
    return header_positions(
        fields, IMPORT_COLUMNS, IMPORT_COLUMNS, f"expected the header {','.join(IMPORT_COLUMNS)}"
    )


def header_positions(
    fields: list[str], required: Iterable[str], allowed: Iterable[str], expected: str
) -> dict[str, int] | str:
    """A CSV header's column positions by name (every ``required`` one present, none but
    the ``allowed``, none twice), or ``expected`` and what is wrong with it."""
    names = [f.strip().lstrip("\ufeff").strip().lower() for f in fields]
    missing = [c for c in required if c not in names]
    unknown = [n for n in names if n not in allowed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if not (missing or unknown or repeated):
        return {name: names.index(name) for name in names}
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
    if repeated:
        problems.append(f"column(s) named twice: {', '.join(repeated)}")
    return f"{expected}; {'; '.join(problems)}"


def _esim(value: str) -> bool | None:
    flag = value.strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    return None


def _row(line: int, fields: Record, columns: dict[str, int]) -> DeliveryRow | str:
    """A valid row, or every reason it is not (joined with ``; ``)."""
    if isinstance(fields, str):
        return fields
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
    else:
        try:
            operator = clean_text(operator, "operator", limit=NAME_MAX)
        except InvalidValue as error:
            reasons.append(error.message)
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
    "regular_groups",
    "always_on",
    "cost_month",
)
"""The header of a SIM list export: the fields of ``SimListItem`` (the R-SIM2 columns of the
SIM list view, then the ids and times it carries), in their order. Stable: a column is only
ever added at the end."""

EXPORT_PAGE = 1000
"""Rows read from the view per ``sims()`` call (its largest ``limit``)."""

LIST_SEPARATOR = LABEL_SEPARATOR
"""Joins the items of a list column (labels, rules) in one CSV field."""


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV
injection"): a text cell that starts with one is written with a ``'`` before it."""


def csv_value(value: object) -> str:
    """The text of one export field: "" for None, ``true``/``false``, an enum's value, a
    decimal in plain notation (never ``1E+3``), a time in ISO 8601 UTC, list items joined
    with :data:`LIST_SEPARATOR`, anything else (ICCIDs, UUIDs, whole numbers) as ``str``.

    Text (a ``str`` or a list, never a number, time or enum) that starts with one of
    :data:`FORMULA_STARTS` gets a ``'`` in front, so that a spreadsheet opening the export
    shows it as text instead of running it as a formula (an operator or a note the ledger
    was given is not trusted)."""
    text = _text(value)
    is_text = isinstance(value, (str, list, tuple)) and not isinstance(value, Enum)
    return "'" + text if is_text and text.startswith(FORMULA_STARTS) else text


def _text(value: object) -> str:
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
        return LIST_SEPARATOR.join(_text(item) for item in value)
    return str(value)


def delivery_rows(
    stream: IO[str] | IO[bytes] | Iterable[str], errors: dict[int, str]
) -> Iterator[DeliveryRow]:
    """The valid rows of a delivery file, in file order, as they are read (nothing kept:
    memory does not grow with the file); every bad line's reasons go to ``errors``. An
    ICCID listed twice is not checked here (the caller holds the ICCIDs). A missing or wrong
    header raises :class:`CsvImportError` at the first row asked for."""
    undecodable: dict[int, str] = {}
    records = _records(_text_lines(stream, undecodable), undecodable)
    first = next(records, None)
    if first is None:
        raise CsvImportError({1: f"empty file; expected the header {','.join(IMPORT_COLUMNS)}"})
    header_line, header_fields = first
    columns = header_fields if isinstance(header_fields, str) else _header(header_fields)
    if isinstance(columns, str):
        raise CsvImportError({header_line: columns})
    count = 0
    for count, (line, fields) in enumerate(records, 1):
        parsed = _row(line, fields, columns)
        if isinstance(parsed, str):
            errors[line] = parsed
        else:
            yield parsed
        if count % PROGRESS_EVERY == 0:
            log.info("csv.import.progress", rows=count, bad=len(errors))
    log.info("csv.import.read", rows=count, bad=len(errors))


def export_row(item: Any) -> list[str]:
    """The fields of one SIM list item (``SimListItem``) in :data:`EXPORT_COLUMNS` order."""
    return [csv_value(getattr(item, column)) for column in EXPORT_COLUMNS]


@contextmanager
def text_stream(stream: IO[str] | IO[bytes]) -> Iterator[IO[str]]:
    """``stream`` to write text to: itself, or a binary one wrapped to write UTF-8 (flushed
    and left open at the end)."""
    if not isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        yield cast(IO[str], stream)
        return
    wrapper = io.TextIOWrapper(cast(IO[bytes], stream), encoding="utf-8", newline="")
    try:
        yield wrapper
    finally:
        wrapper.flush()
        wrapper.detach()
