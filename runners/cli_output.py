"""Output of the command line: JSON-safe values, tables and progress bars (drawn by Rich).

Tables keep the layout the README documents, whatever the output is: a header row, a row of
dashes, left-aligned columns two spaces apart, no box characters and no trailing blanks; the
table is as wide as its cells (never fitted to a terminal, never wrapped), a cell longer than
its column's limit is cut with ``…``.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import BaseModel
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.progress import BarColumn, ProgressColumn, Task, TextColumn
from rich.progress import Progress as RichProgress
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from simledger.application.audit_log import plain

UNLIMITED = 1_000_000
"""The width tables are laid out in: wider than any table, so Rich never fits or wraps one."""


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


def key_data(data: Mapping[str, Any]) -> str:
    """An event's fields as ``key=value`` pairs, empty values left out."""
    return " ".join(f"{k}={text(v)}" for k, v in data.items() if v not in (None, "", [], (), {}))


# ---- tables -------------------------------------------------------------------------------------
class _Dashes:
    """The header's underline: as wide as its column, without widening it."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Segment("-" * options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, 1)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str], *, width: int = 60
) -> None:
    """Left-aligned columns two spaces apart under a header row and a row of dashes; cells
    longer than ``width`` are cut."""
    grid = _grid(show_header=True)
    for header in headers:
        grid.add_column(Text(header), max_width=width, no_wrap=True, overflow="ellipsis")
    grid.add_row(*(_Dashes() for _ in headers))
    for row in rows:
        grid.add_row(*(Text(text(cell)) for cell in row))
    _write(grid, out)


def fields(model: BaseModel, out: IO[str]) -> None:
    """A model as ``name  value`` lines, the values aligned."""
    grid = _grid(show_header=False)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    for key, value in model.model_dump().items():
        grid.add_row(Text(key), Text(text(value)))
    _write(grid, out)


def _grid(*, show_header: bool) -> Table:
    # No box, one blank of padding on each inner side of a cell: columns two spaces apart.
    return Table(box=None, padding=(0, 1), pad_edge=False, show_header=show_header,
                 header_style=None, show_edge=False)  # fmt: skip


def _write(grid: Table, out: IO[str]) -> None:
    """``grid`` as plain text on ``out``: no styles (the output is read by scripts as much as by
    people), each line without its trailing blanks (Rich pads every cell to its column)."""
    console = Console(file=io.StringIO(), width=UNLIMITED, color_system=None, force_terminal=False,
                      highlight=False, markup=False, emoji=False)  # fmt: skip
    with console.capture() as captured:
        console.print(grid)
    for line in captured.get().splitlines():
        out.write(line.rstrip() + "\n")


# ---- progress -----------------------------------------------------------------------------------
class _Count(ProgressColumn):
    """``done/total share`` (``1,200/5,000  24%``), or ``done`` while the total is unknown."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if not task.total:
            return Text(f"{done:,}")
        share = min(1.0, done / task.total)
        return Text(f"{done:,}/{int(task.total):,} {share:4.0%}")


class _Stderr(Console):
    def show_cursor(self, show: bool = True) -> bool:
        # Rich hides the cursor while a bar is drawn; a command killed meanwhile (SIGTERM,
        # SIGKILL) would leave the user's terminal without one. The bar is one line: no need.
        return False


class Progress:
    """A progress bar (or a counter, when the total is unknown) on stderr, drawn by Rich and
    only when stderr is a terminal, from the first ``update`` on."""

    def __init__(
        self, label: str, total: int | None = None, *, stream: IO[str] | None = None
    ) -> None:
        stream = stream or sys.stderr
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        # force_terminal: a terminal is what isatty() says, whatever FORCE_COLOR and the like.
        console = _Stderr(file=stream, force_terminal=self.enabled, highlight=False)
        self._bar = RichProgress(
            TextColumn(label),
            BarColumn(bar_width=30),
            _Count(),
            console=console,
            disable=not self.enabled,
            redirect_stdout=False,  # stdout carries the command's output, never the bar
            redirect_stderr=False,
            refresh_per_second=10,
        )
        self._task = self._bar.add_task(label, total=total)
        self.done = 0
        self._started = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.done = done
        if not self.enabled:
            return
        self._bar.update(self._task, completed=done, total=total, refresh=force and self._started)
        if not self._started:
            self._bar.start()  # draws the bar as it now is
            self._started = True

    def add(self, count: int) -> None:
        self.update(self.done + count)

    def close(self) -> None:
        if self._started:
            self._bar.stop()  # draws the last state and ends the line
            self._started = False


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


def write_jsonl(records: Iterator[dict[str, Any]], out: IO[str]) -> int:
    """One compact JSON object per line; returns how many lines were written."""
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count
