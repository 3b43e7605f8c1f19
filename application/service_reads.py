"""Reads the HTTP service needs beyond docs/api.md: the views' position (read-your-writes),
one bulk operation with its answer and owner, and a page of the event feed.

Module functions over a :class:`SimLedger` rather than ledger methods: they serve the service
(runners/http/), not code embedding the ledger, so the public API stays as documented."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from simledger.adapters.store.event_store import log_pages
from simledger.application.audit_log import audit_record
from simledger.application.ledger import SimLedger
from simledger.domain import values
from simledger.domain.bulk import BulkOperation
from simledger.domain.errors import UnknownOperation
from simledger.projections.models import PendingActivity

FEED_LIMIT = 1000
"""At most this many events per page of the feed."""


class OperationDetail(BaseModel):
    """One bulk operation: what was asked, what was accepted and refused, and where its
    carriers' answers stand (the pending activity row, R-BK3)."""

    model_config = ConfigDict(frozen=True)

    operation_id: UUID
    kind: str
    requested_at: datetime | None
    deadline: datetime | None
    accepted: list[str]
    rejected: dict[str, str]
    idempotency_key: str | None
    activity: PendingActivity | None


def store_position(ledger: SimLedger) -> int:
    """The last position recorded in the store (raises when the store does not answer)."""
    return int(ledger.recorder.max_notification_id() or 0)


def views_position(ledger: SimLedger) -> int:
    """The store position the views reflect: the data of a read is at least this new."""
    return int(ledger.views.store.position())


def operation_detail(ledger: SimLedger, operation_id: object) -> OperationDetail:
    key = values.uuid_text(operation_id, UnknownOperation)
    operation = ledger.unit_of_work.get(key, BulkOperation)
    if operation is None:
        raise UnknownOperation(operation_id)
    activity = next(
        (row for row in ledger.pending_activity() if str(row.operation_id) == key), None
    )
    return OperationDetail(
        operation_id=UUID(key),
        kind=operation.kind,
        requested_at=operation.requested_at,
        deadline=operation.deadline,
        accepted=list(operation.accepted),
        rejected=dict(operation.rejected),
        idempotency_key=operation.idempotency_key,
        activity=activity,
    )


def event_page(ledger: SimLedger, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events after position ``after``, in store order, as the audit export
    writes them (position, aggregate, id, version, event, at, data, chain)."""
    last = store_position(ledger)
    records: list[dict[str, Any]] = []
    for page in log_pages(ledger.recorder, after, last, min(limit, FEED_LIMIT)):
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            records.append(audit_record(notification, event))
            if len(records) >= limit:
                return records
    return records
