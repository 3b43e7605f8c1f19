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
from simledger.domain.package import Package
from simledger.domain.regular_group import RegularGroup
from simledger.projections.models import PendingActivity

FEED_LIMIT = 1000
"""At most this many events per page of the feed."""
ANSWERS_SHOWN = 1000
"""At most this many accepted SIMs' answers in one operation's detail (each reads the SIM's
events); ``answers_complete`` says when there were more."""

_ANSWER_OF = {
    "Paused": "confirmed",
    "Resumed": "confirmed",
    "PauseRefused": "refused",
    "ResumeRefused": "refused",
    "OperationSuperseded": "superseded",
}


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
    answers: dict[str, str]
    """Each accepted SIM's answer so far: ``pending``, ``confirmed``, ``refused`` or
    ``superseded`` (the SIM moved meanwhile, R-BK3)."""
    answers_complete: bool


def store_position(ledger: SimLedger) -> int:
    """The last position recorded in the store (raises when the store does not answer)."""
    return int(ledger.recorder.max_notification_id() or 0)


def views_position(ledger: SimLedger) -> int:
    """The store position the views reflect: the data of a read is at least this new."""
    return int(ledger.views.store.position())


def position_marks(ledger: SimLedger) -> tuple[int, int]:
    """Taken before a call, for :func:`views_position_after`."""
    return ledger.views.checks, ledger.last_saved_position


def views_position_after(ledger: SimLedger, marks: tuple[int, int] | None) -> int:
    """:func:`views_position` for a call that began at ``marks``: the position its own
    freshness check read (no query) when it made one and saved nothing; else asked."""
    if marks is not None and position_marks(ledger) == (marks[0] + 1, marks[1]):
        return ledger.views.seen
    return views_position(ledger)


def copy_owner(ledger: SimLedger, package_id: str) -> str | None:
    """The SIM whose own copy the package ``package_id`` is (its events are that SIM's
    company's); None for a catalogue package, which is no company's, or an unknown one."""
    package = ledger.unit_of_work.get(package_id, Package)
    owner = getattr(package, "iccid", None) if package is not None else None
    return owner if isinstance(owner, str) else None


def regular_group_company(ledger: SimLedger, group_id: str) -> str | None:
    """The company of the regular group ``group_id`` (it never changes, R-RG2); None if
    unknown."""
    group = ledger.unit_of_work.get(group_id, RegularGroup)
    return None if group is None else group.company


def operation_detail(ledger: SimLedger, operation_id: object) -> OperationDetail:
    key = values.uuid_text(operation_id, UnknownOperation)
    operation = ledger.unit_of_work.get(key, BulkOperation)
    if operation is None:
        raise UnknownOperation(operation_id)
    accepted = list(operation.accepted)
    activity = next(
        (row for row in ledger.pending_activity() if str(row.operation_id) == key), None
    )
    return OperationDetail(
        operation_id=UUID(key),
        kind=operation.kind,
        requested_at=operation.requested_at,
        deadline=operation.deadline,
        accepted=accepted,
        rejected=dict(operation.rejected),
        idempotency_key=operation.idempotency_key,
        activity=activity,
        answers={iccid: _answer(ledger, iccid, key) for iccid in accepted[:ANSWERS_SHOWN]},
        answers_complete=len(accepted) <= ANSWERS_SHOWN,
    )


def _answer(ledger: SimLedger, iccid: str, operation_id: str) -> str:
    """The carrier's answer for one SIM of the operation, from the SIM's own events."""
    for event in ledger.events.get(iccid):
        if getattr(event, "operation_id", None) == operation_id:
            answer = _ANSWER_OF.get(type(event).__name__)
            if answer is not None:
                return answer
    return "pending"


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
