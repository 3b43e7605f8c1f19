"""A usage file fed to a ledger chunk by chunk (``simledger usage``, R-US1, R-IO1).

The file (adapters/usage_format.py) is read once, in chunks of ``CHUNK`` records, each
chunk one ``record_usage_batch`` (one transaction): memory stays bounded whatever the
file's size, and a pipe works. A problem with the file itself stops the reading with
:class:`CsvImportError`; the chunks before it stay recorded, and the fixed file sent again
finds their records already counted (duplicates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from simledger.adapters.usage_format import CHUNK, UsageFormat, read_usage
from simledger.application.results import UsageResult

Batch = Callable[[Sequence[Mapping[str, Any]]], UsageResult]
"""A ledger's ``record_usage_batch``."""


@dataclass
class UsageFileRun:
    """The totals of one file so far: records applied, duplicates, and each rejected
    record (its ``record_id``, or ``line N`` when it has none or is no record) with the
    reason, rule id first."""

    applied: int = 0
    duplicates: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    read: int = 0
    """Records (lines) read so far."""

    def feed(
        self,
        batch: Batch,
        stream: IO[bytes] | IO[str] | Iterable[str],
        form: UsageFormat,
        *,
        chunk: int = CHUNK,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        """Send every chunk of the file to ``batch``, adding up its answers; ``on_chunk``
        is told the records read after each. Raises :class:`CsvImportError` (R-IO1) at
        the first problem with the file itself, the totals then those of the chunks
        before it."""
        for items in read_usage(stream, form, chunk=chunk):
            records: list[Mapping[str, Any]] = []
            lines: list[int] = []
            for line, item in items:
                if isinstance(item, str):
                    self.rejected[f"line {line}"] = f"R-IO1: {item}"
                else:
                    records.append(item)
                    lines.append(line)
            result = batch(records)
            self.applied += result.applied
            self.duplicates += result.duplicates
            for key, reason in result.rejected.items():
                # A record without a record_id is named by its position in the batch.
                named = f"line {lines[int(key[1:]) - 1]}" if key.startswith("#") else key
                self.rejected[named] = reason
            self.read += len(items)
            if on_chunk is not None:
                on_chunk(self.read)
