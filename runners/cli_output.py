"""Output helpers of the command line: tables, JSON-safe values, a progress bar on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any
from uuid import UUID

from pydantic import BaseModel


def plain(value: Any) -> Any:
    """``value`` with only JSON types: Decimals as strings, times in ISO 8601, UUIDs and enums
    as strings, sets as sorted lists, models as dicts."""
    if value is None or (isinstance(value, (bool, int, float)) and not isinstance(value, Enum)):
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return plain(value.model_dump())
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(plain(value), indent=indent, ensure_ascii=False)


def text(value: Any) -> str:
    """One cell of a table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        when = value.astimezone(UTC) if value.tzinfo else value
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, (list, tuple, set, frozenset)):
        return ";".join(text(v) for v in value) or "-"
    out = plain(value)
    return out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str], *, width: int = 60
) -> None:
    """Left-aligned columns, two spaces apart; cells longer than ``width`` are cut."""
    cells = [[_cut(text(c), width) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [list(headers), ["-" * w for w in widths], *cells]
    for row in lines:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def key_data(data: Mapping[str, Any], width: int = 70) -> str:
    """An event's fields as ``key=value`` pairs, empty values left out, cut to ``width``."""
    parts = [f"{k}={text(v)}" for k, v in data.items() if v not in (None, "", [], (), {})]
    return _cut(" ".join(parts), width) if parts else ""


def fields(model: BaseModel, out: IO[str]) -> None:
    """A model as ``name: value`` lines."""
    values = model.model_dump()
    width = max(len(k) for k in values)
    for key, value in values.items():
        out.write(f"{key.ljust(width)}  {text(value)}\n")


class Progress:
    """A progress bar (or a counter, when the total is unknown) on stderr, drawn only when
    stderr is a terminal. ``update`` redraws at most ten times a second."""

    def __init__(self, label: str, total: int | None = None, *, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.total = total
        self.done = 0
        self._drawn = 0.0
        self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        self._shown = True
        if self.total:
            share = min(1.0, self.done / self.total)
            bar = "#" * int(share * 30)
            line = f"{self.label} [{bar:<30}] {self.done:,}/{self.total:,} {share:4.0%}"
        else:
            line = f"{self.label} {self.done:,}"
        self.stream.write("\r" + line + "\033[K")
        self.stream.flush()

    def add(self, count: int) -> None:
        self.update(self.done + count)

    def close(self) -> None:
        if self.enabled and self._shown:
            self.update(self.done, force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class ProgressFromLogs(logging.Handler):
    """Feeds a :class:`Progress` from the engine's progress log records (JSON messages with
    an ``event`` ending in ``.progress``), whatever the log level shown to the user."""

    def __init__(self, progress: Progress, count_key: str, total_key: str | None = None):
        super().__init__(logging.INFO)
        self.progress = progress
        self.count_key = count_key
        self.total_key = total_key

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = json.loads(record.getMessage())
        except (ValueError, TypeError):
            return
        if not isinstance(entry, dict) or not str(entry.get("event", "")).endswith(".progress"):
            return
        done = entry.get(self.count_key)
        total = entry.get(self.total_key) if self.total_key else None
        if isinstance(done, int):
            self.progress.update(done, total if isinstance(total, int) else None)
