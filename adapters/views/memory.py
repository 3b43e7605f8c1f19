"""The in-memory view store: the in-memory ledger's views, and every rebuild's scratch space.

Rows live in dicts, with indexes by package copy and by shared group. One re-entrant lock
stands for a transaction: a batch's writes are applied only after its fold succeeded, so a
failing batch leaves the views and the position as they were.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace

from simledger.adapters.views.base import (
    PENDING_ACTIVITY,
    SHARED_GROUPS,
    SIMS,
    ApplyRange,
    BuiltViews,
    ViewSnapshot,
    ViewStore,
    level,
)
from simledger.projections.batch_state import Changes, CountKey, Keys, Touched
from simledger.projections.listing import SimQuery, matches, sort_key
from simledger.projections.rows import GroupRow, OperationRow, SimRow


class _Views:
    """The rows of the three views and the tracking position."""

    def __init__(self) -> None:
        self.position = 0
        self.sims: dict[str, SimRow] = {}
        self.by_copy: dict[str, str] = {}
        self.by_group: dict[str, set[str]] = {}
        self.counts: dict[CountKey, int] = {}
        self.groups: dict[str, GroupRow] = {}
        self.operations: dict[str, OperationRow] = {}

    def load(self, keys: Keys) -> Touched:
        sims: dict[str, SimRow] = {}
        for iccid in keys.iccids:
            row = self.sims.get(iccid)
            if row is not None:
                sims[iccid] = row
        for copy_id in keys.copy_ids:
            holder = self.by_copy.get(copy_id)
            if holder is not None:
                sims[holder] = self.sims[holder]
        groups = {k: self.groups[k] for k in keys.group_ids if k in self.groups}
        operations = {k: self.operations[k] for k in keys.operation_ids if k in self.operations}
        return Touched(sims=sims, groups=groups, operations=operations)

    def write(self, changes: Changes, position: int) -> None:
        for iccid, row in changes.sims.items():
            old = self.sims.get(iccid)
            if old is not None:
                if old.copy_id is not None and old.copy_id != row.copy_id:
                    self.by_copy.pop(old.copy_id, None)
                if old.group_id is not None and old.group_id != row.group_id:
                    self.by_group[old.group_id].discard(iccid)
            if row.copy_id is not None:
                self.by_copy[row.copy_id] = iccid
            if row.group_id is not None:
                self.by_group.setdefault(row.group_id, set()).add(iccid)
            self.sims[iccid] = row
        add_counts(self.counts, changes.counts)
        self.groups.update(changes.groups)
        self.operations.update(changes.operations)
        self.position = max(self.position, position)


class _MemoryTx:
    def __init__(self, views: _Views) -> None:
        self._views = views

    @property
    def position(self) -> int:
        return self._views.position

    def load(self, keys: Keys) -> Touched:
        return self._views.load(keys)

    def write(self, changes: Changes, position: int) -> None:
        self._views.write(changes, position)


class MemoryViewStore(ViewStore):
    kind = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._views = _Views()
        self.staged_sims: str | None = None
        """Set on a rebuild's scratch store whose other SIMs another process staged."""

    # ---- projecting ---------------------------------------------------------------------
    def position(self) -> int:
        return self._views.position

    @contextmanager
    def exclusive(self) -> Iterator[_MemoryTx]:
        with self._lock:
            yield _MemoryTx(self._views)

    # ---- queries ------------------------------------------------------------------------
    def sims_page(self, query: SimQuery) -> tuple[list[SimRow], int]:
        with self._lock:
            views = self._views
            if query.group_id is not None:
                pool = [views.sims[i] for i in views.by_group.get(query.group_id, ())]
            else:
                pool = list(views.sims.values())
            # A member shows its group's pool (held in the group's row only).
            pool = [
                replace(row, data_left_mb=views.groups[row.group_id].data_left_mb)
                if row.group_id is not None and row.group_id in views.groups
                else row
                for row in pool
            ]
        selected = [row for row in pool if matches(row, query)]
        keyed = sorted(
            ((sort_key(row, query), row.iccid, row) for row in selected),
            key=lambda item: (item[0], item[1]),
            reverse=query.descending,
        )
        if query.after is not None:
            after = query.after
            if query.descending:
                keyed = [item for item in keyed if (item[0], item[1]) < after]
            else:
                keyed = [item for item in keyed if (item[0], item[1]) > after]
        return [item[2] for item in keyed[: query.limit + 1]], len(selected)

    def operations(self) -> list[OperationRow]:
        with self._lock:
            rows = list(self._views.operations.values())
        return sorted(rows, key=lambda r: (r.requested_at, r.operation_id), reverse=True)

    def groups(self, *, company: str | None, locked: bool | None) -> list[GroupRow]:
        with self._lock:
            rows = list(self._views.groups.values())
            if company is not None:
                with_company = {
                    row.group_id
                    for row in self._views.sims.values()
                    if row.company == company and row.group_id is not None
                }
                rows = [row for row in rows if row.group_id in with_company]
        if locked is not None:
            rows = [row for row in rows if row.locked == locked]
        return sorted(rows, key=lambda r: (r.name, r.group_id))

    # ---- rebuild and verify -------------------------------------------------------------
    def install(self, built: BuiltViews, views: Sequence[str], apply: ApplyRange) -> int:
        if not isinstance(built, MemoryViewStore) or built.staged_sims is not None:
            raise NotImplementedError("a memory store installs another memory store's views")
        with self._lock, built._lock:
            live, fresh = self._views, built._views
            views, live.position = level(
                live.position, fresh.position, views, lambda a, b: apply(built.tx(), a, b)
            )
            if SIMS in views:
                live.sims, live.by_copy = fresh.sims, fresh.by_copy
                live.by_group, live.counts = fresh.by_group, fresh.counts
            if SHARED_GROUPS in views:
                live.groups = fresh.groups
            if PENDING_ACTIVITY in views:
                live.operations = fresh.operations
            return live.position

    @contextmanager
    def snapshot(self) -> Iterator[ViewSnapshot]:
        with self._lock:
            views = self._views
            yield ViewSnapshot(
                position=views.position,
                sims=lambda: iter(sorted(views.sims.values(), key=lambda r: r.iccid)),
                groups=lambda: iter(list(views.groups.values())),
                operations=lambda: iter(list(views.operations.values())),
                counts=lambda: dict(views.counts),
            )

    # ---- for rebuild and verify ---------------------------------------------------------
    def add_partition(
        self, counts: Mapping[CountKey, int], operations: Mapping[str, OperationRow]
    ) -> None:
        """Add what another part of a partitioned fold (the other SIMs, the same log)
        contributes beyond its SIM rows: its SIMs' counts, and its SIMs' answers to each
        operation (the requests themselves, and the groups, every part folds alike)."""
        with self._lock:
            views = self._views
            add_counts(views.counts, counts)
            for operation_id, theirs in operations.items():
                mine = views.operations.get(operation_id)
                views.operations[operation_id] = (
                    theirs
                    if mine is None
                    else replace(
                        mine,
                        confirmed=mine.confirmed + theirs.confirmed,
                        refused=mine.refused + theirs.refused,
                    )
                )

    @property
    def all_sims(self) -> Mapping[str, SimRow]:
        return self._views.sims

    @property
    def all_groups(self) -> Mapping[str, GroupRow]:
        return self._views.groups

    @property
    def all_operations(self) -> Mapping[str, OperationRow]:
        return self._views.operations

    @property
    def all_counts(self) -> Mapping[CountKey, int]:
        return self._views.counts

    def tx(self) -> _MemoryTx:
        """A transaction without locking, for a private store (a rebuild's scratch)."""
        return _MemoryTx(self._views)


def add_counts(counts: dict[CountKey, int], deltas: Mapping[CountKey, int]) -> None:
    """Add ``deltas`` to ``counts``, keeping no zero."""
    for key, delta in deltas.items():
        n = counts.get(key, 0) + delta
        if n:
            counts[key] = n
        else:
            counts.pop(key, None)
