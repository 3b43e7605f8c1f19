"""A usage batch folded again under the store's write lock after it collided (R-US1, R-US2).

Two writers whose batches fall on random SIMs of one fleet share some SIMs in nearly every
pair of batches (1,000 records each on 20,000 SIMs: about 50): folded optimistically, the
second save fails whole (``IntegrityError``) and the batch ran again from the start, often
colliding again, so each writer spent most of its time on batches thrown away. So a batch
of :data:`LATE_FROM` records or more is folded as a late decision of its save (PostgreSQL,
adapters/store/event_store.py, as application/bulk_late.py does for bulk commands after a
collision): its SIMs and copies are loaded before, then inside the transaction, under the
events' table lock, the events recorded after the versions it holds are read for its SIMs,
their copies and its receipts, applied, and the records folded on that latest state, which
no one can change before the commit. A receipt found there makes its record a duplicate,
as the lookup before the fold does. A smaller batch is folded optimistically, and late
after one collision. The fold holds the lock for its time (a few tens of ms per 1,000
records): less than the load, fold and save a collision throws away (bench/README.md).

Only batches whose SIMs all draw their own copy go this way: a shared pool the batch may
empty needs every member of the group, which the decision cannot load under the lock.
Anything the decision cannot settle from the events it reads (a SIM received, moved to a
group or given another copy meanwhile) raises ``DecideAgain``: the batch is decided again
on the usual path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simledger.adapters.store.fast_replay import fast_project
from simledger.adapters.store.in_transaction import DecideAgain
from simledger.domain.base import LedgerAggregate
from simledger.domain.contract import OperatorContract
from simledger.domain.errors import SimledgerError
from simledger.domain.package import Package
from simledger.domain.sim import Sim
from simledger.domain.usage import CheckedRecord, Pool, UsageFold, in_order
from simledger.domain.usage_receipt import UsageReceipt

LATE_FROM = 100
"""Records (after the duplicates) from which a batch is folded under the lock at once."""


def fold_records(
    fold: UsageFold,
    records: Iterable[CheckedRecord],
    receipt_ids: Mapping[str, str],
    rejected: dict[str, SimledgerError],
) -> tuple[int, list[UsageReceipt]]:
    """Apply ``records`` in time order (R-US2); a refused one goes to ``rejected``. Returns
    how many were applied and the receipts of those that carry one (R-US1)."""
    applied = 0
    receipts: list[UsageReceipt] = []
    for record in in_order(records):
        try:
            fold.apply(record)
        except SimledgerError as error:
            rejected[record.record_id] = error
            continue
        applied += 1
        if record.receipt:
            key = receipt_ids[record.record_id]
            receipts.append(
                UsageReceipt.issue(record.record_id, record.iccid, record.mb, record.at, key=key)
            )
    return applied, receipts


def own_copies_only(sims: Iterable[Sim]) -> bool:
    """Whether no SIM draws a shared group (the late fold's condition)."""
    return all(sim.group_id is None for sim in sims)


class UsageLate:
    """The fold of ``records`` over ``sims`` and their ``pools`` (own copies), made late.

    ``receipt_ids``: record id -> receipt id, for the records that carry a receipt."""

    def __init__(
        self,
        records: Sequence[CheckedRecord],
        sims: dict[str, Sim],
        pools: dict[str, Pool],
        receipt_ids: Mapping[str, str],
        contracts: Mapping[str, OperatorContract] | None = None,
    ) -> None:
        self.records = records
        self.contracts = contracts
        self.sims = sims
        self.pools = pools
        self.receipt_ids = receipt_ids
        self.applied = 0
        self.duplicates = 0
        self.rejected: dict[str, SimledgerError] = {}
        self._saved: list[LedgerAggregate] = []
        self._ran = False

    def expected_events(self) -> int:
        """About how many events the fold makes (a draw, a usage, a receipt per record)."""
        return 3 * len(self.records)

    def versions(self) -> Mapping[str, int]:
        known: dict[str, int] = {}
        for record in self.records:
            sim = self.sims.get(record.iccid)
            known[record.iccid] = sim.version if sim is not None else 0
            if record.receipt:
                known[self.receipt_ids[record.record_id]] = 0
        for key, pool in self.pools.items():
            known[key] = pool.version
        return known

    def decide(self, newer: Sequence[Any]) -> Sequence[Any]:
        if self._ran:
            # The aggregates were changed in place by the first run: a second run of the
            # insert (a connection retry) decides on the usual path instead.
            raise DecideAgain("decided once already")
        self._ran = True
        by_id: dict[str, list[Any]] = {}
        for event in newer:
            by_id.setdefault(event.originator_id, []).append(event)
        counted = {key for key in self.receipt_ids.values() if key in by_id}
        for key, events in by_id.items():
            if key in counted:
                continue
            if key in self.pools:
                self.pools[key] = fast_project(self.pools[key], events)
            elif key in self.sims:
                self.sims[key] = fast_project(self.sims[key], events)
            else:
                raise DecideAgain(f"{key} was recorded meanwhile")
        for key in by_id.keys() & self.sims.keys():
            sim = self.sims[key]
            if sim.group_id is not None or (sim.copy_id and sim.copy_id not in self.pools):
                raise DecideAgain(f"SIM {sim.id} draws another pool now")
        if any(not isinstance(pool, Package) for pool in self.pools.values()):
            raise DecideAgain("a shared group")
        fresh = [
            r for r in self.records if not (r.receipt and self.receipt_ids[r.record_id] in counted)
        ]
        self.duplicates = len(self.records) - len(fresh)
        fold = UsageFold(self.sims, self.pools, {}, self.contracts)
        self.applied, receipts = fold_records(fold, fresh, self.receipt_ids, self.rejected)
        self._saved = [*fold.changed, *receipts]
        return [e for a in self._saved for e in a.collect_events()]

    def aggregates(self) -> Sequence[LedgerAggregate]:
        return list(self._saved)
