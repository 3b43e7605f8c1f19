"""A usage record's receipt (R-US1): the proof that a ``record_id`` was counted.

One small aggregate per record id, whose id is derived from the record id alone
(:func:`receipt_id`) and whose only event, ``Recorded``, is saved in the same transaction
as the usage it receipts. The event store refuses a second first event for the same id
(its unique key is aggregate id and version), so a record delivered twice, even by two
processes at once, is counted once: the loser's whole save fails and is decided again,
and then finds the receipt. Being an aggregate like the others, a receipt is rebuilt,
chained and verified with them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid5

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate

RECEIPT_NAMESPACE = UUID("5b0f1f4e-3d55-5c1e-9a59-6f1d6c2e7a10")
"""The namespace of the receipts' ids (uuid5). Never change it: the ids of the receipts
already stored are derived with it."""


def receipt_id(record_id: str) -> str:
    """The id of the receipt of ``record_id``: the same in every process, at every time."""
    return str(uuid5(RECEIPT_NAMESPACE, record_id))


class UsageReceipt(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Recorded(CreatedEvent, Event):
        """The record ``record_id`` was counted: ``mb`` MB used by ``iccid`` at ``at``."""

        record_id: str
        iccid: str
        mb: Decimal
        at: datetime

        def apply(self, receipt: UsageReceipt) -> None:
            receipt.record_id = self.record_id
            receipt.iccid = self.iccid
            receipt.mb = self.mb
            receipt.at = self.at

    def __init__(self) -> None:
        self.record_id: str = ""
        self.iccid: str = ""
        self.mb: Decimal = Decimal(0)
        self.at: datetime | None = None

    @classmethod
    def issue(
        cls, record_id: str, iccid: str, mb: Decimal, at: datetime, *, key: str | None = None
    ) -> UsageReceipt:
        """The receipt of ``record_id``; ``key``: its :func:`receipt_id`, if the caller has
        derived it already."""
        return cls.start(
            cls.Recorded,
            id=key or receipt_id(record_id),
            record_id=record_id,
            iccid=iccid,
            mb=mb,
            at=at,
        )
