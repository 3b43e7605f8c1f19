"""Events triggered by commands (``LedgerAggregate.trigger_event``, eventsourcing's own way,
no event shortcut) equal, field by field and in the same order, what ``__init__`` builds
from the same values, sealed into the chain. On a :class:`Sim` alone, no store. The
store's faster construction is held to the same in tests/adapters/test_fast_events.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import active_sim_aggregate

from simledger.domain.base import LedgerAggregate
from simledger.domain.chain import seal
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind


def rebuilt(event: Any) -> Any:
    return type(event)(**vars(event))


def test_triggered_events_equal_those_their_init_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = active_sim_aggregate(1)
    now = datetime.now(UTC)
    op = str(uuid.uuid4())
    kinds = (Sim.PauseRequested, Sim.Paused, Sim.LabelsSet, Sim.NoteSet)
    monkeypatch.setattr(LedgerAggregate, "event_shortcut", None)
    sim.request_operation(OperationKind.PAUSE, op, now, now + timedelta(hours=1))
    sim.confirm_operation(op, ok=True, reason=None)
    sim.set_labels(["north", "fleet"])
    sim.set_note(None)
    events: list[Any] = list(sim.collect_events())
    assert [type(e) for e in events] == list(kinds)
    for event in events:
        again = rebuilt(event)
        assert list(vars(again).items()) == list(vars(event).items())
        assert again == event and event.chain  # sealed


def test_arguments_that_do_not_fit_get_eventsourcing_s_error() -> None:
    sim = active_sim_aggregate(1)
    version = sim.version
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(Sim.PauseRequested, operation_id="x", kind="pause")  # no deadline
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(
            Sim.PauseRequested, operation_id="x", kind="pause", deadline=None, colour="red"
        )
    assert sim.collect_events() == [] and sim.version == version


def test_an_event_out_of_sequence_or_of_another_aggregate_is_refused_unapplied() -> None:
    from eventsourcing.domain import OriginatorIDError, OriginatorVersionError

    sim, other = active_sim_aggregate(1), active_sim_aggregate(2)
    before = dict(vars(sim))
    now = datetime.now(UTC)
    other.request_operation(OperationKind.PAUSE, "op", now, now + timedelta(hours=1))
    foreign: Any = other.collect_events()[-1]
    with pytest.raises(OriginatorIDError):
        foreign.mutate(sim)
    skipped = type(foreign)(**{**vars(foreign), "originator_id": sim.id})
    object.__setattr__(skipped, "originator_version", sim.version + 2)
    with pytest.raises(OriginatorVersionError):
        skipped.mutate(sim)
    assert vars(sim) == before
    fitting = type(foreign)(**{**vars(foreign), "originator_id": sim.id})
    object.__setattr__(fitting, "originator_version", sim.version + 1)
    assert fitting.mutate(sim) is sim
    assert (sim.version, sim.modified_on) == (fitting.originator_version, fitting.timestamp)
    assert sim.in_flight is not None
    sim.set_note("next")  # chained to the event just applied
    [after] = sim.collect_events()
    assert after.chain == seal(after, fitting.chain)
