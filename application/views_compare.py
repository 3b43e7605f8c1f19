"""Compare the live views with their rebuild, range of ICCIDs by range (``ViewRunner.verify``).

The rebuild of one range of SIMs (its SIM events and every other event of the log) is held
in memory, compared with the live SIM rows of that range and dropped before the next range
is folded. The live SIM rows are read once, in ICCID order, as the ranges go up: neither
side is ever held whole, so the check's memory depends on the range's size, not on the
fleet's. What every range folds alike (the groups, the bulk operations' requests) is kept
from the first range; what each range adds (its SIMs' counts, their answers to operations)
is summed over the ranges and compared at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Any

from simledger.adapters.views.base import (
    PENDING_ACTIVITY,
    SHARED_GROUPS,
    SIMS,
    IccidRange,
    ViewSnapshot,
)
from simledger.adapters.views.memory import MemoryViewStore
from simledger.projections.models import RowDiff
from simledger.projections.rows import GroupRow, SimRow

WHOLE = IccidRange(None, None)


def differs(live: Any, expected: Any) -> bool:
    """Whether a live row differs from the rebuilt one; a NaN (which equals nothing, not
    even itself) that an event carried is the same NaN on both sides."""
    if live == expected:
        return False
    if live is None or expected is None or type(live) is not type(expected):
        return True
    return any(not _same(getattr(live, f.name), getattr(expected, f.name)) for f in fields(live))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) and isinstance(b, Decimal) and a.is_nan() and b.is_nan():
        return True
    return bool(a == b)


def _row(value: Any) -> dict[str, object] | None:
    return asdict(value) if value is not None else None


class RangedCompare:
    """The differences between ``snap`` (the live views) and rebuilds of ranges of SIMs
    given in ascending order (:meth:`add`) that together cover every ICCID."""

    def __init__(self, snap: ViewSnapshot, views: Sequence[str]) -> None:
        self.snap = snap
        self.views = views
        self.diffs: dict[str, list[RowDiff]] = {view: [] for view in views}
        self._live: Iterator[SimRow] = iter(snap.sims()) if SIMS in views else iter(())
        self._next: SimRow | None = next(self._live, None)
        self._summed = MemoryViewStore()  # the ranges' counts and operations, added up
        self._groups: Mapping[str, GroupRow] | None = None

    def add(self, built: MemoryViewStore, part: IccidRange) -> None:
        """Compare the live SIM rows of ``part`` with ``built``, its rebuild."""
        if self._groups is None:
            self._groups = dict(built.all_groups)
        self._summed.add_partition(built.all_counts, built.all_operations)
        if SIMS not in self.views:
            return
        out = self.diffs[SIMS]
        expected = {k: row for k, row in built.all_sims.items() if part.holds(k)}
        while self._next is not None and (part.high is None or self._next.iccid < part.high):
            row = self._next
            other = expected.pop(row.iccid, None)
            if differs(row, other):
                out.append(RowDiff(view=SIMS, key=row.iccid, live=_row(row), rebuilt=_row(other)))
            self._next = next(self._live, None)
        for iccid in sorted(expected):  # in the rebuild, not in the live view
            out.append(RowDiff(view=SIMS, key=iccid, live=None, rebuilt=_row(expected[iccid])))

    def finish(self) -> dict[str, list[RowDiff]]:
        """Every difference: the SIM rows found by :meth:`add`, then the rest."""
        snap, diffs, summed = self.snap, self.diffs, self._summed
        if SIMS in self.views:
            live_counts = dict(snap.counts())
            for combination in sorted(set(live_counts) | set(summed.all_counts)):
                have, want = live_counts.get(combination, 0), summed.all_counts.get(combination, 0)
                if have != want:
                    diffs[SIMS].append(
                        RowDiff(
                            view=SIMS,
                            key="count:" + "/".join(combination),
                            live={"n": have},
                            rebuilt={"n": want},
                        )
                    )
            for view, key, have_value, want_value in snap.extra_checks():
                diffs.setdefault(view, []).append(
                    RowDiff(
                        view=view,
                        key=key,
                        live={"value": have_value},
                        rebuilt={"value": want_value},
                    )
                )
        if SHARED_GROUPS in self.views:
            diffs[SHARED_GROUPS] = _compare_keyed(
                SHARED_GROUPS, [(g.group_id, g) for g in snap.groups()], self._groups or {}
            )
        if PENDING_ACTIVITY in self.views:
            diffs[PENDING_ACTIVITY] = _compare_keyed(
                PENDING_ACTIVITY,
                [(o.operation_id, o) for o in snap.operations()],
                summed.all_operations,
            )
        return diffs


def compare(
    snap: ViewSnapshot, built: MemoryViewStore, views: Sequence[str]
) -> dict[str, list[RowDiff]]:
    """The differences between ``snap`` and ``built``, a rebuild of every SIM at once."""
    check = RangedCompare(snap, views)
    check.add(built, WHOLE)
    return check.finish()


def _compare_keyed(
    view: str, live: Sequence[tuple[str, Any]], expected: Mapping[str, Any]
) -> list[RowDiff]:
    diffs: list[RowDiff] = []
    found: set[str] = set()
    for key, row in live:
        found.add(key)
        other = expected.get(key)
        if differs(row, other):
            diffs.append(RowDiff(view=view, key=key, live=_row(row), rebuilt=_row(other)))
    for key, other in expected.items():
        if key not in found:
            diffs.append(RowDiff(view=view, key=key, live=None, rebuilt=_row(other)))
    return diffs
