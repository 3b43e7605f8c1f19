"""The delivery import in bounded memory (R-IO1; issue 14 item 14).

A delivery file is read once, as it comes (a pipe works), and checked whole before anything
is recorded: every bad line is reported and nothing is recorded if one is bad. Only the
ICCIDs are kept for the whole file (the duplicate check, and the list returned); the valid
rows are spooled to a temporary file, then received in chunks of :data:`CHUNK` rows inside
ONE transaction where the store allows it (``UnitOfWork.save_chunks``): the SIMs, events and
encoded rows of one chunk at a time are alive, not those of the whole file.
"""

from __future__ import annotations

import csv
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

from simledger.adapters.csv_format import DeliveryRow, delivery_rows
from simledger.domain.sim import Sim
from simledger.domain.types import SimType

CHUNK = 5000
"""Rows checked against the store per query, and SIMs written per chunk of the save."""

Group = tuple[str, SimType, bool]
"""(operator, SIM type, eSIM): the rows received together by ``new_sims``."""


class Delivery:
    """A checked delivery file: its valid rows spooled (file order), their ICCIDs, and
    every bad line's reasons (ICCIDs already on the store are checked by :meth:`received`)."""

    def __init__(self, stream: IO[str] | IO[bytes] | Iterable[str]) -> None:
        self.errors: dict[int, str] = {}
        self.iccids: list[str] = []
        self._lines = array("q")
        # Closed by ``close`` (the import's ``finally``), not a ``with``: it outlives this call.
        self.spool: IO[str] = tempfile.TemporaryFile(  # noqa: SIM115
            "w+", encoding="utf-8", newline=""
        )
        try:
            self._read(stream)
        except BaseException:
            self.spool.close()
            raise

    def _read(self, stream: IO[str] | IO[bytes] | Iterable[str]) -> None:
        seen: set[str] = set()  # the same str objects as ``iccids``: a slot each, no copy
        repeated: list[tuple[int, str]] = []
        writer = csv.writer(self.spool)
        for row in delivery_rows(stream, self.errors):
            if row.iccid in seen:
                repeated.append((row.line, row.iccid))
                continue
            seen.add(row.iccid)
            self.iccids.append(row.iccid)
            self._lines.append(row.line)
            writer.writerow((row.line, row.iccid, row.operator, row.sim_type.value, int(row.esim)))
        del seen
        if repeated:
            twice = {iccid for _, iccid in repeated}
            first = {i: n for i, n in zip(self.iccids, self._lines, strict=True) if i in twice}
            for line, iccid in repeated:
                self.errors[line] = f"ICCID {iccid} is already on line {first[iccid]}"
        self.spool.flush()

    def close(self) -> None:
        self.spool.close()

    def rows(self) -> Iterator[list[DeliveryRow]]:
        """The valid rows, read back from the spool, :data:`CHUNK` at a time."""
        self.spool.seek(0)
        chunk: list[DeliveryRow] = []
        for line, iccid, operator, kind, esim in csv.reader(self.spool):
            chunk.append(DeliveryRow(int(line), iccid, operator, SimType(kind), esim == "1"))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def received(self, existing: Callable[[list[str]], Sequence[str]]) -> dict[int, str]:
        """The lines whose ICCID ``existing`` says is recorded already, and why."""
        found: dict[int, str] = {}
        for start in range(0, len(self.iccids), CHUNK):
            keys = self.iccids[start : start + CHUNK]
            known = set(existing(keys))
            for offset, iccid in enumerate(keys):
                if iccid in known:
                    found[self._lines[start + offset]] = f"ICCID {iccid} was already received"
        return found


def new_sims(
    chunk: Sequence[DeliveryRow],
    make: Callable[[list[str], str, SimType, bool], list[Sim]],
    groups: set[Group],
) -> list[Sim]:
    """The SIMs of one chunk, made by ``make`` group by group (``groups`` notes each)."""
    by_group: dict[Group, list[str]] = {}
    for row in chunk:
        by_group.setdefault((row.operator, row.sim_type, row.esim), []).append(row.iccid)
    sims: list[Sim] = []
    for group, keys in by_group.items():
        groups.add(group)
        sims.extend(make(keys, *group))
    return sims
