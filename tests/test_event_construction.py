"""Events triggered through ``LedgerAggregate.event_trigger`` set to the store's
:func:`~simledger.adapters.store.fast_events.trigger_fast` (built without their dataclass
``__init__``) must equal, field by field and in the same order, what ``__init__`` builds
from the same values; and what it cannot build takes eventsourcing's path and errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import new_ledger, ready_sim

from simledger.adapters.store.fast_events import trigger_fast
from simledger.domain.base import LedgerAggregate
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind


def rebuilt(event: Any) -> Any:
    return type(event)(**vars(event))


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """The fast trigger in effect; what it answered for each event, in order."""
    answers: list[bool] = []

    def spy(aggregate: Any, event_class: type[Any], kwargs: dict[str, Any]) -> bool:
        answers.append(trigger_fast(aggregate, event_class, kwargs))
        return answers[-1]

    monkeypatch.setattr(LedgerAggregate, "event_trigger", spy)
    yield answers


NOW = datetime.now(UTC)
OP = str(uuid.uuid4())


def _commands(sim: Sim, now: datetime = NOW, op: str = OP) -> list[Any]:
    sim.request_operation(OperationKind.PAUSE, op, now, now + timedelta(hours=1))
    sim.confirm_operation(op, ok=True, reason=None)
    sim.set_labels(["north", "fleet"])
    sim.set_note(None)
    return list(sim._pending_events)


def test_triggered_events_equal_those_their_init_builds(taken: list[bool]) -> None:
    ledger = new_ledger()[0]
    sim: Sim = ledger._sim(ready_sim(ledger, 1))
    taken.clear()
    events = _commands(sim)
    assert len(events) == 4 and taken == [True] * 4  # the fast path was taken
    for event in events:
        again = rebuilt(event)
        assert list(vars(again).items()) == list(vars(event).items())
        assert again == event and event.chain  # sealed


def test_the_fast_trigger_and_eventsourcing_s_give_the_same_aggregate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = new_ledger()[0]
    key = ready_sim(ledger, 1)
    fast, plain = ledger._sim(key), ledger._sim(key)
    monkeypatch.setattr(LedgerAggregate, "event_trigger", trigger_fast)
    fast_events = _commands(fast)
    monkeypatch.setattr(LedgerAggregate, "event_trigger", None)
    plain_events = _commands(plain)
    assert [type(e) for e in fast_events] == [type(e) for e in plain_events]
    for one, other in zip(fast_events, plain_events, strict=True):
        assert vars(one).keys() == vars(other).keys()
        same = {k: v for k, v in vars(one).items() if k not in ("timestamp", "chain")}
        assert same == {k: v for k, v in vars(other).items() if k not in ("timestamp", "chain")}
    skip = ("_modified_on", "_chain", "_pending_events")
    assert {k: v for k, v in vars(fast).items() if k not in skip} == {
        k: v for k, v in vars(plain).items() if k not in skip
    }


def test_arguments_that_do_not_fit_get_eventsourcing_s_error(taken: list[bool]) -> None:
    ledger = new_ledger()[0]
    sim: Sim = ledger._sim(ready_sim(ledger, 1))
    taken.clear()
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(Sim.PauseRequested, operation_id="x", kind="pause")  # no deadline
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(
            Sim.PauseRequested, operation_id="x", kind="pause", deadline=None, colour="red"
        )
    assert taken == [False, False]
    assert sim._pending_events == []


def test_an_event_out_of_sequence_or_of_another_aggregate_is_refused_unapplied() -> None:
    from eventsourcing.domain import OriginatorIDError, OriginatorVersionError

    ledger = new_ledger()[0]
    sim: Sim = ledger._sim(ready_sim(ledger, 1))
    other: Sim = ledger._sim(ready_sim(ledger, 2))
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
