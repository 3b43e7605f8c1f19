"""The state of one batch's fold: the rows it needs, what it changes, and its working copies.

The view modules (:mod:`.sim_list`, :mod:`.shared_groups`, :mod:`.pending_activity`) write
their handlers against :class:`BatchFold`; :mod:`.batch` dispatches events to them. Nothing
here does I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from simledger.projections.rows import GroupRow, OperationRow, SimRow

Handler = Callable[["BatchFold", Any], None]
CountKey = tuple[str, str, str, str]
_Row = TypeVar("_Row")


@dataclass
class Keys:
    """The rows a batch needs: SIMs by ICCID or by package copy, groups, operations."""

    iccids: set[str] = field(default_factory=set)
    copy_ids: set[str] = field(default_factory=set)
    group_ids: set[str] = field(default_factory=set)
    operation_ids: set[str] = field(default_factory=set)


@dataclass
class Touched:
    """What the store holds for a batch's :class:`Keys` (keys it lacks are absent)."""

    sims: Mapping[str, SimRow] = field(default_factory=dict)
    groups: Mapping[str, GroupRow] = field(default_factory=dict)
    operations: Mapping[str, OperationRow] = field(default_factory=dict)


@dataclass
class Changes:
    """What a batch changes, for the store to write in one transaction.

    ``counts`` are deltas of the per-combination SIM counts
    (:meth:`SimRow.counted_as`). ``labels`` lists the SIMs whose labels changed.
    """

    sims: dict[str, SimRow] = field(default_factory=dict)
    groups: dict[str, GroupRow] = field(default_factory=dict)
    operations: dict[str, OperationRow] = field(default_factory=dict)
    counts: dict[CountKey, int] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sims or self.groups or self.operations)


class BatchFold:
    """The working state of one batch: copies of the touched rows, changed in place."""

    def __init__(self, touched: Touched) -> None:
        self._before = touched
        self.sims: dict[str, SimRow] = {}
        self.groups: dict[str, GroupRow] = {}
        self.operations: dict[str, OperationRow] = {}
        self.dirty_sims: set[str] = set()
        self.dirty_groups: set[str] = set()
        self.dirty_operations: set[str] = set()
        self.copy_owner: dict[str, str] = {
            row.copy_id: iccid for iccid, row in touched.sims.items() if row.copy_id
        }

    # ---- rows -------------------------------------------------------------------------------
    def sim(self, iccid: str) -> SimRow | None:
        return _working_copy(self.sims, self._before.sims, iccid)

    def add_sim(self, row: SimRow) -> None:
        self.sims[row.iccid] = row
        self.dirty_sims.add(row.iccid)

    def group(self, group_id: str) -> GroupRow | None:
        return _working_copy(self.groups, self._before.groups, group_id)

    def add_group(self, row: GroupRow) -> None:
        self.groups[row.group_id] = row
        self.dirty_groups.add(row.group_id)

    def operation(self, operation_id: str) -> OperationRow | None:
        return _working_copy(self.operations, self._before.operations, operation_id)

    def add_operation(self, row: OperationRow) -> None:
        self.operations[row.operation_id] = row
        self.dirty_operations.add(row.operation_id)

    # ---- result -----------------------------------------------------------------------------
    def changes(self) -> Changes:
        out = Changes()
        for iccid in self.dirty_sims:
            row = self.sims[iccid]
            out.sims[iccid] = row
            before = self._before.sims.get(iccid)
            if before is not None:
                key = before.counted_as()
                out.counts[key] = out.counts.get(key, 0) - 1
                if before.labels != row.labels:
                    out.labels[iccid] = row.labels
            elif row.labels:
                out.labels[iccid] = row.labels
            key = row.counted_as()
            out.counts[key] = out.counts.get(key, 0) + 1
        out.counts = {k: n for k, n in out.counts.items() if n}
        out.groups = {k: self.groups[k] for k in self.dirty_groups}
        out.operations = {k: self.operations[k] for k in self.dirty_operations}
        return out


def _working_copy(mine: dict[str, _Row], before: Mapping[str, _Row], key: str) -> _Row | None:
    """The batch's copy of a row, made on first use: ``fold`` never changes the rows the
    store loaded (a failing batch leaves them as they were)."""
    row = mine.get(key)
    if row is None:
        loaded = before.get(key)
        if loaded is None:
            return None
        row = mine[key] = copy.copy(loaded)
    return row
