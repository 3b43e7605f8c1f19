"""Triggering events without eventsourcing's generic per-event work, for bulk commands.

eventsourcing's ``BaseAggregate.trigger_event`` copies the arguments, checks for an
explicit topic, and calls the event class, whose frozen dataclass ``__init__`` sets each
field through ``object.__setattr__``. A bulk command triggers one event per SIM, so
:func:`trigger_fast` does what is the same for every event of a class once per class: it
builds the event's ``__dict__`` as that ``__init__`` would (the same fields, in the same
order, defaults filled in), applies it and appends it to the pending events, as
``trigger_event`` does.

The domain does not import this: ``LedgerAggregate.event_trigger`` is the port, which the
application sets to :func:`trigger_fast`; unset, events are triggered eventsourcing's way.
Arguments that do not fit the fields, and classes this cannot build (see
:func:`_init_plan`), are declined, so they take eventsourcing's path and its errors.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from simledger.domain.base import DomainEvent


def trigger_fast(aggregate: Any, event_class: type[Any], kwargs: dict[str, Any]) -> bool:
    """Trigger ``event_class`` on ``aggregate`` with ``kwargs`` (the command's own dict,
    completed here) as ``trigger_event`` would; False, nothing done, when it cannot be
    done this way."""
    plan = _plans[event_class] if event_class in _plans else _init_plan(event_class)
    if plan is None or not (plan.required <= kwargs.keys() <= plan.given):
        return False
    kwargs["originator_id"] = aggregate._id
    kwargs["originator_version"] = aggregate._version + 1
    if kwargs.get("timestamp") is None:
        kwargs["timestamp"] = event_class.create_timestamp()
    defaults = plan.defaults
    event = object.__new__(event_class)
    object.__setattr__(
        event,
        "__dict__",
        {name: kwargs[name] if name in kwargs else defaults[name] for name in plan.names},
    )
    event.mutate(aggregate)
    aggregate._pending_events.append(event)
    return True


@dataclass(frozen=True)
class _InitPlan:
    names: tuple[str, ...]
    """Every field, in the dataclass's order (its ``__init__`` sets them in that order)."""
    required: frozenset[str]
    """The fields a command must give (no default; the id, version and timestamp are
    filled in here)."""
    given: frozenset[str]
    """The fields a command may give."""
    defaults: dict[str, Any]


_INHERENT = frozenset({"originator_id", "originator_version", "timestamp"})
_plans: dict[type[Any], _InitPlan | None] = {}
"""The plan of each event class triggered so far (one entry per class: bounded)."""


def _init_plan(cls: type[Any]) -> _InitPlan | None:
    """How to build an event of ``cls`` without its ``__init__``, or None when that could
    differ: not one of the domain's frozen dataclass events, a ``__post_init__``, a field
    set by a factory or left out of ``__init__``, slots, an ``__init__`` not taking
    exactly the fields (one written by hand). Remembered in ``_plans``."""
    plan = _plans[cls] = _plan_of(cls)
    return plan


def _plan_of(cls: type[Any]) -> _InitPlan | None:
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
    return _InitPlan(
        names=names,
        required=frozenset(names) - defaults.keys() - _INHERENT,
        given=frozenset(names) - _INHERENT,
        defaults=defaults,
    )
