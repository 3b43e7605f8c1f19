"""Which events a company's webhook subscription receives (R-WH2): its SIMs' (their package
copies' included), its shared groups', its regular groups' (R-RG2) and its bulk operations'
— what its key sees in ``GET /v1/events``.

A SIM's event belongs to the company the SIM had at that event (a ``CompanyAssigned``
belongs to the new one), so a SIM moved from A to B never shows B what it did under A. A
deliverer sends thousands of events a second, so owners are remembered, per subscription, as
its scan goes: a SIM met for the first time is loaded (many in one query, ``load_many``; at the
event's own version when the SIM has moved on since), then followed through the events that
move it (``CompanyAssigned``, ``AssignedToCustomer`` carry the company). The memory is only
good for a scan that goes on where it stopped: the deliverer starts a new one when the
subscription's position is not where this scope left it (a replay, another deliverer). A
group's owner is asked again after any change of its members; an operation's never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simledger.adapters.store.batch_load import load_many
from simledger.application.ledger import SimLedger
from simledger.application.service_reads import copy_owner, regular_group_company
from simledger.domain.bulk import BulkOperation
from simledger.domain.errors import SimledgerError

_CACHE_MAX = 200_000
_GROUP_STABLE = frozenset({"UsageDrawn", "Depleted"})
"""SharedGroup events that leave its members as they were."""


def _company_key_owner(idempotency_key: str | None) -> str | None:
    """The company of a bulk operation requested with a company key (runners/http/tenancy.py
    stores ``company/<len>/<company>/<key>``); None: the operator's."""
    if not idempotency_key or not idempotency_key.startswith("company/"):
        return None
    _, length, rest = idempotency_key.split("/", 2)
    if not length.isdigit():
        return None
    return rest[: int(length)]


class CompanyScope:
    """The owner (a company, or None: nobody's but the operator's) of each event record."""

    def __init__(self, ledger: SimLedger, position: int = 0) -> None:
        self.ledger = ledger
        self.position = position
        """Where the scan this scope follows has got to (set by the deliverer)."""
        self._sims: dict[str, str | None] = {}
        self._groups: dict[str, frozenset[str] | None] = {}
        self._operations: dict[str, str | None] = {}
        self._copies: dict[str, str | None] = {}
        """A package copy's SIM (None: a catalogue package)."""
        self._regular: dict[str, str | None] = {}

    def owners(self, records: Sequence[dict[str, Any]]) -> list[str | None]:
        """Each record's company, in order (the records of one scan, in store order)."""
        first: dict[str, int] = {}
        for r in records:
            if r["aggregate"] == "Sim" and r["aggregate_id"] not in self._sims:
                first.setdefault(r["aggregate_id"], r["version"])
        self._load_sims_at(first)
        return [self._owner(record) for record in records]

    def _load_sims_at(self, versions: dict[str, int]) -> None:
        """Each SIM's company at the version given (its first event in this scan)."""
        if not versions:
            return
        loaded = load_many(self.ledger, sorted(versions))
        for iccid, version in versions.items():
            sim = loaded.get(iccid)
            if sim is not None and sim.version > version:  # moved on since: as it was then
                sim = self.ledger.repository.get(iccid, version=version)
            self._remember(self._sims, iccid, None if sim is None else sim.company)

    def _owner(self, record: dict[str, Any]) -> str | None:
        kind, ident = record["aggregate"], record["aggregate_id"]
        if kind == "Sim":
            moved = record["data"].get("company")
            if isinstance(moved, str):
                self._sims[ident] = moved
            return self._sims.get(ident)
        if kind == "SharedGroup":
            if record["event"] not in _GROUP_STABLE:
                self._groups.pop(ident, None)
            return self._group_owner(ident)
        if kind == "Package":  # a SIM's own copy is the SIM's; a catalogue package nobody's
            if ident not in self._copies:
                iccid = record["data"].get("iccid")
                if not isinstance(iccid, str) or record["event"] != "Assigned":
                    iccid = copy_owner(self.ledger, ident)
                self._remember(self._copies, ident, iccid)
            owner_sim = self._copies[ident]
            if owner_sim is None:
                return None
            if owner_sim not in self._sims:
                self._load_sims({owner_sim})
            return self._sims.get(owner_sim)
        if kind == "RegularGroup":  # a company's group (R-RG2): its company never changes
            if ident not in self._regular:
                self._remember(self._regular, ident, regular_group_company(self.ledger, ident))
            return self._regular[ident]
        if kind == "BulkOperation":
            if ident not in self._operations:
                operation = self.ledger.unit_of_work.get(ident, BulkOperation)
                key = None if operation is None else operation.idempotency_key
                self._remember(self._operations, ident, _company_key_owner(key))
            return self._operations[ident]
        return None

    def _group_owner(self, group_id: str) -> str | None:
        if group_id not in self._groups:
            try:
                members = frozenset(self.ledger.shared_group(group_id).members)
            except SimledgerError:
                members = frozenset()
            self._load_sims(members - self._sims.keys())
            self._remember(self._groups, group_id, members)
        members_ = self._groups[group_id]
        owners = {self._sims.get(m) for m in members_ or ()}
        # A group is a company's when it has members and every one is that company's (a
        # group mixing companies is the operator's alone: tenancy.owns_group).
        return owners.pop() if len(owners) == 1 else None

    def _load_sims(self, iccids: set[str] | frozenset[str]) -> None:
        if not iccids:
            return
        loaded = load_many(self.ledger, sorted(iccids))
        for iccid in iccids:
            sim = loaded.get(iccid)
            self._remember(self._sims, iccid, None if sim is None else sim.company)

    @staticmethod
    def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()  # rare: a fresh start costs one load per aggregate met again
        cache[key] = value
