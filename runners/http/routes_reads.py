"""SIM reads: the list view with every filter and sort of ``sims()``, one SIM (now, at a
time, at a version) and its history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from simledger.application.results import HistoryEntry, SimView
from simledger.domain.types import SimStatus, SimType
from simledger.projections.models import Page
from simledger.runners.http import tenancy
from simledger.runners.http.auth import SimsRead
from simledger.runners.http.bodies import answer
from simledger.runners.http.problems import Problem
from simledger.runners.http.reading import MinPosition, reach

router = APIRouter(prefix="/v1/sims", tags=["sims"])

Text = Annotated[str | None, Query(max_length=1000)]


@router.get("", summary="a page of the SIM list view (filters combine)", response_model=Page)
def list_sims(
    caller: SimsRead,
    status: Annotated[list[SimStatus] | None, Query()] = None,
    sim_type: Annotated[list[SimType] | None, Query()] = None,
    operator: Text = None,
    company: Text = None,
    label: Text = None,
    group_id: Text = None,
    search: Text = None,
    sort: Annotated[str, Query(max_length=40, description="any column of the list")] = "iccid",
    descending: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
    min_position: MinPosition = None,
    regular_group_id: Text = None,
) -> Response:
    reach(caller, min_position)
    own = caller.company
    if own is not None and company is not None and company != own:
        return answer(Page(items=[], next_cursor=None, total=0))  # another company's: none
    ledger = caller.service.ledger
    page = caller.run(
        lambda: ledger.sims(
            status=status or None,
            sim_type=sim_type or None,
            operator=operator,
            company=own if own is not None else company,
            label=label,
            group_id=group_id,
            search=search,
            sort=sort,
            descending=descending,
            limit=limit,
            cursor=cursor,
            regular_group_id=regular_group_id,
        )
    )
    return answer(page)


@router.get(
    "/{iccid}", summary="the SIM now, or as it was at a time or version", response_model=SimView
)
def get_sim(
    caller: SimsRead,
    iccid: str,
    as_of: datetime | None = None,
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    min_position: MinPosition = None,
) -> Response:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company

    def read() -> SimView:
        current = tenancy.sim(ledger, company, iccid)
        if as_of is None and version is None:
            return current
        if as_of is not None and as_of.tzinfo is None:
            raise Problem(422, "as_of needs a time zone (e.g. 2024-05-01T12:00:00Z)", rule="R-IN3")
        return ledger.sim_as_of(current.iccid, at=as_of, version=version)

    return answer(caller.run(read))


@router.get("/{iccid}/history", summary="every event that touched the SIM, with who caused it")
def sim_history(
    caller: SimsRead, iccid: str, min_position: MinPosition = None
) -> list[HistoryEntry]:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company

    def read() -> list[HistoryEntry]:
        return ledger.history(tenancy.sim(ledger, company, iccid).iccid)

    return caller.run(read)
