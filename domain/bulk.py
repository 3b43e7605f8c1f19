"""A bulk pause or resume request and the answer given to it (R-BK1, R-BK2, R-BK6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate

BULK_LIMIT = 10_000
"""R-BK1: at most this many SIMs per request."""


class BulkOperation(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Requested(CreatedEvent, Event):
        """Version 2 added ``requested_at``; see :meth:`upcast_v1_v2`."""

        class_version = 2

        kind: str
        accepted: list[str]
        rejected: dict[str, str]
        idempotency_key: str | None
        requested_at: datetime  # the ledger's clock, like the deadline
        deadline: datetime

        def apply(self, op: BulkOperation) -> None:
            op.kind = self.kind
            op.accepted = list(self.accepted)
            op.rejected = dict(self.rejected)
            op.idempotency_key = self.idempotency_key
            op.requested_at = self.requested_at
            op.deadline = self.deadline

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 had no ``requested_at``: the request was made when it was
            recorded, so its own timestamp stands in for the ledger's clock."""
            state["requested_at"] = state["timestamp"]

    def __init__(self) -> None:
        self.kind: str = ""
        self.accepted: list[str] = []
        self.rejected: dict[str, str] = {}
        self.idempotency_key: str | None = None
        self.requested_at: datetime | None = None
        self.deadline: datetime | None = None

    @classmethod
    def request(
        cls,
        operation_id: str,
        *,
        kind: str,
        accepted: list[str],
        rejected: dict[str, str],
        idempotency_key: str | None,
        requested_at: datetime,
        deadline: datetime,
    ) -> BulkOperation:
        return cls.start(
            cls.Requested,
            id=operation_id,
            kind=kind,
            accepted=accepted,
            rejected=rejected,
            idempotency_key=idempotency_key,
            requested_at=requested_at,
            deadline=deadline,
        )
