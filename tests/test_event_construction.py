"""Events triggered by commands are built without their dataclass ``__init__``
(``LedgerAggregate.trigger_event``): they must equal, field by field and in the same order,
what ``__init__`` builds from the same values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import new_ledger, ready_sim

from simledger.domain.base import _init_plan
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind


def rebuilt(event: Any) -> Any:
    return type(event)(**vars(event))


def test_triggered_events_equal_those_their_init_builds() -> None:
    ledger = new_ledger()[0]
    sim: Sim = ledger.unit_of_work.sim(ready_sim(ledger, 1))
    now = datetime.now(UTC)
    op = str(uuid.uuid4())
    sim.request_operation(OperationKind.PAUSE, op, now, now + timedelta(hours=1))
    sim.confirm_operation(op, ok=True, reason=None)
    sim.set_labels(["north", "fleet"])
    sim.set_note(None)
    events: list[Any] = list(sim._pending_events)
    assert len(events) == 4
    for event in events:
        assert _init_plan(type(event)) is not None  # the fast path was taken
        again = rebuilt(event)
        assert list(vars(again).items()) == list(vars(event).items())
        assert again == event and event.chain  # sealed


def test_arguments_that_do_not_fit_get_eventsourcing_s_error() -> None:
    ledger = new_ledger()[0]
    sim: Sim = ledger.unit_of_work.sim(ready_sim(ledger, 1))
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(Sim.PauseRequested, operation_id="x", kind="pause")  # no deadline
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(
            Sim.PauseRequested, operation_id="x", kind="pause", deadline=None, colour="red"
        )
    assert sim._pending_events == []


def test_an_event_out_of_sequence_or_of_another_aggregate_is_refused_unapplied() -> None:
    from eventsourcing.domain import OriginatorIDError, OriginatorVersionError

    ledger = new_ledger()[0]
    sim: Sim = ledger.unit_of_work.sim(ready_sim(ledger, 1))
    other: Sim = ledger.unit_of_work.sim(ready_sim(ledger, 2))
    before = dict(vars(sim))
    now = datetime.now(UTC)
    other.request_operation(OperationKind.PAUSE, "op", now, now + timedelta(hours=1))
    foreign: Any = other._pending_events[-1]
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
    assert (sim.version, sim.modified_on, sim._chain) == (
        fitting.originator_version,
        fitting.timestamp,
        fitting.chain,
    )
    assert sim.in_flight is not None
