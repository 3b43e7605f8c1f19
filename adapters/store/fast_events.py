"""Recording events without eventsourcing's generic per-event work, for bulk commands.

eventsourcing's ``BaseAggregate.trigger_event`` and ``_create`` copy the arguments, check
for an explicit topic, and call the event class, whose frozen dataclass ``__init__`` sets
each field through ``object.__setattr__``; a first event then matches its fields to two
``__init__`` signatures. A bulk command records one event per SIM, so :class:`FastEvents`
does what is the same for every event of a class once per class: it builds the event's
``__dict__`` as that ``__init__`` would (the same fields, in the same order, defaults filled
in), applies it (a first event as :func:`~simledger.adapters.store.fast_replay.fast_project`
does) and appends it to the pending events, as eventsourcing does.

The domain does not import this: it is an
:class:`~simledger.domain.base.EventShortcut`, which the application puts in
``LedgerAggregate.event_shortcut`` (:data:`FAST_EVENTS`); unset, events are recorded
eventsourcing's way. Arguments that do not fit the fields, and classes this cannot build
(see :func:`_plan_of`), are declined, so they take eventsourcing's path and its errors.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from eventsourcing.utils import get_topic

from simledger.adapters.store.fast_replay import fold_one
from simledger.domain.base import DomainEvent


class FastEvents:
    """The :class:`~simledger.domain.base.EventShortcut` of this module."""

    @staticmethod
    def trigger(aggregate: Any, event_class: type[Any], fields: dict[str, Any]) -> bool:
        """Trigger ``event_class`` on ``aggregate`` with ``fields`` (the command's own
        dict, completed here) as ``trigger_event`` would; False, nothing done, when it
        cannot be done this way."""
        event = _built(
            event_class,
            fields,
            originator_id=aggregate._id,
            originator_version=aggregate._version + 1,
        )
        if event is None:
            return False
        fold_one(event, aggregate)  # the event's mutate, decided once per class
        aggregate._pending_events.append(event)
        return True

    @staticmethod
    def create(
        aggregate_class: type[Any], event_class: type[Any], id: str, fields: dict[str, Any]
    ) -> Any | None:
        """The new aggregate, as ``aggregate_class._create(event_class, id=id, **fields)``
        makes it, or None when it cannot be made this way."""
        if getattr(aggregate_class, "TOPIC", None) or not isinstance(id, str):
            return None  # eventsourcing checks those
        event = _built(
            event_class,
            fields,
            originator_topic=_topic(aggregate_class),
            originator_id=id,
            originator_version=aggregate_class.INITIAL_VERSION,
        )
        if event is None:
            return None
        aggregate = fold_one(event, None)
        aggregate._pending_events.append(event)
        return aggregate


FAST_EVENTS = FastEvents()


def _built(event_class: type[Any], fields: dict[str, Any], **inherent: Any) -> Any | None:
    """An event of ``event_class`` from ``fields`` and the ``inherent`` ones (the
    timestamp made if not given), or None (``fields`` untouched) when it cannot be built
    without its ``__init__`` or ``fields`` do not fit."""
    plan = _plans[event_class] if event_class in _plans else _plan_for(event_class)
    if plan is None or not (plan.required <= fields.keys() <= plan.given):
        return None
    if inherent.keys() != plan.inherent:
        return None
    fields.update(inherent)
    if fields.get("timestamp") is None:
        fields["timestamp"] = event_class.create_timestamp()
    defaults = plan.defaults
    event = object.__new__(event_class)
    object.__setattr__(
        event,
        "__dict__",
        {name: fields[name] if name in fields else defaults[name] for name in plan.names},
    )
    return event


_topics: dict[type[Any], str] = {}


def _topic(cls: type[Any]) -> str:
    topic = _topics.get(cls)
    if topic is None:
        topic = _topics[cls] = get_topic(cls)
    return topic


@dataclass(frozen=True)
class _Plan:
    names: tuple[str, ...]
    """Every field, in the dataclass's order (its ``__init__`` sets them in that order)."""
    inherent: frozenset[str]
    """The fields set here, not by the command: id, version and, of a first event, the
    aggregate's topic."""
    required: frozenset[str]
    """The fields a command must give (no default, not inherent; the timestamp is made
    here when not given)."""
    given: frozenset[str]
    """The fields a command may give."""
    defaults: dict[str, Any]


_INHERENT = frozenset({"originator_id", "originator_version", "originator_topic"})
_plans: dict[type[Any], _Plan | None] = {}
"""The plan of each event class recorded so far (one entry per class: bounded)."""


def _plan_for(cls: type[Any]) -> _Plan | None:
    plan = _plans[cls] = _plan_of(cls)
    return plan


def _plan_of(cls: type[Any]) -> _Plan | None:
    """How to build an event of ``cls`` without its ``__init__``, or None when that could
    differ: not one of the domain's frozen dataclass events, a ``__post_init__``, a field
    set by a factory or left out of ``__init__``, slots, an ``__init__`` not taking
    exactly the fields (one written by hand)."""
    if not (
        issubclass(cls, DomainEvent)
        and dataclasses.is_dataclass(cls)
        and not hasattr(cls, "__post_init__")
        and "__slots__" not in vars(cls)
        and cls.__dataclass_params__.init  # type: ignore[attr-defined]
    ):
        return None
    fields = dataclasses.fields(cls)
    takes = list(inspect.signature(cls.__init__).parameters)[1:]
    if sorted(takes) != sorted(f.name for f in fields) or not all(
        f.init and f.default_factory is dataclasses.MISSING for f in fields
    ):
        return None
    names = tuple(f.name for f in fields)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    inherent = _INHERENT & set(names)
    return _Plan(
        names=names,
        inherent=frozenset(inherent),
        required=frozenset(names) - defaults.keys() - inherent - {"timestamp"},
        given=frozenset(names) - inherent,
        defaults=defaults,
    )
