"""A member's draw on a busy shared pool, decided under the store's write lock.

Every member's usage draws the one pool, so writers of a busy pool would collide on the
group's version and run again. On a store that can (PostgreSQL), the draw is instead a
late decision of the save (adapters/store/event_store.py): inside the save's transaction,
under the events' table lock that every writer takes anyway, the events recorded for the
group after the state this ledger knows are read, applied to a copy, and the draw decided
on the latest pool. Writers of one pool take turns on that lock instead of colliding.

The cases it does not decide there are decided again on the usual path (``DecideAgain``,
nothing recorded): a draw that runs the pool out (every member is then paused, and their
SIMs are loaded for it), a SIM that is no longer a member, a deleted group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from simledger.adapters.store.aggregate_cache import private_copy
from simledger.adapters.store.fast_replay import fast_project
from simledger.adapters.store.in_transaction import DecideAgain
from simledger.domain import sim_rules
from simledger.domain.base import LedgerAggregate
from simledger.domain.contract import OperatorContract
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim


class PoolDraw:
    """A usage record of ``sim`` (``mb`` at ``at``, ``country``) drawing ``group`` (as last
    known), both decided late: the SIM's event after the draw it caused, as on the usual
    path (its version and time then cover the draw, R-ES3)."""

    def __init__(
        self,
        sim: Sim,
        group: SharedGroup,
        mb: Decimal,
        at: datetime,
        country: str | None,
        contract: OperatorContract | None = None,
    ) -> None:
        self.sim = sim
        self.known = group
        self.iccid = sim.id
        self.mb = mb
        self.at = at
        self.country = country
        self.contract = contract
        self.decided: list[LedgerAggregate] = []

    def expected_events(self) -> int:
        return 2

    def versions(self) -> Mapping[str, int]:
        return {self.known.id: self.known.version}

    def touches(self) -> Sequence[LedgerAggregate]:
        """The aggregates the draw writes (their view rows are read before it is made)."""
        return [self.known, self.sim]

    def decide(self, newer: Sequence[Any]) -> Sequence[Any]:
        # A copy each time: a retried insert decides again from the same known state.
        group = private_copy(self.known)
        if newer:
            group = fast_project(group, newer)
        if group.deleted or self.iccid not in group.members:
            raise DecideAgain(f"{self.iccid} no longer draws shared group {group.id}")
        if not group.depleted and group.draw(self.iccid, self.mb, self.at):
            raise DecideAgain(f"shared group {group.id} runs out: its members are paused")
        sim = private_copy(self.sim)
        sim_rules.check_usage(sim, self.at)
        sim.record_usage(self.mb, self.at, self.country)
        # The SIM's rules act at this record, in this save (domain/sim_rules.py).
        sim_rules.after_usage(sim, self.mb, self.at, self.country, group, self.contract)
        self.decided = [group, sim]
        return [*group.collect_events(), *sim.collect_events()]

    def aggregates(self) -> Sequence[LedgerAggregate]:
        return self.decided
