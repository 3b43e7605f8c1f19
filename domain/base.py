"""Base classes for aggregates whose ids are strings (ICCIDs, or UUIDs as text).

eventsourcing's ``Aggregate`` only takes UUID ids; a SIM's id is its normalised ICCID so
that the event store reads as an audit log by ICCID. So every aggregate here derives from
``BaseAggregate[str]`` with the frozen event classes below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Self

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaDomainEvent,
)
from eventsourcing.utils import get_topic


@dataclass(frozen=True)
class DomainEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    """An event of a string-identified aggregate."""

    originator_id: str
    originator_version: int
    timestamp: datetime

    def apply(self, aggregate: Any) -> None:  # pragma: no cover - overridden
        """Evolve ``aggregate``; subclasses set the attributes they change."""


@dataclass(frozen=True)
class CreatedEvent(CanInitAggregate[str], DomainEvent):
    originator_topic: str


@dataclass(frozen=True)
class Snapshot(CanSnapshotAggregate[str], metaclass=MetaDomainEvent):
    """The state of an aggregate at a version, so long histories load fast."""

    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Self:
        state = {
            k: v
            for k, v in vars(aggregate).items()
            if k not in ("_id", "_version", "_pending_events")
        }
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )

    def mutate(self, _: None) -> Any:
        """Rebuild the aggregate; enum attributes, stored as plain JSON strings, get their
        enum type back (code compares them with ``is``)."""
        aggregate = super().mutate(None)
        for name, enum in getattr(type(aggregate), "snapshot_enums", {}).items():
            value = aggregate.__dict__.get(name)
            if value is not None:
                aggregate.__dict__[name] = enum(value)
        return aggregate


class LedgerAggregate(BaseAggregate[str]):
    """Common base of the aggregates: a string id. Snapshots use :class:`Snapshot`."""

    snapshot_enums: ClassVar[dict[str, type[Enum]]] = {}
    """Attributes holding enum values, re-typed when loaded from a :class:`Snapshot`."""

    @classmethod
    def start(cls, event_class: type[CreatedEvent], id: str, **kwargs: Any) -> Self:
        """Create the aggregate from its first event."""
        return cls._create(event_class, id=id, **kwargs)
