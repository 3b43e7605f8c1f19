"""The pending activity list (R-BK3): each bulk pause or resume and its carriers' answers.

A request counts the SIMs it accepted; a SIM's ``Paused`` / ``Resumed`` carrying the
operation's id confirms one, a refusal (or a yes that arrived after the SIM had moved on,
``OperationSuperseded``) refuses one. What is neither is still pending; it is overdue once
the deadline has passed (decided when the view is read, with the ledger's clock).
"""

from __future__ import annotations

from simledger.domain.bulk import BulkOperation
from simledger.domain.sim import Sim
from simledger.projections.batch_state import BatchFold, Handler
from simledger.projections.rows import OperationRow


def requested(fold: BatchFold, event: BulkOperation.Requested) -> None:
    fold.add_operation(
        OperationRow(
            operation_id=event.originator_id,
            kind=event.kind,
            requested_at=event.requested_at,
            deadline=event.deadline,
            requested=len(event.accepted),
        )
    )


def _answered(fold: BatchFold, operation_id: str | None) -> OperationRow | None:
    if operation_id is None:  # a resume by the system, not a carrier's answer
        return None
    row = fold.operation(operation_id)
    if row is not None:
        fold.dirty_operations.add(operation_id)
    return row


def confirmed(fold: BatchFold, event: Sim.Paused | Sim.Resumed) -> None:
    row = _answered(fold, event.operation_id)
    if row is not None:
        row.confirmed += 1


def refused(fold: BatchFold, event: Sim.OperationRefused) -> None:
    row = _answered(fold, event.operation_id)
    if row is not None:
        row.refused += 1


HANDLERS: dict[type, Handler] = {
    BulkOperation.Requested: requested,
    Sim.Paused: confirmed,
    Sim.Resumed: confirmed,
    Sim.OperationRefused: refused,
}
