"""Base classes for aggregates whose ids are strings (ICCIDs, or UUIDs as text).

eventsourcing's ``Aggregate`` only takes UUID ids; a SIM's id is its normalised ICCID so
that the event store reads as an audit log by ICCID. So every aggregate here derives from
``BaseAggregate[str]`` with the frozen event classes below. Every event carries the chain
hash that makes tampering evident (:mod:`simledger.domain.chain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Protocol, Self

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaDomainEvent,
)
from eventsourcing.utils import get_topic

from simledger.domain.actor import ACTOR_FIELD, CURRENT_ACTOR
from simledger.domain.chain import seal


@dataclass(frozen=True)
class DomainEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    """An event of a string-identified aggregate."""

    originator_id: str
    originator_version: int
    timestamp: datetime
    chain: str = field(default="", kw_only=True)
    """Tamper evidence (:mod:`simledger.domain.chain`): the hash of this event's content
    chained to the previous event of the same aggregate; set when the event is triggered."""

    def apply(self, aggregate: Any) -> None:  # pragma: no cover - overridden
        """Evolve ``aggregate``; subclasses set the attributes they change."""

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's ``mutate`` (checks, ``apply``, version, modification time); the
        aggregate's chain then ends at this event, so its next event is sealed onto it."""
        aggregate = super().mutate(aggregate)
        aggregate._chain = self.chain
        return aggregate


@dataclass(frozen=True)
class CreatedEvent(CanInitAggregate[str], DomainEvent):
    originator_topic: str

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's ``mutate`` of a first event; the new aggregate's chain starts
        at this event."""
        created = super().mutate(aggregate)
        assert created is not None
        created._chain = self.chain
        return created


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
        """As eventsourcing's ``take`` (which keeps the id, version and pending events of
        any aggregate but its own ``Aggregate``): the state without them, and the class
        version that wrote it, so ``mutate`` upcasts only older ones (ARCHITECTURE.md,
        "Event versions")."""
        state = {
            k: v
            for k, v in vars(aggregate).items()
            if k not in ("_id", "_version", "_pending_events")
        }
        class_version = getattr(type(aggregate), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )

    def mutate(self, _: None) -> Any:
        """eventsourcing's ``mutate`` (the state upcast to the class's version); then the
        enum attributes, stored as plain JSON strings, get their enum type back: code
        compares them with ``is``."""
        aggregate = super().mutate(None)
        state = vars(aggregate)
        for name, enum in getattr(type(aggregate), "snapshot_enums", {}).items():
            value = state.get(name)
            if value is not None:
                state[name] = enum(value)
        return aggregate


class EventShortcut(Protocol):
    """Another way to record an aggregate's events, with the same outcome as eventsourcing's
    (the event made, applied and pending); each method may decline, having done nothing,
    and the event then takes eventsourcing's way."""

    def create(
        self, aggregate_class: type[Any], event_class: type[Any], id: str, fields: dict[str, Any]
    ) -> Any | None:
        """The new aggregate of ``aggregate_class._create``, or None to decline."""

    def trigger(self, aggregate: Any, event_class: type[Any], fields: dict[str, Any]) -> bool:
        """Trigger the event as ``trigger_event`` would; False to decline."""


class LedgerAggregate(BaseAggregate[str]):
    """Common base of the aggregates: a string id. Snapshots use :class:`Snapshot`."""

    snapshot_enums: ClassVar[dict[str, type[Enum]]] = {}
    """Attributes holding enum values, re-typed when loaded from a :class:`Snapshot`."""

    _chain: str = ""
    """The chain hash of the aggregate's last event (kept in snapshots: ``Snapshot.take``
    copies every attribute but the id, version and pending events)."""

    event_shortcut: ClassVar[EventShortcut | None] = None
    """How events are recorded when not eventsourcing's way (None): set by the application
    to one that does per event class what eventsourcing does per event."""

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """``BaseAggregate.trigger_event``, then the new event is sealed into the chain."""
        previous = self._chain  # before the new event's mutate moves it on
        shortcut = LedgerAggregate.event_shortcut
        if shortcut is None or not shortcut.trigger(self, event_class, kwargs):
            super().trigger_event(event_class, **kwargs)
        self._seal(self._pending_events[-1], previous)

    @classmethod
    def _create(
        cls,
        event_class: type[CanInitAggregate[str]],
        *,
        id: str | None = None,
        **kwargs: Any,
    ) -> Self:
        shortcut = LedgerAggregate.event_shortcut
        aggregate = None
        if shortcut is not None and id is not None:
            aggregate = shortcut.create(cls, event_class, id, kwargs)
        if aggregate is None:
            aggregate = super()._create(event_class, id=id, **kwargs)
        aggregate._seal(aggregate._pending_events[-1], "")
        return aggregate

    def _seal(self, event: Any, previous: str) -> None:
        # Who caused it (R-KY3), before the hash, so the chain covers it. Stored as one more
        # field only when someone is named: events without an actor keep the content, and
        # so the hash, they always had; no decision reads it.
        actor = CURRENT_ACTOR.get()
        if actor is not None:
            object.__setattr__(event, ACTOR_FIELD, actor.stored())
        chain = seal(event, previous)
        object.__setattr__(event, "chain", chain)  # frozen: set once, before it is stored
        self._chain = chain

    @classmethod
    def start(cls, event_class: type[CreatedEvent], id: str, **kwargs: Any) -> Self:
        """Create the aggregate from its first event."""
        return cls._create(event_class, id=id, **kwargs)


def aggregate_name(event_class: type) -> str:
    """The name of the aggregate class whose event ``event_class`` is: the outer class of
    the first class of its MRO nested in one (``Sim.Received`` → ``Sim``; an event defined
    in a module of its own, ``SessionStarted(Sim.Event)``, → ``Sim``)."""
    for klass in event_class.__mro__:
        outer, dot, _ = klass.__qualname__.partition(".")
        if dot:
            return outer
    return event_class.__qualname__
