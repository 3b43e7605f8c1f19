"""A bulk command decided again under the store's write lock after it collided.

A bulk pause of 10,000 SIMs is decided on the SIMs as the ledger holds them and saved
whole; if another writer changed one of them meanwhile, the save fails whole and the
command runs again on fresh state. While other writers keep touching a share of its SIMs
every second, every run could collide again: the command starved (issue 14). So after one
collision the command is decided once more as a late decision of its save (PostgreSQL,
adapters/store/event_store.py): inside the transaction, under the events' table lock,
the events recorded after the versions it holds are read (those of the SIMs that changed,
or of SIMs received meanwhile), applied, and the decision made on that latest state, which
no one can change before the commit. It cannot collide.

The first run stays optimistic, outside the lock: deciding 10,000 SIMs under it would
hold every other writer for that long on every bulk command, not only on a busy fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from simledger.adapters.store.fast_replay import fast_project
from simledger.adapters.store.in_transaction import DecideAgain
from simledger.domain.base import LedgerAggregate
from simledger.domain.sim import Sim

R = TypeVar("R")


class BulkDecision(Generic[R]):
    """``decide`` over the SIMs of ``keys`` (``sims``: those found), made late.

    ``decide`` returns a :class:`~simledger.application.unit_of_work.Decision`: its
    ``others`` and ``changed`` aggregates are saved, in that order."""

    def __init__(
        self, keys: Sequence[str], sims: dict[str, Sim], decide: Callable[[Mapping[str, Sim]], Any]
    ) -> None:
        self.keys = keys
        self.sims = sims
        self._decide = decide
        self.decision: Any = None
        self._ran = False

    def expected_events(self) -> int:
        """About how many events the decision makes (the store writes that many by COPY)."""
        return len(self.keys) + 1

    def versions(self) -> Mapping[str, int]:
        return {key: self.sims[key].version if key in self.sims else 0 for key in self.keys}

    def decide(self, newer: Sequence[Any]) -> Sequence[Any]:
        if self._ran:
            # The SIMs were decided on (changed in place) by the first run: a second run
            # of the insert (a connection retry) decides on the usual path instead.
            raise DecideAgain("decided once already")
        self._ran = True
        by_sim: dict[str, list[Any]] = {}
        for event in newer:
            by_sim.setdefault(event.originator_id, []).append(event)
        for key, events in by_sim.items():
            fresh = fast_project(self.sims.get(key), events)
            if isinstance(fresh, Sim):
                self.sims[key] = fresh
        self.decision = decision = self._decide(self.sims)
        return [e for a in (*decision.others, *decision.changed) for e in a.collect_events()]

    def aggregates(self) -> Sequence[LedgerAggregate]:
        decision = self.decision
        return [*decision.others, *decision.changed] if decision is not None else []
