"""Events recorded through ``LedgerAggregate.event_shortcut`` set to the store's
:data:`~simledger.adapters.store.fast_events.FAST_EVENTS` (built without their dataclass
``__init__``) must equal, field by field and in the same order, what ``__init__`` builds
from the same values; and what it cannot build takes eventsourcing's path and errors."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from helpers import active_sim_aggregate, received_sim_aggregate

from simledger.adapters.store.fast_events import FAST_EVENTS
from simledger.domain.base import LedgerAggregate
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind


def rebuilt(event: Any) -> Any:
    return type(event)(**vars(event))


def spied(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The fast way in effect from now on; what it answers for each event, in order."""
    answers: list[bool] = []

    class Spy:
        def trigger(self, aggregate: Any, event_class: type[Any], fields: dict[str, Any]) -> bool:
            answers.append(FAST_EVENTS.trigger(aggregate, event_class, fields))
            return answers[-1]

        def create(
            self, cls: type[Any], event_class: type[Any], id: str, fields: dict[str, Any]
        ) -> Any:
            created = FAST_EVENTS.create(cls, event_class, id, fields)
            answers.append(created is not None)
            return created

    monkeypatch.setattr(LedgerAggregate, "event_shortcut", Spy())
    return answers


NOW = datetime.now(UTC)
OP = str(uuid.uuid4())


def _commands(sim: Sim, now: datetime = NOW, op: str = OP) -> list[Any]:
    sim.request_operation(OperationKind.PAUSE, op, now, now + timedelta(hours=1))
    sim.confirm_operation(op, ok=True, reason=None)
    sim.set_labels(["north", "fleet"])
    sim.set_note(None)
    return list(sim.collect_events())


def test_triggered_events_equal_those_their_init_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = active_sim_aggregate(1)
    taken = spied(monkeypatch)
    events = _commands(sim)
    assert len(events) == 4 and taken == [True] * 4  # the fast path was taken
    for event in events:
        again = rebuilt(event)
        assert list(vars(again).items()) == list(vars(event).items())
        assert again == event and event.chain  # sealed


def test_the_fast_trigger_and_eventsourcing_s_give_the_same_aggregate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = active_sim_aggregate(1)
    fast.collect_events()
    plain = copy.deepcopy(fast)
    monkeypatch.setattr(LedgerAggregate, "event_shortcut", FAST_EVENTS)
    fast_events = _commands(fast)
    monkeypatch.setattr(LedgerAggregate, "event_shortcut", None)
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


def test_a_created_aggregate_equals_the_one_eventsourcing_creates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = spied(monkeypatch)
    fast = received_sim_aggregate(2)
    assert taken == [True]  # the fast path was taken
    monkeypatch.setattr(LedgerAggregate, "event_shortcut", None)
    plain = received_sim_aggregate(2)
    [fast_event] = cast(list[Any], fast.collect_events())
    [plain_event] = cast(list[Any], plain.collect_events())
    assert list(vars(fast_event)) == list(vars(plain_event))
    assert fast_event == type(plain_event)(
        **{**vars(plain_event), "timestamp": fast_event.timestamp, "chain": fast_event.chain}
    )
    assert fast_event.chain and rebuilt(fast_event) == fast_event
    skip = ("_created_on", "_modified_on", "_chain", "_pending_events")
    assert list(vars(fast)) == list(vars(plain))
    assert {k: v for k, v in vars(fast).items() if k not in skip} == {
        k: v for k, v in vars(plain).items() if k not in skip
    }


def test_arguments_that_do_not_fit_get_eventsourcing_s_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = active_sim_aggregate(1)
    taken = spied(monkeypatch)
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(Sim.PauseRequested, operation_id="x", kind="pause")  # no deadline
    with pytest.raises(TypeError, match="Can't construct event"):
        sim.trigger_event(
            Sim.PauseRequested, operation_id="x", kind="pause", deadline=None, colour="red"
        )
    assert taken == [False, False]
    assert sim.collect_events() == []
