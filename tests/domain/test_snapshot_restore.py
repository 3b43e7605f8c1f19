"""``Snapshot.mutate`` (domain/base.py) rebuilds an aggregate as eventsourcing's
``CanSnapshotAggregate.mutate`` does, plus its enum attributes typed back; and so does the
bulk loader's ``fast_project`` (adapters/store/fast_replay.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import pytest
from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.utils import get_topic
from helpers import active_sim_aggregate

from simledger.adapters.store.fast_replay import fast_project
from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate, Snapshot
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind, SimStatus, SimType


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Versioned(LedgerAggregate):
    """A toy aggregate at class version 3 whose ``size`` was added in v2, ``colour`` in v3."""

    class_version = 3
    snapshot_enums: ClassVar[dict[str, Any]] = {"colour": Colour}

    class Event(DomainEvent):
        pass

    class Made(CreatedEvent, Event):
        name: str

        def apply(self, aggregate: Versioned) -> None:
            aggregate.name = self.name

    def __init__(self) -> None:
        self.name = ""
        self.size = 1
        self.colour: Colour | None = Colour.BLUE

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["size"] = 0

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["colour"] = "red"


Restore = Callable[[Snapshot], Any]
RESTORES = pytest.mark.parametrize(
    "restore",
    [lambda snapshot: snapshot.mutate(None), lambda snapshot: fast_project(None, [snapshot])],
    ids=["Snapshot.mutate", "fast_project"],
)


def _snapshot(aggregate_id: str, topic: str, state: dict[str, Any]) -> Snapshot:
    return Snapshot(
        originator_id=aggregate_id,
        originator_version=4,
        timestamp=datetime.now(UTC),
        topic=topic,
        state=state,
    )


@RESTORES
def test_a_sim_snapshot_rebuilds_the_sim_with_its_enums(restore: Restore) -> None:
    sim = active_sim_aggregate(1)
    now = datetime.now(UTC)
    sim.request_operation(OperationKind.PAUSE, "op", now, now)
    sim.confirm_operation("op", ok=True, reason=None)
    taken = Snapshot.take(sim)
    # As the store gives it back: enums as their plain values.
    stored_state = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in taken.state.items()}
    snapshot = _snapshot(sim.id, taken.topic, stored_state)
    rebuilt = restore(snapshot)
    plain = CanSnapshotAggregate.mutate(snapshot, None)  # eventsourcing's, enums left as str
    assert type(rebuilt) is Sim and rebuilt.id == sim.id and rebuilt.version == 4
    assert vars(rebuilt).keys() == vars(plain).keys()
    for name in ("status", "sim_type", "suspended_reason"):
        assert getattr(rebuilt, name) is getattr(sim, name)  # typed back: same member
    assert rebuilt.status is SimStatus.SUSPENDED and rebuilt.sim_type is SimType(sim.sim_type)
    assert Snapshot.take(rebuilt).state == Snapshot.take(sim).state  # every attribute
    assert rebuilt.collect_events() == []
    assert rebuilt.__dict__ is not snapshot.state and snapshot.state == stored_state


@RESTORES
def test_an_older_snapshot_is_upcast_and_typed(restore: Restore) -> None:
    topic = get_topic(Versioned)
    first = _snapshot("a", topic, {"name": "one"})  # written at class version 1
    rebuilt = restore(first)
    assert (rebuilt.name, rebuilt.size, rebuilt.colour) == ("one", 0, Colour.RED)
    assert rebuilt.colour is Colour.RED
    second = _snapshot("b", topic, {"name": "two", "size": 5, "class_version": 2})
    assert (restore(second).size, restore(second).colour) == (5, Colour.RED)
    third = _snapshot("c", topic, {"name": "x", "size": 5, "colour": None, "class_version": 3})
    assert restore(third).colour is None
    assert third.state == {"name": "x", "size": 5, "colour": None, "class_version": 3}


@RESTORES
def test_an_unknown_enum_value_is_refused(restore: Restore) -> None:
    bad = _snapshot("d", get_topic(Versioned), {"name": "x", "colour": "green", "class_version": 3})
    with pytest.raises(ValueError, match="green"):
        restore(bad)
