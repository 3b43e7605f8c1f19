"""Bulk pause and resume (``Idempotency-Key``) and the operations' answers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header

from simledger.application.results import BulkResult
from simledger.application.service_reads import OperationDetail
from simledger.domain.errors import SimledgerError
from simledger.projections.models import PendingActivity
from simledger.runners.http import bodies, tenancy
from simledger.runners.http.auth import Bulk, SimsRead
from simledger.runners.http.reading import MinPosition, reach

router = APIRouter(prefix="/v1/operations", tags=["operations"])


@router.post("", status_code=202, summary="pause or resume SIMs (R-BK1..3, R-BK6)")
def request_operation(
    caller: Bulk,
    body: bodies.BulkRequest,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BulkResult:
    """The same ``Idempotency-Key`` again (from this process or another) gives the same answer
    and never a second operation; keys are per company."""
    ledger, company = caller.service.ledger, caller.company
    if idempotency_key is None and company is not None:
        # A company's operation carries its company in its stored key: that is how it is
        # told apart as the company's own later (GET, the feed).
        idempotency_key = f"auto-{uuid.uuid4()}"
    key = None if idempotency_key is None else tenancy.idempotency_scope(company, idempotency_key)

    def run() -> BulkResult:
        asked, hidden = list(body.iccids), {}
        if company is not None:
            # Another company's SIM is refused as unknown, and never reaches the ledger.
            asked = []
            for raw in body.iccids:
                try:
                    visible = tenancy.sim_visible(ledger, company, raw)
                    if not visible:
                        iccid, reason = tenancy.unknown_sim_reason(raw)
                        hidden[iccid] = reason
                        continue
                except SimledgerError:
                    pass  # not an ICCID, or unknown: the ledger refuses it as it does
                asked.append(raw)
        call = ledger.pause if body.kind == "pause" else ledger.resume
        result = call(asked, idempotency_key=key)
        if not hidden:
            return result
        return result.model_copy(update={"rejected": {**result.rejected, **hidden}})

    return caller.run(run)


@router.get("", summary="pending activity: the bulk operations, newest first")
def list_operations(caller: SimsRead, min_position: MinPosition = None) -> list[PendingActivity]:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company

    def read() -> list[PendingActivity]:
        rows = ledger.pending_activity()
        if company is None:
            return rows
        mine = []
        for row in rows:
            try:
                tenancy.operation(ledger, company, str(row.operation_id))
            except SimledgerError:
                continue
            mine.append(row)
        return mine

    return caller.run(read)


@router.get("/{operation_id}", summary="one bulk operation: what was accepted, refused, answered")
def get_operation(
    caller: SimsRead, operation_id: str, min_position: MinPosition = None
) -> OperationDetail:
    reach(caller, min_position)
    ledger, company = caller.service.ledger, caller.company
    return caller.run(lambda: tenancy.operation(ledger, company, operation_id))
