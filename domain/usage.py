"""Usage records and their fold (R-US1, R-US2, R-PK2, R-SG1, R-SIM6): pure, no I/O.

A usage record says that a SIM used ``mb`` MB at ``at``; ``record_id`` names it, so a record
delivered again is recognised (its receipt, :mod:`simledger.domain.usage_receipt`). A batch
of records is checked one by one (:func:`checked`), put in time order (:func:`in_order`)
and folded over the SIMs and pools it touches (:class:`UsageFold`), each record exactly as
one ``record_usage`` call would be: the draw of the SIM's own copy or its shared group's
pool, then the SIM's usage event, then, if that draw emptied the pool, the system pause of
the pool's SIMs (R-SIM6), so each aggregate's events show which record did it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from simledger.domain import policies, sim_rules, values
from simledger.domain.contract import OperatorContract
from simledger.domain.errors import InvalidInput, NotAMember, UnknownGroup, UnknownSim
from simledger.domain.iccid import normalise_iccid
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

USAGE_FIELDS = ("record_id", "iccid", "mb", "at", "country")
"""The fields of a usage record; ``country`` may be left out."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One usage record as given (checked only when a batch takes it, so that a bad one is
    reported with its ``record_id`` instead of failing the whole batch): ``at`` a datetime
    with a zone (or its ISO 8601 text), ``mb`` a positive number (or its text)."""

    record_id: str
    iccid: str
    mb: Decimal | int | float | str
    at: datetime | str
    country: str | None = None


@dataclass(frozen=True, slots=True)
class CheckedRecord:
    """A record whose values passed :func:`checked`: a normalised ICCID, a positive amount,
    an aware time; ``receipt`` says whether its id is the caller's (and so gets a receipt)."""

    record_id: str
    iccid: str
    mb: Decimal
    at: datetime
    country: str | None
    receipt: bool = True


def field_of(raw: UsageRecord | Mapping[str, Any], name: str) -> Any:
    """A field of a record given as a :class:`UsageRecord` or a mapping (None when absent)."""
    if isinstance(raw, UsageRecord):
        return getattr(raw, name)
    if isinstance(raw, Mapping):
        return raw.get(name)
    raise InvalidInput(
        f"a usage record is a mapping or a UsageRecord, not {type(raw).__name__}", rule="R-US1"
    )


def record_id_of(raw: UsageRecord | Mapping[str, Any]) -> str:
    """The record's id: non-empty text (R-US1)."""
    return values.text(field_of(raw, "record_id"), "a usage record's record_id", rule="R-US1")


def checked(
    raw: UsageRecord | Mapping[str, Any],
    record_id: str,
    *,
    receipt: bool = True,
    normalise: Callable[[object], str] = normalise_iccid,
) -> CheckedRecord:
    """The record's values checked, in the order ``record_usage`` checks them: the amount
    (R-PK2), the ICCID (R-SIM1), the time (R-US1; a zone, R-ES3), the country (R-US1)."""
    amount = values.mb(field_of(raw, "mb"), rule="R-PK2")
    iccid = normalise(field_of(raw, "iccid"))
    at = field_of(raw, "at")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.strip())
        except ValueError:
            raise InvalidInput(f"not an ISO 8601 time: {at!r}", rule="R-US1") from None
    if not isinstance(at, datetime):
        raise InvalidInput(f"a usage record needs its time 'at', got {at!r}", rule="R-US1")
    when = values.aware(at, at)
    country = field_of(raw, "country")
    if country is not None and not isinstance(country, str):
        raise InvalidInput(f"a country is text: {country!r}", rule="R-US1")
    return CheckedRecord(
        record_id, iccid, amount, when, (country or "").strip() or None, receipt=receipt
    )


def in_order(records: Iterable[CheckedRecord]) -> list[CheckedRecord]:
    """R-US2: the records by time, then by record id: so each SIM's, and each pool's, in
    the order they happened, whatever order they were delivered in."""
    return sorted(records, key=lambda r: (r.at, r.record_id))


Pool = Package | SharedGroup
"""A SIM's own package copy, or its shared group (whose pool it draws)."""


def pool_id(sim: Sim) -> str | None:
    """The id of the pool the SIM's usage draws: its shared group's, else its own copy's."""
    return sim.group_id if sim.group_id is not None else sim.copy_id


class UsageFold:
    """Records applied one by one to loaded aggregates, as ``record_usage`` applies one.

    ``sims``: the records' SIMs, by ICCID; ``pools``: their copies and shared groups, by
    id; ``members``: for a shared group the batch may empty, every member (the SIMs the
    system pauses when it runs out). :meth:`apply` changes them; :attr:`changed` lists
    every aggregate that took an event, in the order first changed.
    """

    def __init__(
        self,
        sims: Mapping[str, Sim],
        pools: Mapping[str, Pool],
        members: Mapping[str, Sequence[Sim]],
        contracts: Mapping[str, OperatorContract] | None = None,
    ) -> None:
        self.sims = sims
        self.pools = pools
        self.members = members
        self.contracts = contracts or {}
        """The operator contracts of the records' PAYGO SIMs, by operator (R-PR3)."""
        self._changed: dict[int, Sim | Pool] = {}

    @property
    def changed(self) -> list[Sim | Pool]:
        return list(self._changed.values())

    def _touch(self, *aggregates: Sim | Pool) -> None:
        for aggregate in aggregates:
            self._changed.setdefault(id(aggregate), aggregate)

    def apply(self, record: CheckedRecord) -> None:
        """Apply one record; a refusal (an unknown SIM, a SIM that takes no usage, a draw
        the pool refuses) raises before any of its events exists."""
        sim = self.sims.get(record.iccid)
        if sim is None:
            raise UnknownSim(record.iccid)
        sim_rules.check_usage(sim, record.at)  # R-SIM4, R-RU3
        to_suspend: list[Sim] = []
        key = pool_id(sim)
        pool = self.pools.get(key) if key is not None else None
        if sim.group_id is not None:
            if not isinstance(pool, SharedGroup) or pool.deleted:
                raise UnknownGroup(sim.group_id, " (deleted)" if pool is not None else "")
            if sim.id not in pool.members:
                raise NotAMember(f"SIM {sim.id} does not draw shared group {pool.id}")
        if pool is not None and not pool.depleted:
            emptied = pool.draw(sim.id, record.mb, record.at)
            self._touch(pool)
            if emptied:
                if isinstance(pool, SharedGroup):
                    others = [m for m in self.members[pool.id] if m.id != sim.id]
                    to_suspend = [sim, *others]
                else:
                    to_suspend = [sim]
        # The SIM's event comes after the draw it caused, so the SIM's version at that
        # moment covers the draw (sim_as_of, R-ES3); the pause after the usage that caused it.
        sim.record_usage(record.mb, record.at, record.country)
        # The rules act at the record that crosses them, in this fold (domain/sim_rules.py).
        contract = self.contracts.get(sim.operator)
        if sim_rules.after_usage(sim, record.mb, record.at, record.country, pool, contract):
            to_suspend = [s for s in to_suspend if s is not sim]  # refilled: not empty now
            if isinstance(pool, Package):
                self._touch(pool)
                policies.resume_after_top_up(sim, pool, record.at)  # a late record's refill
        self._touch(sim)
        before = [s.version for s in to_suspend]
        policies.suspend_for_package(to_suspend, "depleted")
        self._touch(*(s for s, v in zip(to_suspend, before, strict=True) if s.version > v))


def may_empty(group: SharedGroup, records: Iterable[CheckedRecord]) -> bool:
    """Whether ``records`` (those of the group's members) could empty the group's pool:
    only then are its other members needed (they are paused when it runs out)."""
    if group.depleted:
        return False
    return sum((r.mb for r in records), Decimal(0)) >= group.data_left_mb
