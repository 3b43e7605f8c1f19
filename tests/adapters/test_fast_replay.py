"""The bulk loader's fold (adapters/store/fast_replay.py ``fast_project``) gives what
eventsourcing's ``project_aggregate`` gives with the domain's own ``mutate`` methods: for
every kind of aggregate and event, with the same errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.domain import OriginatorIDError, OriginatorVersionError
from helpers import COMPANY, MSISDN, iccid, make_package, new_ledger, ready_sim, received_sim

from simledger.adapters.store.fast_replay import fast_project
from simledger.domain.base import Snapshot
from simledger.domain.types import SimType


def test_every_stored_history_replays_to_the_same_aggregate() -> None:
    ledger, clock = new_ledger()
    renewing = ready_sim(ledger, 1, data_mb=100, auto_renew=True)
    ledger.record_usage(renewing, 250)  # two renewals, then drawn from the third period
    drained = ready_sim(ledger, 2, data_mb=100, sim_type=SimType.PREPAID)
    ledger.record_usage(drained, 150)  # depleted by data
    ledger.top_up(drained, 50)
    members = [received_sim(ledger, n, checked=True) for n in (3, 4)]
    for key in members:
        ledger.assign_line(key, MSISDN)
        ledger.assign_to_company(key, COMPANY)
    group = ledger.create_shared_group("fleet", members, make_package(ledger, data_mb=10))
    for key in members:
        ledger.activate(key)
    ledger.record_usage(members[0], 4)
    ledger.record_usage(members[1], 20)  # the pool depleted
    ready_sim(ledger, 5, validity_days=1)
    clock.advance(timedelta(days=2))
    ledger.expire_packages()
    ids = {
        str(n.originator_id) for n in ledger.recorder.select_notifications(start=None, limit=10**9)
    }
    assert {renewing, drained, str(group), iccid(5)} <= ids
    for aggregate_id in ids:
        events = list(ledger.events.get(aggregate_id))
        fast, plain = fast_project(None, events), project_aggregate(None, events)
        assert type(fast) is type(plain)
        assert vars(fast) == vars(plain), aggregate_id
        assert list(vars(fast)) == list(vars(plain)), aggregate_id  # the same order too
        # From a snapshot and the events after it, likewise.
        middle = len(events) // 2
        if middle:
            snapshot = Snapshot.take(project_aggregate(None, events[:middle]))
            fast = fast_project(None, [snapshot, *events[middle:]])
            plain = project_aggregate(None, [snapshot, *events[middle:]])
            assert vars(fast) == vars(plain), aggregate_id


def test_an_event_out_of_sequence_or_of_another_aggregate_is_refused_unapplied() -> None:
    ledger = new_ledger()[0]
    one, other = ready_sim(ledger, 1), ready_sim(ledger, 2)
    history: list[Any] = list(ledger.events.get(one))
    foreign: Any = list(ledger.events.get(other))[-1]
    with pytest.raises(OriginatorIDError):
        fast_project(None, [*history, foreign])
    skipped = type(foreign)(
        **{**vars(foreign), "originator_id": one, "originator_version": len(history) + 2}
    )
    with pytest.raises(OriginatorVersionError):
        fast_project(None, [*history, skipped])
    before = fast_project(None, history)
    state = dict(vars(before))
    with pytest.raises(OriginatorVersionError):
        fast_project(before, [skipped])
    assert vars(before) == state


def test_projection_refuses_objects_that_are_not_mutating_events() -> None:
    with pytest.raises(TypeError, match="not a mutating domain event"):
        fast_project(None, [object()])  # type: ignore[list-item]
