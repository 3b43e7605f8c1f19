"""The usage files of ``simledger usage`` (R-US1, R-IO1): CSV or JSON Lines, read once, in
chunks, so a file of any size (or a pipe) goes through in bounded memory.

* **CSV**: a header naming ``record_id,iccid,mb,at`` and optionally ``country`` (any order,
  case-insensitive), then one record per row.
* **JSON Lines** (``.jsonl``, ``.ndjson``): one JSON object per line with those keys.

A problem with the file itself (bytes that are not UTF-8, a wrong or missing header) raises
:class:`CsvImportError` (R-IO1) naming the line; the chunks before it were handed out
already, which is harmless: sent again, their records are duplicates (R-US1). A row that
cannot be read as a record (a wrong number of fields, a line that is not a JSON object) is
handed out as its reason, for the caller to report with its line number.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import IO, Any, Literal, cast

import orjson

from simledger.adapters.csv_format import _records, _text_lines, header_positions
from simledger.domain.errors import CsvImportError
from simledger.domain.usage import USAGE_FIELDS

UsageFormat = Literal["csv", "jsonl"]

REQUIRED_COLUMNS = USAGE_FIELDS[:4]
"""The columns a usage CSV must name; ``country`` may be left out."""

CHUNK = 5000
"""Records per chunk: one ``record_usage_batch`` each."""

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})

Item = dict[str, Any] | str
"""A record's fields by name, or why its line is not a record."""


def format_of(file: str, given: str | None = None) -> UsageFormat:
    """``given`` (``csv`` or ``jsonl``), else the file's: JSON Lines for ``.jsonl`` and
    ``.ndjson``, CSV otherwise (stdin, ``-``, included)."""
    if given is not None:
        if given not in ("csv", "jsonl"):
            raise ValueError(f"unknown usage file format {given!r}; csv or jsonl")
        return cast(UsageFormat, given)
    return "jsonl" if PurePath(file).suffix.lower() in JSONL_SUFFIXES else "csv"


def read_usage(
    stream: IO[bytes] | IO[str] | Iterable[str], form: UsageFormat, *, chunk: int = CHUNK
) -> Iterator[list[tuple[int, Item]]]:
    """The file's records in chunks of at most ``chunk``: (line number, record or reason)."""
    items = _csv_items(stream) if form == "csv" else _jsonl_items(stream)
    batch: list[tuple[int, Item]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _header(fields: list[str]) -> dict[str, int] | str:
    """Column positions by name, or why the header is wrong."""
    expected = f"expected the header {','.join(USAGE_FIELDS)} (country optional)"
    return header_positions(fields, REQUIRED_COLUMNS, USAGE_FIELDS, expected)


def _csv_items(stream: IO[bytes] | IO[str] | Iterable[str]) -> Iterator[tuple[int, Item]]:
    undecodable: dict[int, str] = {}
    records = _records(_text_lines(stream, undecodable), undecodable)
    first = next(records, None)
    if first is None:
        raise CsvImportError({1: f"empty file; expected the header {','.join(USAGE_FIELDS)}"})
    line, fields = first
    columns = fields if isinstance(fields, str) else _header(fields)
    if isinstance(columns, str):
        raise CsvImportError({line: columns})
    for line, fields in records:
        if line in undecodable:
            raise CsvImportError({line: undecodable[line]})
        if isinstance(fields, str):
            yield line, fields
        elif len(fields) != len(columns):
            yield line, f"expected {len(columns)} fields ({','.join(columns)}), got {len(fields)}"
        else:
            yield line, {name: fields[index] for name, index in columns.items()}


def _jsonl_items(stream: IO[bytes] | IO[str] | Iterable[str]) -> Iterator[tuple[int, Item]]:
    lines: Iterable[bytes | str] = stream
    if isinstance(stream, io.TextIOBase):
        lines = cast(IO[str], stream)
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise CsvImportError(
                    {
                        number: f"not UTF-8 text: byte 0x{raw[error.start]:02X} at byte "
                        f"{error.start + 1}; save the file as UTF-8"
                    }
                ) from None
        else:
            text = raw.lstrip("\ufeff") if number == 1 else raw
        if not text.strip():
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            yield number, f"not JSON: {error}"
            continue
        if not isinstance(value, dict):
            yield number, f"a record is a JSON object, not {type(value).__name__}"
            continue
        yield number, value
