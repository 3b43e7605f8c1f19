"""Replaying stored events into aggregates, as ``Repository.get`` does, for bulk loads.

A bulk command rebuilds thousands of aggregates, each from a snapshot and the events after
it. eventsourcing's generic path pays, per event, for what is the same for every event of a
class: a runtime protocol check, matching a first event's fields to two ``__init__``
signatures, resolving a snapshot's topic and its enum types. :func:`fast_project` decides
those once per class and then takes the same steps on the aggregate's own attributes:

* a :class:`~simledger.domain.base.Snapshot`: the aggregate class, its class version and
  its enum members looked up once per topic; the state upcast by the one
  :func:`~simledger.adapters.store.mapper.upcast` the mapper uses for events;
* a :class:`~simledger.domain.base.CreatedEvent` of an aggregate whose ``__init__`` takes
  no argument: the shell, ``__base_init__``, ``__init__``, ``apply``;
* any other :class:`~simledger.domain.base.DomainEvent`: ``CanMutateAggregate.mutate``'s
  checks and updates on the attributes behind ``BaseAggregate``'s properties.

Each of those ends as the domain's own ``mutate`` ends (the aggregate's chain moves on to
the event). An event class that overrides ``mutate`` in any other way takes its own
``mutate``, so the result is always what ``project_aggregate`` gives (tests/test_batch_load.py
and tests/test_fast_replay.py compare them).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from eventsourcing.domain import (
    BaseAggregate,
    CanMutateProtocol,
    DomainEventProtocol,
    OriginatorIDError,
    OriginatorVersionError,
)
from eventsourcing.utils import resolve_topic

from simledger.adapters.store.mapper import upcast
from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate, Snapshot

Step = Callable[[Any, Any], Any]
"""Fold one event into an aggregate (or ``None`` before the first): the new aggregate."""


def fast_project(aggregate: Any, events: Iterable[DomainEventProtocol[Any]]) -> Any:
    """``project_aggregate(aggregate, events)``, the fold ``Repository.get`` uses, made
    cheaper; a drop-in ``projector_func`` for ``Repository.get``."""
    steps = _steps
    for event in events:
        step = steps.get(type(event))
        if step is None:
            step = _step_for(event)
        aggregate = step(event, aggregate)
    return aggregate


def fold_one(event: Any, aggregate: Any) -> Any:
    """``fast_project(aggregate, (event,))`` for one event just triggered (no loop)."""
    step = _steps.get(type(event)) or _step_for(event)
    return step(event, aggregate)


_steps: dict[type[Any], Step] = {}
"""How each event class seen so far is folded (one entry per class: bounded)."""


def _step_for(event: Any) -> Step:
    """The step for ``event``'s class, checked against eventsourcing's protocol once."""
    if not isinstance(event, CanMutateProtocol):
        raise TypeError(f"not a mutating domain event: {event!r}")
    cls = type(event)
    mutate = getattr(cls, "mutate", None)
    step: Step
    if mutate is Snapshot.mutate:
        step = _restore
    elif mutate is CreatedEvent.mutate:
        step = _create
    elif mutate is DomainEvent.mutate:
        step = _mutate
    else:
        step = _own_mutate
    _steps[cls] = step
    return step


def _own_mutate(event: Any, aggregate: Any) -> Any:
    return event.mutate(aggregate)


def _mutate(event: Any, aggregate: Any) -> Any:
    """``DomainEvent.mutate`` on the attributes behind the properties (which our
    aggregates do not override): the same checks, errors and order."""
    assert aggregate is not None
    if event.originator_id != aggregate._id:
        raise OriginatorIDError(event.originator_id, aggregate._id)
    next_version = aggregate._version + 1
    if event.originator_version != next_version:
        raise OriginatorVersionError(event.originator_version, next_version)
    event.apply(aggregate)
    aggregate._version = event.originator_version
    aggregate._modified_on = event.timestamp
    aggregate._chain = event.chain
    return aggregate


def _create(event: Any, aggregate: Any) -> Any:
    """``CreatedEvent.mutate`` without matching the event's fields to the ``__init__``
    signatures: for our aggregates, whose ``__init__`` takes nothing."""
    cls = _plainly_made(event.originator_topic)
    if cls is None:
        return event.mutate(aggregate)
    assert aggregate is None
    created = object.__new__(cls)
    created.__base_init__(event.originator_id, event.originator_version, event.timestamp)
    created.__init__()
    event.apply(created)
    created._chain = event.chain
    return created


@functools.cache
def _plainly_made(topic: str) -> type[Any] | None:
    """The aggregate class of ``topic`` if it is one of ours whose ``__init__`` takes only
    ``self`` and whose ``__base_init__`` is eventsourcing's, else None."""
    cls = resolve_topic(topic)
    if not (isinstance(cls, type) and issubclass(cls, LedgerAggregate)):
        return None
    params = list(inspect.signature(cls.__init__).parameters.values())
    plain = len(params) == 1 and cls.__base_init__ is BaseAggregate.__base_init__
    return cls if plain else None


def _restore(snapshot: Any, _: None) -> Any:
    """``Snapshot.mutate``: a copy of the state upcast to the class's version, the enum
    attributes typed back, id, version, no pending events, an object made without
    ``__init__``."""
    restorer = _restorer(snapshot.topic)
    state = dict(snapshot.state)
    upcast(restorer.cls, restorer.class_version, state)
    for name, members, enum in restorer.enums:
        value = state.get(name)
        if value is not None:
            member = members.get(value)
            state[name] = enum(value) if member is None else member
    state["_id"] = snapshot.originator_id
    state["_version"] = snapshot.originator_version
    state["_pending_events"] = []
    aggregate = object.__new__(restorer.cls)
    object.__setattr__(aggregate, "__dict__", state)
    return aggregate


@dataclass(frozen=True)
class _Restorer:
    cls: type[Any]
    class_version: int
    enums: tuple[tuple[str, dict[Any, Enum], type[Enum]], ...]
    """(attribute, value -> member, enum) for each of ``cls.snapshot_enums``; a value not
    in the map goes through the enum's own lookup (aliases, ``_missing_``, its error)."""


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
