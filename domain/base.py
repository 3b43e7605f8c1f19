"""Base classes for aggregates whose ids are strings (ICCIDs, or UUIDs as text).

eventsourcing's ``Aggregate`` only takes UUID ids; a SIM's id is its normalised ICCID so
that the event store reads as an audit log by ICCID. So every aggregate here derives from
``BaseAggregate[str]`` with the frozen event classes below.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Self

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaDomainEvent,
    OriginatorIDError,
    OriginatorVersionError,
)
from eventsourcing.utils import get_topic, resolve_topic

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
        """``CanMutateAggregate.mutate`` (the same checks and errors, ``apply``, then the
        version and modification time), on the attributes behind ``BaseAggregate``'s
        properties, which our aggregates do not override; then the chain hash."""
        assert aggregate is not None
        if self.originator_id != aggregate._id:
            raise OriginatorIDError(self.originator_id, aggregate._id)
        next_version = aggregate._version + 1
        if self.originator_version != next_version:
            raise OriginatorVersionError(self.originator_version, next_version)
        self.apply(aggregate)
        aggregate._version = self.originator_version
        aggregate._modified_on = self.timestamp
        aggregate._chain = self.chain
        return aggregate


@dataclass(frozen=True)
class CreatedEvent(CanInitAggregate[str], DomainEvent):
    originator_topic: str

    def mutate(self, aggregate: Any) -> Any:
        """``CanInitAggregate.mutate`` for our aggregates, whose ``__init__`` takes no
        argument: the same steps (a shell object, ``__base_init__``, ``__init__``,
        ``apply``) without matching the event's fields to the two init signatures per
        event, a third of a full replay's time. Any other class takes the original path."""
        cls = _created_classes.get(self.originator_topic)
        if cls is None:
            created: Any = super().mutate(aggregate)
            if _plain_init(type(created)):
                _created_classes[self.originator_topic] = type(created)
        else:
            created = object.__new__(cls)
            created.__base_init__(self.originator_id, self.originator_version, self.timestamp)
            created.__init__()
            self.apply(created)
        created._chain = self.chain
        return created


_created_classes: dict[str, type[Any]] = {}
"""Aggregate classes by topic whose creation takes the fast path of CreatedEvent.mutate."""


def _plain_init(cls: type[Any]) -> bool:
    """True when ``cls`` is one of ours and its ``__init__`` takes only ``self``."""
    if not issubclass(cls, LedgerAggregate):
        return False
    params = list(inspect.signature(cls.__init__).parameters.values())
    return len(params) == 1 and cls.__base_init__ is BaseAggregate.__base_init__


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
        # As eventsourcing's own ``take``: a snapshot says which class version wrote it, so
        # ``mutate`` upcasts only older ones (ARCHITECTURE.md, "Event versions").
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
        """Rebuild the aggregate; enum attributes, stored as plain JSON strings, get their
        enum type back (code compares them with ``is``).

        The steps of eventsourcing's ``CanSnapshotAggregate.mutate`` (a copy of the state,
        upcast from the class version that wrote it, id, version, no pending events, an
        object made without ``__init__``), with the class and its enum attributes looked
        up once per topic: a bulk command rebuilds 10,000 SIMs from snapshots.
        """
        restore = _restorer(self.topic)
        state = dict(self.state)
        from_version = state.pop("class_version", 1)
        while from_version < restore.class_version:
            getattr(restore.cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        for name, members, enum in restore.enums:
            value = state.get(name)
            if value is not None:
                member = members.get(value)
                state[name] = enum(value) if member is None else member
        state["_id"] = self.originator_id
        state["_version"] = self.originator_version
        state["_pending_events"] = []
        aggregate = object.__new__(restore.cls)
        object.__setattr__(aggregate, "__dict__", state)
        return aggregate


@dataclass(frozen=True)
class _Restorer:
    cls: type[Any]
    class_version: int
    enums: tuple[tuple[str, dict[Any, Enum], type[Enum]], ...]
    """(attribute, value -> member, enum) for each of ``cls.snapshot_enums``."""


@functools.cache
def _restorer(topic: str) -> _Restorer:
    cls = resolve_topic(topic)
    return _Restorer(
        cls=cls,
        class_version=getattr(cls, "class_version", 1),
        enums=tuple(
            (name, dict(enum._value2member_map_), enum)
            for name, enum in getattr(cls, "snapshot_enums", {}).items()
        ),
    )


@dataclass(frozen=True)
class _InitPlan:
    names: tuple[str, ...]
    """Every field, in the dataclass's order (its ``__init__`` sets them in that order)."""
    required: frozenset[str]
    """The fields a command must give (no default; the id, version and timestamp are
    filled in by ``trigger_event``)."""
    given: frozenset[str]
    """The fields a command may give."""
    defaults: dict[str, Any]


_INHERENT = frozenset({"originator_id", "originator_version", "timestamp"})
_init_plans: dict[type[Any], _InitPlan | None] = {}


def _init_plan(cls: type[Any]) -> _InitPlan | None:
    """How to build an event of ``cls`` without its ``__init__``, or None when that could
    differ: not one of our frozen dataclass events, a ``__post_init__``, a field set by a
    factory or left out of ``__init__``, slots, an ``__init__`` not taking exactly the
    fields (one written by hand)."""
    if cls in _init_plans:
        return _init_plans[cls]
    plan = None
    if (
        issubclass(cls, DomainEvent)
        and dataclasses.is_dataclass(cls)
        and not hasattr(cls, "__post_init__")
        and "__slots__" not in vars(cls)
        and cls.__dataclass_params__.init  # type: ignore[attr-defined]
    ):
        fields = dataclasses.fields(cls)
        takes = list(inspect.signature(cls.__init__).parameters)[1:]
        if sorted(takes) == sorted(f.name for f in fields) and all(
            f.init and f.default_factory is dataclasses.MISSING for f in fields
        ):
            names = tuple(f.name for f in fields)
            defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
            plan = _InitPlan(
                names=names,
                required=frozenset(names) - defaults.keys() - _INHERENT,
                given=frozenset(names) - _INHERENT,
                defaults=defaults,
            )
    _init_plans[cls] = plan
    return plan


class LedgerAggregate(BaseAggregate[str]):
    """Common base of the aggregates: a string id. Snapshots use :class:`Snapshot`."""

    snapshot_enums: ClassVar[dict[str, type[Enum]]] = {}
    """Attributes holding enum values, re-typed when loaded from a :class:`Snapshot`."""

    _chain: str = ""
    """The chain hash of the aggregate's last event (kept in snapshots: ``Snapshot.take``
    copies every attribute but the id, version and pending events)."""

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """``BaseAggregate.trigger_event``, then the new event is sealed into the chain.

        The event object is built as its dataclass ``__init__`` would build it (the same
        fields, in the same order, defaults filled in) but written straight into its
        ``__dict__``: a frozen dataclass's ``__init__`` sets each field through
        ``object.__setattr__``, a tenth of a bulk command's time. Arguments that do not
        fit the fields, and classes this cannot copy (see :func:`_init_plan`), take the
        original path, which raises eventsourcing's own error.
        """
        previous = self._chain  # before the new event's mutate resets it to its empty chain
        plan = _init_plan(event_class)
        if plan is None or not (plan.required <= kwargs.keys() <= plan.given):
            super().trigger_event(event_class, **kwargs)
        else:
            kwargs["originator_id"] = self._id
            kwargs["originator_version"] = self._version + 1
            if kwargs.get("timestamp") is None:
                kwargs["timestamp"] = event_class.create_timestamp()
            event = object.__new__(event_class)
            defaults = plan.defaults
            object.__setattr__(
                event,
                "__dict__",
                {name: kwargs[name] if name in kwargs else defaults[name] for name in plan.names},
            )
            event.mutate(self)
            self._pending_events.append(event)
        self._seal(self._pending_events[-1], previous)

    @classmethod
    def _create(
        cls,
        event_class: type[CanInitAggregate[str]],
        *,
        id: str | None = None,
        **kwargs: Any,
    ) -> Self:
        aggregate = super()._create(event_class, id=id, **kwargs)
        aggregate._seal(aggregate._pending_events[-1], "")
        return aggregate

    def _seal(self, event: Any, previous: str) -> None:
        chain = seal(event, previous)
        object.__setattr__(event, "chain", chain)  # frozen: set once, before it is stored
        self._chain = chain

    @classmethod
    def start(cls, event_class: type[CreatedEvent], id: str, **kwargs: Any) -> Self:
        """Create the aggregate from its first event."""
        return cls._create(event_class, id=id, **kwargs)
