"""Regular groups (R-RG1..3), the Always On option of a SIM (R-AO1) and carrier session
records (R-SS1).

A company key makes groups of its own company (``company`` set to it), holding its own
SIMs only (R-RG2), and sees only those: another company's group, or an operator's, is
answered as one that does not exist (``UnknownRegularGroup``). Session records come from
the carriers' integrations, which report for every company: an operator key's only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from simledger.application.ledger import SimLedger
from simledger.application.results import RegularGroupView, SessionResult
from simledger.domain.errors import InvalidInput, UnknownRegularGroup
from simledger.runners.http import bodies, tenancy
from simledger.runners.http.auth import SimsRead, SimsWrite, UsageWrite, operator_only
from simledger.runners.http.reading import MinPosition, reach

router = APIRouter(tags=["regular groups, Always On, sessions"])


class NewRegularGroup(bodies.Body):
    name: str = Field(max_length=bodies.TEXT_MAX)
    iccids: list[str] = Field(default_factory=list, max_length=10_000)
    company: str | None = Field(default=None, max_length=bodies.TEXT_MAX)


class Members(bodies.Body):
    iccids: list[str] = Field(max_length=10_000)


class Name(bodies.Body):
    name: str = Field(max_length=bodies.TEXT_MAX)


class AlwaysOn(bodies.Body):
    on: bool


class SessionRecords(bodies.Body):
    records: list[dict[str, Any]] = Field(max_length=10_000)


def group(ledger: SimLedger, company: str | None, group_id: str) -> RegularGroupView:
    """The regular group, or :class:`UnknownRegularGroup` unless it is the caller's
    company's (an operator key sees every group)."""
    view = ledger.regular_group(group_id)
    if company is not None and view.company != company:
        raise UnknownRegularGroup(group_id)
    return view


def own_sims(ledger: SimLedger, company: str | None, iccids: list[str]) -> list[str]:
    return [tenancy.sim(ledger, company, raw).iccid for raw in iccids]


@router.post("/v1/regular-groups", status_code=201, summary="create_group (R-RG1, R-RG2)")
def create_group(caller: SimsWrite, body: NewRegularGroup) -> bodies.Created:
    ledger, company = caller.service.ledger, caller.company

    def run() -> bodies.Created:
        if company is not None and body.company not in (None, company):
            raise InvalidInput("a company key makes groups of its own company", rule="R-RG2")
        iccids = own_sims(ledger, company, body.iccids)
        owner = company if company is not None else body.company
        return bodies.Created(id=ledger.create_group(body.name, iccids, company=owner))

    return caller.run(run)


@router.get("/v1/regular-groups/{regular_group_id}", summary="regular_group()")
def get_group(
    caller: SimsRead, regular_group_id: str, min_position: MinPosition = None
) -> RegularGroupView:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company
    return caller.run(lambda: group(ledger, company, regular_group_id))


@router.post("/v1/regular-groups/{regular_group_id}/name", summary="rename_group (R-RG1)")
def rename_group(caller: SimsWrite, regular_group_id: str, body: Name) -> RegularGroupView:
    ledger, company = caller.service.ledger, caller.company

    def run() -> RegularGroupView:
        found = group(ledger, company, regular_group_id)
        ledger.rename_group(found.group_id, body.name)
        return ledger.regular_group(found.group_id)

    return caller.run(run)


@router.post("/v1/regular-groups/{regular_group_id}/members", summary="add_to_group (R-RG2)")
def add_members(caller: SimsWrite, regular_group_id: str, body: Members) -> RegularGroupView:
    ledger, company = caller.service.ledger, caller.company

    def run() -> RegularGroupView:
        found = group(ledger, company, regular_group_id)
        ledger.add_to_group(found.group_id, own_sims(ledger, company, body.iccids))
        return ledger.regular_group(found.group_id)

    return caller.run(run)


@router.delete(
    "/v1/regular-groups/{regular_group_id}/members/{iccid}", summary="remove_from_group (R-RG2)"
)
def remove_member(caller: SimsWrite, regular_group_id: str, iccid: str) -> RegularGroupView:
    ledger, company = caller.service.ledger, caller.company

    def run() -> RegularGroupView:
        found = group(ledger, company, regular_group_id)
        ledger.remove_from_group(found.group_id, own_sims(ledger, company, [iccid]))
        return ledger.regular_group(found.group_id)

    return caller.run(run)


@router.delete("/v1/regular-groups/{regular_group_id}", summary="delete_group (R-RG3)")
def delete_group(
    caller: SimsWrite,
    regular_group_id: str,
    move_to: Annotated[str | None, Query(max_length=100)] = None,
) -> bodies.Done:
    ledger, company = caller.service.ledger, caller.company

    def run() -> bodies.Done:
        found = group(ledger, company, regular_group_id)
        target = None if move_to is None else group(ledger, company, move_to).group_id
        ledger.delete_group(found.group_id, move_to=target)
        return bodies.Done()

    return caller.run(run)


@router.post("/v1/sims/{iccid}/always-on", summary="set_always_on (R-AO1)")
def set_always_on(caller: SimsWrite, iccid: str, body: AlwaysOn) -> bodies.Done:
    ledger, company = caller.service.ledger, caller.company

    def run() -> bodies.Done:
        ledger.set_always_on(tenancy.sim(ledger, company, iccid).iccid, body.on)
        return bodies.Done()

    return caller.run(run)


@router.post("/v1/sessions", summary="record_sessions (R-SS1, an operator key)")
def record_sessions(caller: UsageWrite, body: SessionRecords) -> SessionResult:
    # The carriers' integrations report sessions for every company: the platform's staff.
    operator_only(caller, "session records")
    ledger = caller.service.ledger
    return caller.run(lambda: ledger.record_sessions(body.records))
