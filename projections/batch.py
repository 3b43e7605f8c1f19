"""Folding one batch of domain events into the three views: a pure function.

A store runs a batch in four steps: :func:`keys_of` says which rows the batch touches;
the store loads those rows (:class:`Touched`); :func:`fold` turns rows and events into
:class:`Changes`; the store writes the changes and the batch's tracking position in one
transaction. Nothing here does I/O, and ``fold`` never changes the rows it is given.

Events are dispatched on their class: each view module (:mod:`.sim_list`,
:mod:`.shared_groups`, :mod:`.pending_activity`) maps event classes to handlers, listed here
in :data:`VIEW_HANDLERS`, and the most specific class in an event's MRO wins (so
``Sim.Event`` catches every SIM event that has no handler of its own, and
``Sim.StatusChanged`` every lifecycle move).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simledger.domain.package import Package
from simledger.domain.regular_group import RegularGroup
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.projections import pending_activity, shared_groups, sim_list, sim_list_more
from simledger.projections.batch_state import (
    BatchFold,
    Changes,
    CountKey,
    Handler,
    Keys,
    Touched,
)

__all__ = ["VIEW_HANDLERS", "Changes", "CountKey", "Keys", "Touched", "fold", "keys_of"]

VIEW_HANDLERS: tuple[Mapping[type, Handler], ...] = (
    pending_activity.HANDLERS,
    shared_groups.HANDLERS,
    sim_list.HANDLERS,
    sim_list_more.HANDLERS,
)
"""Every view's handlers, in the order they see an event: each view that handles an event
folds it."""

_RESOLVED: dict[type, tuple[Handler, ...]] = {}


def handlers_for(event_class: type) -> tuple[Handler, ...]:
    found = _RESOLVED.get(event_class)
    if found is None:
        chosen: list[Handler] = []
        for table in VIEW_HANDLERS:
            for klass in event_class.__mro__:
                handler = table.get(klass)
                if handler is not None:
                    chosen.append(handler)
                    break
        found = _RESOLVED[event_class] = tuple(chosen)
    return found


def keys_of(events: Iterable[Any]) -> Keys:
    """Which stored rows folding ``events`` needs."""
    keys = Keys()
    for event in events:
        if isinstance(event, Sim.Event):
            keys.iccids.add(event.originator_id)
            if isinstance(event, Sim.PackageShared):
                keys.group_ids.add(event.group_id)
            elif (
                isinstance(event, (Sim.Paused, Sim.Resumed, Sim.OperationRefused))
                and event.operation_id is not None
            ):
                keys.operation_ids.add(event.operation_id)
        elif isinstance(event, Package.Event):
            if not isinstance(event, Package.Created):
                keys.copy_ids.add(event.originator_id)
        elif isinstance(event, SharedGroup.Event):
            keys.group_ids.add(event.originator_id)
        elif isinstance(event, RegularGroup.MembersChanged):
            keys.iccids.update(event.iccids)
    return keys


def fold(events: Sequence[Any], touched: Touched) -> Changes:
    """The changes ``events`` (in notification order) make to the ``touched`` rows."""
    state = BatchFold(touched)
    for event in events:
        for handler in handlers_for(type(event)):
            handler(state, event)
    return state.changes()
