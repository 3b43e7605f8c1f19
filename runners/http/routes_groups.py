"""Packages (the catalogue) and shared groups: create, members in and out, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from simledger.application.results import SharedGroupView
from simledger.projections.models import SharedGroupSummary
from simledger.runners.http import bodies, tenancy
from simledger.runners.http.auth import Admin, SimsRead, operator_only
from simledger.runners.http.reading import MinPosition, reach

router = APIRouter(tags=["packages and shared groups"])


@router.post("/v1/packages", status_code=201, summary="create_package (an operator key)")
def create_package(caller: Admin, body: bodies.NewPackage) -> bodies.Created:
    # The catalogue is the platform's, shared by every company: its staff keep it.
    operator_only(caller, "the package catalogue")
    ledger = caller.service.ledger
    package_id = caller.run(
        lambda: ledger.create_package(
            body.name,
            data_mb=body.data_mb,
            validity_days=body.validity_days,
            auto_renew=body.auto_renew,
            price=body.price,
        )
    )
    return bodies.Created(id=package_id)


@router.get("/v1/shared-groups", summary="shared_groups(): a company key sees its own")
def list_groups(
    caller: SimsRead,
    locked: bool | None = None,
    company: Annotated[str | None, Query(max_length=1000)] = None,
    min_position: MinPosition = None,
) -> list[SharedGroupSummary]:
    reach(caller, min_position)
    ledger, own = caller.service.ledger, caller.company
    if own is not None and company is not None and company != own:
        return []
    if own is not None:
        return caller.run(lambda: tenancy.groups(ledger, own, locked=locked))
    return caller.run(lambda: ledger.shared_groups(company=company, locked=locked))


@router.get("/v1/shared-groups/{group_id}", summary="shared_group()")
def get_group(caller: SimsRead, group_id: str, min_position: MinPosition = None) -> SharedGroupView:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company
    return caller.run(lambda: tenancy.group(ledger, company, group_id))


@router.post("/v1/shared-groups", status_code=201, summary="create_shared_group (R-SG1, R-SG2)")
def create_group(caller: Admin, body: bodies.NewSharedGroup) -> bodies.Created:
    ledger, company = caller.service.ledger, caller.company

    def run() -> bodies.Created:
        iccids = [tenancy.sim(ledger, company, raw).iccid for raw in body.iccids]
        group_id = ledger.create_shared_group(
            body.name, iccids, body.package_id, notify_users=body.notify_users
        )
        return bodies.Created(id=group_id)

    return caller.run(run)


@router.post("/v1/shared-groups/{group_id}/members", summary="add_to_shared_group (R-SG3)")
def add_member(caller: Admin, group_id: str, body: bodies.Member) -> SharedGroupView:
    ledger, company = caller.service.ledger, caller.company

    def run() -> SharedGroupView:
        group = tenancy.group(ledger, company, group_id)
        iccid = tenancy.sim(ledger, company, body.iccid).iccid
        ledger.add_to_shared_group(group.group_id, iccid)
        return ledger.shared_group(group.group_id)

    return caller.run(run)


@router.delete(
    "/v1/shared-groups/{group_id}/members/{iccid}", summary="remove_from_shared_group (R-SG3)"
)
def remove_member(caller: Admin, group_id: str, iccid: str) -> SharedGroupView:
    ledger, company = caller.service.ledger, caller.company

    def run() -> SharedGroupView:
        group = tenancy.group(ledger, company, group_id)
        key = tenancy.sim(ledger, company, iccid).iccid
        ledger.remove_from_shared_group(group.group_id, key)
        return ledger.shared_group(group.group_id)

    return caller.run(run)


@router.delete("/v1/shared-groups/{group_id}", summary="delete_shared_group (R-SG4)")
def delete_group(
    caller: Admin,
    group_id: str,
    move_to: Annotated[str | None, Query(max_length=100)] = None,
) -> bodies.Done:
    ledger, company = caller.service.ledger, caller.company

    def run() -> bodies.Done:
        group = tenancy.group(ledger, company, group_id)
        target = None if move_to is None else tenancy.group(ledger, company, move_to).group_id
        ledger.delete_shared_group(group.group_id, move_to=target)
        return bodies.Done()

    return caller.run(run)
