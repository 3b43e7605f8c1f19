"""What a company key may see. Each check answers exactly as the ledger answers for an
unknown thing (same error, same message), so a 404 never tells another company's SIM,
group or operation from one that does not exist. Called inside ``Caller.run``."""

from __future__ import annotations

from typing import Any

from simledger.application.ledger import SimLedger
from simledger.application.results import SharedGroupView, SimView
from simledger.application.service_reads import (
    OperationDetail,
    copy_owner,
    operation_detail,
    regular_group_company,
)
from simledger.domain.errors import SimledgerError, UnknownGroup, UnknownOperation, UnknownSim
from simledger.domain.iccid import normalise_iccid
from simledger.projections.models import SharedGroupSummary


def idempotency_scope(company: str | None, key: str) -> str:
    """The key a company's ``Idempotency-Key`` is stored under: per company, so two companies
    sending the same key get two operations (an operator's key is the Python API's own)."""
    return key if company is None else f"company/{len(company)}/{company}/{key}"


def owns_operation(company: str | None, detail: OperationDetail) -> bool:
    if company is None:
        return True
    stored = detail.idempotency_key or ""
    return stored.startswith(f"company/{len(company)}/{company}/")


def shown_operation(company: str | None, detail: OperationDetail) -> OperationDetail:
    """The operation as its caller sees it: its own ``Idempotency-Key``, not the stored one."""
    if company is None or detail.idempotency_key is None:
        return detail
    key = (
        detail.idempotency_key.split("/", 3)[3] if detail.idempotency_key.count("/") >= 3 else None
    )
    return detail.model_copy(update={"idempotency_key": key})


def sim(ledger: SimLedger, company: str | None, iccid: str) -> SimView:
    """The SIM, or :class:`UnknownSim` if it is not the caller's company's."""
    view = ledger.sim(iccid)
    if company is not None and view.company != company:
        raise UnknownSim(view.iccid)
    return view


def sim_visible(ledger: SimLedger, company: str | None, iccid: object) -> bool:
    try:
        sim(ledger, company, str(iccid))
    except SimledgerError:
        return False
    return True


def group(ledger: SimLedger, company: str | None, group_id: str) -> SharedGroupView:
    """The shared group, or :class:`UnknownGroup` unless it is the caller's company's: it has
    members and every one is the company's (a group mixing companies, which only an operator
    can make, is the operator's alone: acting on it would change another company's SIMs)."""
    view = ledger.shared_group(group_id)
    if company is not None and not owns_group(ledger, company, view):
        raise UnknownGroup(group_id)
    return view


def owns_group(ledger: SimLedger, company: str, view: SharedGroupView) -> bool:
    return bool(view.members) and all(sim_visible(ledger, company, m) for m in view.members)


def groups(ledger: SimLedger, company: str, **filters: Any) -> list[SharedGroupSummary]:
    """``shared_groups(company=…)`` less the groups the company does not own wholly."""
    return [
        g
        for g in ledger.shared_groups(company=company, **filters)
        if owns_group(ledger, company, ledger.shared_group(str(g.group_id)))
    ]


def operation(ledger: SimLedger, company: str | None, operation_id: str) -> OperationDetail:
    detail = operation_detail(ledger, operation_id)
    if not owns_operation(company, detail):
        raise UnknownOperation(operation_id)
    return shown_operation(company, detail)


def unknown_sim_reason(iccid: object) -> tuple[str, str]:
    """The key and reason a bulk answer gives a SIM the caller may not see (as unknown)."""
    key = normalise_iccid(iccid)
    return key, str(UnknownSim(key))


class EventFilter:
    """Which feed events a company key sees: its SIMs' (their package copies' included), its
    groups' and its operations'."""

    def __init__(self, ledger: SimLedger, company: str) -> None:
        self.ledger = ledger
        self.company = company
        self._seen: dict[tuple[str, str], bool] = {}
        self._groups = {str(g.group_id) for g in groups(ledger, company)}

    def __call__(self, record: dict[str, Any]) -> bool:
        kind, ident = str(record["aggregate"]), str(record["aggregate_id"])
        known = self._seen.get((kind, ident))
        if known is None:
            known = self._decide(kind, ident)
            self._seen[(kind, ident)] = known
        return known

    def _decide(self, kind: str, ident: str) -> bool:
        if kind == "Sim":
            return sim_visible(self.ledger, self.company, ident)
        if kind == "SharedGroup":
            return ident in self._groups
        if kind == "Package":  # a SIM's own copy is the SIM's; a catalogue package no one's
            owner = copy_owner(self.ledger, ident)
            return owner is not None and sim_visible(self.ledger, self.company, owner)
        if kind == "BulkOperation":
            try:
                return owns_operation(self.company, operation_detail(self.ledger, ident))
            except SimledgerError:
                return False
        if kind == "RegularGroup":  # a company's group (R-RG2): its company never changes
            return regular_group_company(self.ledger, ident) == self.company
        return False
