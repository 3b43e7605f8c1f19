"""Usage: a SIM's data drawn from its copy or its group's pool (R-PK2, R-SG1, R-SIM7), one
record or a batch of them, each counted once (R-US1), in time order (R-US2).

A batch is one command: its records are checked, the receipts already stored are looked up
(a record whose id has one is a duplicate), every SIM, copy and shared group concerned is
loaded once, the records are folded in time order (domain/usage.py) and everything changed,
receipts included, is saved in ONE transaction. The receipts make the check durable: a
concurrent writer that saved one of them first makes this save fail whole
(``IntegrityError``), and :func:`command` decides the batch again, finding it stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import IntegrityError

from simledger.adapters.logs import get_logger
from simledger.adapters.store.batch_load import load_many
from simledger.adapters.store.in_transaction import DecideAgain
from simledger.application.commands.base import Commands
from simledger.application.commands.pool_draw import PoolDraw
from simledger.application.commands.usage_late import (
    LATE_FROM,
    UsageLate,
    fold_records,
    own_copies_only,
)
from simledger.application.results import UsageResult
from simledger.application.unit_of_work import USAGE_ATTEMPTS, UnitOfWork, retried, without_gc
from simledger.domain import sim_rules, values
from simledger.domain.contract import OperatorContract, contract_id
from simledger.domain.errors import SimledgerError
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.types import SimType
from simledger.domain.usage import (
    CheckedRecord,
    Pool,
    UsageFold,
    UsageRecord,
    checked,
    may_empty,
    record_id_of,
)
from simledger.domain.usage_receipt import receipt_id

log = get_logger("simledger")

RawRecord = UsageRecord | Mapping[str, Any]


COPY_MEMO = 100_000
"""SIMs whose copy a ledger remembers for single records (forgotten all at once beyond)."""


@dataclass
class _Outcome:
    applied: int = 0
    duplicates: int = 0
    rejected: dict[str, SimledgerError] = field(default_factory=dict)


class UsageCommands(Commands):
    """The usage commands."""

    def __init__(self, uow: UnitOfWork, *, clock: Callable[[], datetime]) -> None:
        super().__init__(uow, clock=clock)
        self._copy_of: dict[str, str] = {}
        """The package copy each SIM drew when this ledger last loaded it: a single
        record's SIM and copy are then loaded in one query (checked against the SIM)."""

    def record_usage(
        self,
        iccid: object,
        mb: float | int | Decimal,
        *,
        at: datetime | None = None,
        country: str | None = None,
        record_id: str | None = None,
    ) -> None:
        """One usage record: a batch of one whose refusal is raised. Without ``record_id``
        it gets a fresh one and no receipt: it can never come again."""
        receipt = record_id is not None
        key = record_id_of({"record_id": record_id}) if receipt else str(uuid4())
        raw = {
            "record_id": key,
            "iccid": iccid,
            "mb": mb,
            # A datetime with a zone, as every command takes times (R-IN3, R-ES3); a
            # batch's records may also give ISO text (they come from files).
            "at": values.event_time(at, self.clock()),
            "country": country,
        }
        record = checked(raw, key, receipt=receipt, normalise=self.uow.iccid)
        outcome = self._apply([record])
        for error in outcome.rejected.values():
            raise error

    @without_gc
    def record_usage_batch(self, records: Iterable[RawRecord]) -> UsageResult:
        """Apply usage records (mappings or :class:`UsageRecord`) in one transaction.

        A record whose ``record_id`` was counted before, by any ledger on the store, or
        earlier in the batch (the first one wins) is a duplicate and changes nothing
        (R-US1). A bad record (no ``record_id``, an invalid or unknown ICCID, an amount
        that is not a positive number of MB, a time without a zone, a SIM that takes no
        usage) is listed in ``rejected`` with the reason; the others are applied, each
        SIM's in time order (R-US2).
        """
        rejected: dict[str, SimledgerError] = {}
        good: list[CheckedRecord] = []
        seen: set[str] = set()
        duplicates = 0
        items: list[Any] = values.collection(records, "usage records")  # R-IN4
        for position, raw in enumerate(items, 1):
            try:
                key = record_id_of(raw)
            except SimledgerError as error:
                rejected[f"#{position}"] = error
                continue
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            try:
                good.append(checked(raw, key, normalise=self.uow.iccid))
            except SimledgerError as error:
                rejected[key] = error
        outcome = self._apply(good) if good else _Outcome()
        rejected.update(outcome.rejected)
        result = UsageResult(
            applied=outcome.applied,
            duplicates=duplicates + outcome.duplicates,
            rejected={key: str(error) for key, error in rejected.items()},
        )
        log.info(
            "usage.batch",
            applied=result.applied,
            duplicates=result.duplicates,
            rejected=len(result.rejected),
        )
        return result

    def _draw_late(self, sim: Sim, record: CheckedRecord) -> bool:
        """A member's single record on a shared pool, its draw decided under the store's
        write lock (commands/pool_draw.py): True when recorded; False when it is decided
        on the usual path instead (a draw that empties the pool, a member that left)."""
        assert sim.group_id is not None
        sim_rules.check_usage(sim, record.at)
        group = self.uow.groups.known(sim.group_id) or self.uow.group(sim.group_id)
        try:
            contract = self._contracts([sim]).get(sim.operator)
            draw = PoolDraw(sim, group, record.mb, record.at, record.country, contract)
            self.uow.save(late=draw)
        except DecideAgain:
            return False
        return True

    @retried(USAGE_ATTEMPTS)
    def _apply(self, records: Sequence[CheckedRecord]) -> _Outcome:
        """Skip the records already receipted, fold the others over fresh state, save."""
        outcome = _Outcome()
        # Each receipt's id derived once (a uuid5: a hash), here and for its receipt below.
        ids = {r.record_id: receipt_id(r.record_id) for r in records if r.receipt}
        stored = set(self.uow.existing(list(ids.values()))) if ids else set()
        fresh = [r for r in records if not (r.receipt and ids[r.record_id] in stored)]
        outcome.duplicates = len(records) - len(fresh)
        keys = list(dict.fromkeys(r.iccid for r in fresh))
        preloaded: dict[str, Pool] = {}
        if len(keys) == 1:  # a single record: one query (the SIM cache asks two)
            sims, preloaded = self._one_sim(keys[0])
        else:
            sims = self.uow.sims(keys)
        if len(fresh) == 1 and not fresh[0].receipt and self.uow.decides_late:
            sim = sims.get(fresh[0].iccid)
            if sim is not None and sim.group_id is not None:
                try:
                    if self._draw_late(sim, fresh[0]):
                        outcome.applied = 1
                        return outcome
                except SimledgerError as error:
                    outcome.rejected[fresh[0].record_id] = error
                    return outcome
        if self.uow.decides_late and len(fresh) >= LATE_FROM and own_copies_only(sims.values()):
            return self._save_late(fresh, sims, ids, outcome.duplicates)
        pools = self._pools(sims.values(), preloaded)
        members = self._members(sims, pools, fresh)
        fold = UsageFold(sims, pools, members, self._contracts(sims.values()))
        outcome.applied, receipts = fold_records(fold, fresh, ids, outcome.rejected)
        if receipts or fold.changed:
            try:
                self.uow.save_owned([*fold.changed, *receipts])
            except IntegrityError:
                if not self.uow.decides_late or not own_copies_only(sims.values()):
                    raise
                log.info("usage.collided", records=len(records))
                return self._apply_late(records)
        return outcome

    def _apply_late(self, records: Sequence[CheckedRecord]) -> _Outcome:
        """After a collision: the batch folded under the store's write lock, on state no
        one can change before it commits (commands/usage_late.py). When that cannot settle
        it (``DecideAgain``), the collision is raised again: the batch is decided again."""
        ids = {r.record_id: receipt_id(r.record_id) for r in records if r.receipt}
        stored = set(self.uow.existing(list(ids.values()))) if ids else set()
        fresh = [r for r in records if not (r.receipt and ids[r.record_id] in stored)]
        sims = self.uow.sims(list(dict.fromkeys(r.iccid for r in fresh)))
        if not own_copies_only(sims.values()):
            raise IntegrityError("a usage batch collided; decide it again")
        return self._save_late(fresh, sims, ids, len(records) - len(fresh))

    def _save_late(
        self,
        fresh: Sequence[CheckedRecord],
        sims: dict[str, Sim],
        ids: Mapping[str, str],
        duplicates: int,
    ) -> _Outcome:
        """``fresh`` folded under the store's write lock over ``sims`` and their copies
        brought up to date there (commands/usage_late.py)."""
        contracts = self._contracts(sims.values())
        late = UsageLate(fresh, sims, self._pools(sims.values()), ids, contracts)
        try:
            self.uow.record((), {}, owned=True, late=late)
        except DecideAgain:
            # Something changed that the fold cannot take from the events it read there
            # (a SIM moved to a group, received): decided again from the store.
            raise IntegrityError("a usage batch met a change; decide it again") from None
        return _Outcome(
            applied=late.applied, duplicates=duplicates + late.duplicates, rejected=late.rejected
        )

    def _contracts(self, sims: Iterable[Sim]) -> dict[str, OperatorContract]:
        """The operator contracts of the PAYGO SIMs among ``sims``, by operator: their price
        lists price the records (R-PR3). Loaded per command, and only for PAYGO SIMs: a
        price version another ledger added is in force here at once."""
        operators = sorted({sim.operator for sim in sims if sim.sim_type is SimType.PAYGO})
        if not operators:
            return {}
        loaded = load_many(self.uow.app, [contract_id(o) for o in operators])
        return {c.operator: c for c in loaded.values() if isinstance(c, OperatorContract)}

    def _one_sim(self, iccid: str) -> tuple[dict[str, Sim], dict[str, Pool]]:
        """The SIM of a single record, and the copy it drew when last seen here, loaded
        in one query: the copy is kept only if the SIM still draws it."""
        copy_id = self._copy_of.get(iccid)
        loaded = load_many(self.uow.app, (iccid, copy_id) if copy_id else (iccid,))
        sim = loaded.get(iccid)
        if not isinstance(sim, Sim):
            return {}, {}
        if len(self._copy_of) >= COPY_MEMO:
            self._copy_of.clear()
        if sim.copy_id and sim.group_id is None:
            self._copy_of[iccid] = sim.copy_id
        if copy_id is None or sim.copy_id != copy_id:
            return {iccid: sim}, {}
        copy = loaded.get(copy_id)
        return {iccid: sim}, ({copy_id: copy} if isinstance(copy, Package) else {})

    def _pools(
        self, sims: Iterable[Sim], preloaded: Mapping[str, Pool] | None = None
    ) -> dict[str, Pool]:
        """The copies and shared groups the SIMs draw, each loaded once (a shared group as
        the events after the state this ledger knows: it holds every member's ICCID);
        ``preloaded``: copies loaded with their SIMs."""
        found: dict[str, Pool] = dict(preloaded or {})
        copies = {
            sim.copy_id
            for sim in sims
            if sim.group_id is None and sim.copy_id and sim.copy_id not in found
        }
        group_ids = {sim.group_id for sim in sims if sim.group_id is not None}
        if copies:
            loaded = load_many(self.uow.app, sorted(copies))
            found.update((k, v) for k, v in loaded.items() if isinstance(v, Package))
        for group_id in sorted(group_ids):
            group = self.uow.groups.latest(self.uow.app, group_id)
            if group is not None:
                found[group_id] = group
        return found

    def _members(
        self, sims: Mapping[str, Sim], pools: Mapping[str, Pool], records: Sequence[CheckedRecord]
    ) -> dict[str, list[Sim]]:
        """Every member of each shared group the records may empty (the system pauses them
        all when it runs out): the batch's own SIMs, the others loaded."""
        drawing: dict[str, list[CheckedRecord]] = {}
        for record in records:
            sim = sims.get(record.iccid)
            if sim is not None and sim.group_id is not None:
                drawing.setdefault(sim.group_id, []).append(record)
        groups = [
            group
            for key, group_records in drawing.items()
            if isinstance(group := pools.get(key), SharedGroup) and may_empty(group, group_records)
        ]
        missing = [m for g in groups for m in g.members if m not in sims]
        others = self.uow.sims(list(dict.fromkeys(missing))) if missing else {}
        return {
            g.id: [s for m in g.members if (s := sims.get(m) or others.get(m)) is not None]
            for g in groups
        }
