"""Folding one batch of domain events into the three views: a pure function.

A store runs a batch in four steps: :func:`keys_of` says which rows the batch touches;
the store loads those rows (:class:`Touched`); :func:`fold` turns rows and events into
:class:`Changes`; the store writes the changes and the batch's tracking position in one
transaction. Nothing here does I/O, and ``fold`` never changes the rows it is given.

Events are dispatched on their class: each view module (:mod:`.sim_list`,
:mod:`.shared_groups`, :mod:`.pending_activity`) maps event classes to handlers, and the
most specific class in an event's MRO wins (so ``Sim.Event`` catches every SIM event
that has no handler of its own, and ``Sim.StatusChanged`` every lifecycle move).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.projections.rows import GroupRow, OperationRow, SimRow

Handler = Callable[["BatchFold", Any], None]
CountKey = tuple[str, str, str, str]


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

    ``pools`` holds, per shared group whose pool moved, the pool's final value: the store
    sets it as ``data_left_mb`` on every SIM row it holds with that ``group_id`` (the rows
    in ``sims`` already carry it). ``counts`` are deltas of the per-combination SIM counts
    (:meth:`SimRow.counted_as`). ``labels`` lists the SIMs whose labels changed.
    """

    sims: dict[str, SimRow] = field(default_factory=dict)
    groups: dict[str, GroupRow] = field(default_factory=dict)
    operations: dict[str, OperationRow] = field(default_factory=dict)
    pools: dict[str, Decimal] = field(default_factory=dict)
    counts: dict[CountKey, int] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sims or self.groups or self.operations or self.pools)


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
        self.pools: dict[str, Decimal] = {}
        self.copy_owner: dict[str, str] = {
            row.copy_id: iccid for iccid, row in touched.sims.items() if row.copy_id
        }

    # ---- rows -------------------------------------------------------------------------------
    def sim(self, iccid: str) -> SimRow | None:
        row = self.sims.get(iccid)
        if row is None:
            before = self._before.sims.get(iccid)
            if before is None:
                return None
            row = self.sims[iccid] = copy.copy(before)
        return row

    def add_sim(self, row: SimRow) -> None:
        self.sims[row.iccid] = row
        self.dirty_sims.add(row.iccid)

    def group(self, group_id: str) -> GroupRow | None:
        row = self.groups.get(group_id)
        if row is None:
            before = self._before.groups.get(group_id)
            if before is None:
                return None
            row = self.groups[group_id] = copy.copy(before)
        return row

    def add_group(self, row: GroupRow) -> None:
        self.groups[row.group_id] = row
        self.dirty_groups.add(row.group_id)

    def operation(self, operation_id: str) -> OperationRow | None:
        row = self.operations.get(operation_id)
        if row is None:
            before = self._before.operations.get(operation_id)
            if before is None:
                return None
            row = self.operations[operation_id] = copy.copy(before)
        return row

    def add_operation(self, row: OperationRow) -> None:
        self.operations[row.operation_id] = row
        self.dirty_operations.add(row.operation_id)

    # ---- result -----------------------------------------------------------------------------
    def changes(self) -> Changes:
        out = Changes(pools=dict(self.pools))
        for iccid in self.dirty_sims:
            row = self.sims[iccid]
            if row.group_id is not None and row.group_id in self.pools:
                row.data_left_mb = self.pools[row.group_id]
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


# ---- dispatch ---------------------------------------------------------------------------------

_TABLES: list[Mapping[type, Handler]] = []
_RESOLVED: dict[type, tuple[Handler, ...]] = {}


def register(table: Mapping[type, Handler]) -> None:
    """Add a view's handlers (called by each view module when imported)."""
    _TABLES.append(table)
    _RESOLVED.clear()


def handlers_for(event_class: type) -> tuple[Handler, ...]:
    found = _RESOLVED.get(event_class)
    if found is None:
        chosen: list[Handler] = []
        for table in _TABLES:
            for klass in event_class.__mro__:
                handler = table.get(klass)
                if handler is not None:
                    chosen.append(handler)
                    break
        found = _RESOLVED[event_class] = tuple(chosen)
    return found


def keys_of(events: Iterable[Any]) -> Keys:
    """Which stored rows folding ``events`` needs."""
    keys = Keys()
    for event in events:
        if isinstance(event, Sim.Event):
            keys.iccids.add(event.originator_id)
            if isinstance(event, Sim.PackageShared):
                keys.group_ids.add(event.group_id)
            elif (
                isinstance(event, (Sim.Paused, Sim.Resumed, Sim.OperationRefused))
                and event.operation_id is not None
            ):
                keys.operation_ids.add(event.operation_id)
        elif isinstance(event, Package.Event):
            if not isinstance(event, Package.Created):
                keys.copy_ids.add(event.originator_id)
        elif isinstance(event, SharedGroup.Event):
            keys.group_ids.add(event.originator_id)
    return keys


def fold(events: Sequence[Any], touched: Touched) -> Changes:
    """The changes ``events`` (in notification order) make to the ``touched`` rows."""
    state = BatchFold(touched)
    for event in events:
        for handler in handlers_for(type(event)):
            handler(state, event)
    return state.changes()


def _load_views() -> None:
    # The view modules register their handlers on import.
    from simledger.projections import pending_activity, shared_groups, sim_list  # noqa: F401


_load_views()
