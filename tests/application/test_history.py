"""History and time travel (R-ES3): ``history(iccid)`` and ``sim_as_of(iccid, at=|version=)``.

A SIM's history holds its own events and those of its package copy and of its shared group
that concern it, oldest first. ``sim_as_of`` rebuilds the SIM, with its copy or pool, as it
was at one of its versions or at a moment; asking wrongly raises a typed error with a rule.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import project_aggregate
from helpers import (
    COMPANY,
    MSISDN,
    event_count,
    iccid,
    lined_sims,
    make_package,
    ready_sim,
    received_sim,
    refused,
)

from simledger import (
    HistoryEntry,
    InvalidIccid,
    InvalidInput,
    SimLedger,
    SimNotYetReceived,
    SimStatus,
    SimView,
    SuspendReason,
    UnknownSim,
)
from simledger.application.ledger import SIM_SNAPSHOT_INTERVAL
from simledger.domain.base import DomainEvent
from simledger.domain.sim import Sim

STATE_FIELDS = (
    "status",
    "plan",
    "package_id",
    "copy_id",
    "group_id",
    "data_left_mb",
    "note",
    "labels",
    "msisdn",
    "company",
    "suspended_reason",
    "system_cause",
    "cause_cleared",
    "operation_in_flight",
    "version",
    "updated_at",
)
ENVELOPE = ("originator_id", "originator_version", "timestamp", "originator_topic")


def state(view: SimView) -> dict[str, Any]:
    return {name: getattr(view, name) for name in STATE_FIELDS}


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # the ledger on every store


def shared(entries: list[HistoryEntry], aggregate: str) -> list[tuple[str, int]]:
    return [(e.event, e.version) for e in entries if e.aggregate == aggregate]


def assert_oldest_first(entries: list[HistoryEntry]) -> None:
    times = [e.at for e in entries]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)


def assert_own_events_complete(ledger: SimLedger, key: str, entries: list[HistoryEntry]) -> None:
    """The SIM's own entries are exactly its events, every version once, in order."""
    own = [(e.event, e.version) for e in entries if e.aggregate == "Sim"]
    stored = [(type(e).__name__, e.originator_version) for e in ledger.events.get(key)]
    assert own == stored
    assert [v for _, v in own] == list(range(1, len(own) + 1))
    assert {e.aggregate_id for e in entries if e.aggregate == "Sim"} == {key}


# -------------------------------------------------------------------------- history


def test_history_holds_the_sim_and_its_package_copy_oldest_first(ledger: SimLedger) -> None:
    package = make_package(ledger, data_mb=100, name="100 MB")
    key = ready_sim(ledger, 1, package_id=package)
    other = ready_sim(ledger, 2, package_id=package)
    ledger.record_usage(key, 60, country="GB")
    ledger.record_usage(other, 10)
    ledger.record_usage(key, 60)  # 40 MB left: drawn, the copy is depleted, the SIM paused

    entries = ledger.history(key)

    assert_oldest_first(entries)
    assert_own_events_complete(ledger, key, entries)
    copy_id = str(ledger.sim(key).copy_id)
    assert {e.aggregate_id for e in entries} == {key, copy_id}  # no catalogue, no other copy
    assert shared(entries, "Package") == [
        ("Assigned", 1),
        ("UsageDrawn", 2),
        ("UsageDrawn", 3),
        ("Depleted", 4),
    ]
    package_entries = [e for e in entries if e.aggregate == "Package"]
    assigned, first, second, depleted = package_entries
    assert assigned.data["iccid"] == key
    assert assigned.data["source_id"] == str(package)
    assert assigned.data["data_mb"] == 100
    assert [(first.data["iccid"], first.data["mb"]), (second.data["iccid"], second.data["mb"])] == [
        (key, 60),
        (key, 40),
    ]
    assert depleted.data == {"cause": "data"}
    for entry in entries:
        assert not set(ENVELOPE) & set(entry.data)

    names = [(e.aggregate, e.event) for e in entries]
    # causes before effects: the copy before the SIM names it, the depletion before the pause
    assert names.index(("Package", "Assigned")) < names.index(("Sim", "PackageAssigned"))
    assert names.index(("Package", "Depleted")) < names.index(("Sim", "SuspendedBySystem"))
    usage = [e for e in entries if e.event == "UsageRecorded"]
    assert [(u.data["mb"], u.data["country"]) for u in usage] == [(60, "GB"), (60, None)]
    suspended = next(e for e in entries if e.event == "SuspendedBySystem")
    assert suspended.data["status"] == "suspended"
    assert suspended.data["cause"] == "depleted"


def test_history_holds_the_shared_group_events_that_concern_the_sim(ledger: SimLedger) -> None:
    a, b, c = lined_sims(ledger, 3, start=10)
    pool = make_package(ledger, data_mb=100, name="Shared 100 MB")
    group = ledger.create_shared_group("Pool", [a, b, c], pool)
    for key in (a, b, c):
        ledger.activate(key)
    ledger.record_usage(a, 30)  # group v2
    ledger.record_usage(b, 50)  # group v3
    ledger.record_usage(a, 40)  # group v4 draws the last 20, v5 Depleted
    ledger.remove_from_shared_group(group, a)  # v6, allowed once depleted (R-SG3)
    [d] = lined_sims(ledger, 1, start=20)
    ledger.add_to_shared_group(group, d)  # v7
    outsider = ready_sim(ledger, 30)
    ledger.record_usage(outsider, 5)

    history = {key: ledger.history(key) for key in (a, b, c, d, outsider)}

    assert shared(history[a], "SharedGroup") == [
        ("Created", 1),
        ("UsageDrawn", 2),
        ("UsageDrawn", 4),
        ("Depleted", 5),
        ("MemberRemoved", 6),
    ]
    assert shared(history[b], "SharedGroup") == [("Created", 1), ("UsageDrawn", 3), ("Depleted", 5)]
    assert shared(history[c], "SharedGroup") == [("Created", 1), ("Depleted", 5)]
    assert shared(history[d], "SharedGroup") == [("MemberAdded", 7)]
    assert shared(history[outsider], "SharedGroup") == []
    assert shared(history[a], "Package") == []  # a shared pool is not a copy (R-SG1)

    drawn_by_a = [e.data for e in history[a] if e.event == "UsageDrawn"]
    assert [(d["iccid"], d["mb"]) for d in drawn_by_a] == [(a, 30), (a, 20)]
    created = next(e for e in history[a] if e.event == "Created")
    assert created.aggregate_id == str(group)
    assert created.data["members"] == [a, b, c]
    assert created.data["package_id"] == str(pool)
    for key in (a, b, c, d):
        entries = history[key]
        assert_oldest_first(entries)
        assert_own_events_complete(ledger, key, entries)
    for key in (a, b, c):  # every member was paused by the system after the depletion
        names = [(e.aggregate, e.event) for e in history[key]]
        assert names.index(("SharedGroup", "Depleted")) < names.index(("Sim", "SuspendedBySystem"))
        assert names.index(("SharedGroup", "Created")) < names.index(("Sim", "PackageShared"))


def test_history_of_an_unknown_sim_is_refused(ledger: SimLedger) -> None:
    with pytest.raises(UnknownSim) as info:
        ledger.history(iccid(99))
    assert info.value.rule == "R-SIM1"


# --------------------------------------------------------------------- time travel


def latest_moment(ledger: SimLedger, key: str) -> datetime:
    """The time of the newest event that touched the SIM, read from its history."""
    return ledger.history(key)[-1].at


def test_sim_as_of_rebuilds_each_earlier_state_by_version_and_by_time(ledger: SimLedger) -> None:
    [key] = ledger.receive_sims([iccid(1)], operator="3UK", sim_type="prepaid")
    first_package = make_package(ledger, data_mb=100, name="100 MB")
    second_package = make_package(ledger, data_mb=500, name="500 MB")
    live: list[SimView] = [ledger.sim(key)]
    moments: list[datetime] = [latest_moment(ledger, key)]
    pause: list[UUID] = []
    resume: list[UUID] = []

    steps: list[Callable[[], Any]] = [
        lambda: ledger.complete_integration_check(key, ok=True),
        lambda: ledger.assign_line(key, MSISDN),
        lambda: ledger.assign_to_company(key, COMPANY),
        lambda: ledger.assign_package(key, first_package),
        lambda: ledger.activate(key),
        lambda: ledger.record_usage(key, 30),
        lambda: ledger.set_labels(key, ["truck"]),
        lambda: pause.append(ledger.pause([key]).operation_id),
        lambda: ledger.confirm(pause[0], key),
        lambda: ledger.record_usage(key, 20),  # late usage of a paused SIM still counts
        lambda: resume.append(ledger.resume([key]).operation_id),
        lambda: ledger.confirm(resume[0], key),
        lambda: ledger.record_usage(key, 80),  # 50 left: depleted, paused by the system
        lambda: ledger.assign_package(key, second_package),  # clears the system pause
        lambda: ledger.record_usage(key, 5),
        lambda: ledger.set_note(key, "moved to the second package"),
    ]
    for step in steps:
        step()
        live.append(ledger.sim(key))
        moments.append(latest_moment(ledger, key))
    count = event_count(ledger)

    # the states really differ along the way
    assert [v.status for v in live[:6]] == [
        SimStatus.PENDING,
        SimStatus.BLANK,
        SimStatus.BLANK,
        SimStatus.BLANK,
        SimStatus.ACTIVATION_READY,
        SimStatus.ACTIVE,
    ]
    assert [v.data_left_mb for v in live[4:7]] == [100, 100, 70]
    assert live[10].data_left_mb == 50
    assert live[13].status is SimStatus.SUSPENDED
    assert live[13].suspended_reason is SuspendReason.SYSTEM
    assert live[13].data_left_mb == 0
    assert live[14].copy_id != live[13].copy_id
    assert live[-1].data_left_mb == 495

    for view, moment in zip(live, moments, strict=True):
        assert state(ledger.sim_as_of(key, version=view.version)) == state(view)
        assert state(ledger.sim_as_of(key, at=moment)) == state(view)
    # between two commands the SIM is as the earlier one left it
    times = sorted({e.at for e in ledger.history(key)})
    for n in range(len(live) - 1):
        next_first = min(t for t in times if t > moments[n])  # the next command's first event
        between = moments[n] + (next_first - moments[n]) / 2
        assert state(ledger.sim_as_of(key, at=between)) == state(live[n])
    # every version, also those in the middle of a command, can be rebuilt
    versions = [ledger.sim_as_of(key, version=v).version for v in range(1, live[-1].version + 1)]
    assert versions == list(range(1, live[-1].version + 1))
    assert event_count(ledger) == count  # queries record nothing


def test_sim_as_of_a_group_member_sees_the_pool_as_it_was(ledger: SimLedger) -> None:
    a, b = lined_sims(ledger, 2, start=10)
    group = ledger.create_shared_group("Pool", [a, b], make_package(ledger, data_mb=100))
    for key in (a, b):
        ledger.activate(key)
    ledger.record_usage(a, 30)
    after_a = ledger.sim(a)
    ledger.record_usage(b, 50)
    b_drew_at = next(e.at for e in ledger.history(b) if e.event == "UsageDrawn")
    ledger.record_usage(a, 40)

    assert after_a.data_left_mb == 70
    assert state(ledger.sim_as_of(a, version=after_a.version)) == state(after_a)
    # a's own state did not change when b drew; the pool it shared did
    at_b_draw = ledger.sim_as_of(a, at=b_drew_at)
    assert at_b_draw.version == after_a.version
    assert at_b_draw.data_left_mb == 20
    assert at_b_draw.group_id == group
    # before joining, the SIM had no plan and no pool
    joined = next(e for e in ledger.history(a) if e.event == "PackageShared")
    before_join = ledger.sim_as_of(a, version=joined.version - 1)
    assert (before_join.group_id, before_join.plan, before_join.data_left_mb) == (None, None, None)
    assert before_join.status is SimStatus.BLANK
    assert ledger.sim_as_of(a, version=joined.version).status is SimStatus.ACTIVATION_READY
    final = ledger.sim(a)
    assert final.data_left_mb == 0
    assert state(ledger.sim_as_of(a, version=final.version)) == state(final)


def test_sim_as_of_a_sim_with_a_snapshot(ledger: SimLedger) -> None:
    key = received_sim(ledger, 1)
    for n in range(2, 106):
        ledger.set_note(key, f"note at version {n}")
    assert ledger.snapshots is not None
    every = SIM_SNAPSHOT_INTERVAL
    assert [s.originator_version for s in ledger.snapshots.get(key)] == list(
        range(every, 106, every)
    )
    for version in (1, every - 1, every, every + 1, 50, 99, 100, 101, 104, 105):
        view = ledger.sim_as_of(key, version=version)
        assert view.version == version
        assert view.note == (None if version == 1 else f"note at version {version}")


def replayed(ledger: SimLedger, key: str, version: int, now: datetime | None = None) -> SimView:
    """The SIM at ``version`` replayed from its first event, no snapshot, seen at ``now``
    (by default the time of that version)."""
    sim: Sim | None = project_aggregate(None, ledger.events.get(key, lte=version))
    assert sim is not None
    return SimView.of(sim, None, None, now or sim.modified_on)


@pytest.mark.parametrize("labels", [60, 120])  # every event read; searched by halves
def test_sim_as_of_from_a_snapshot_equals_the_replay_from_the_first_event(
    ledger: SimLedger, labels: int
) -> None:
    key = received_sim(ledger, 1)
    for n in range(labels):
        ledger.set_labels(key, [f"label-{n}"])
    events: list[DomainEvent] = list(ledger.events.get(key))  # type: ignore[arg-type]
    assert ledger.snapshots is not None
    assert len(list(ledger.snapshots.get(key))) == len(events) // SIM_SNAPSHOT_INTERVAL
    for event in events:
        version = event.originator_version
        expected = replayed(ledger, key, version)
        assert ledger.sim_as_of(key, version=version) == expected
        moment = event.timestamp
        assert ledger.sim_as_of(key, at=moment) == replayed(ledger, key, version, moment)
    # between two events the SIM is as the earlier one left it
    for earlier, later in itertools.pairwise(events):
        between = earlier.timestamp + (later.timestamp - earlier.timestamp) / 2
        expected = replayed(ledger, key, earlier.originator_version, between)
        assert ledger.sim_as_of(key, at=between) == expected


def test_sim_as_of_a_version_reads_only_from_the_nearest_snapshot_on(
    ledger: SimLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = received_sim(ledger, 1)
    for n in range(2, 1001):
        ledger.set_note(key, f"note at version {n}")
    assert ledger.snapshots is not None
    read = {"events": 0, "snapshots": 0}

    def counted(store: Any, name: str) -> None:
        get = store.get

        def counting_get(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for item in get(*args, **kwargs):
                read[name] += 1
                yield item

        monkeypatch.setattr(store, "get", counting_get)

    counted(ledger.events, "events")
    counted(ledger.snapshots, "snapshots")
    view = ledger.sim_as_of(key, version=500)
    assert view.version == 500
    assert view.note == "note at version 500"
    assert read["snapshots"] == 1
    assert read["events"] <= SIM_SNAPSHOT_INTERVAL
    # by time: the version at that time found by halves, then read as above
    moment = next(iter(ledger.events.get(key, gt=499, lte=500))).timestamp  # type: ignore[attr-defined]
    read.update(events=0, snapshots=0)
    assert ledger.sim_as_of(key, at=moment).version == 500
    assert read["snapshots"] == 1
    assert read["events"] <= 2 + 10 + SIM_SNAPSHOT_INTERVAL  # first, last, ~log2(1000) steps


# ----------------------------------------------------------------- refused questions


def test_sim_as_of_refuses_questions_it_cannot_answer(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    latest = ledger.sim(key).version
    born = ledger.history(key)[0].at
    now = latest_moment(ledger, key)

    bad_versions: tuple[Any, ...] = (0, -1, latest + 1, "0", 2.5)
    for bad in bad_versions:
        refused(
            ledger, InvalidInput, "R-ES3", functools.partial(ledger.sim_as_of, key, version=bad)
        )
    # a version is a number like every other (R-IN2): "3" and 3.0 are version 3, True is none
    for bad in (True, "three", float("nan")):
        refused(
            ledger, InvalidInput, "R-IN2", functools.partial(ledger.sim_as_of, key, version=bad)
        )
    assert ledger.sim_as_of(key, version="3") == ledger.sim_as_of(key, version=3.0)
    refused(ledger, InvalidInput, "R-ES3", lambda: ledger.sim_as_of(key))
    refused(ledger, InvalidInput, "R-ES3", lambda: ledger.sim_as_of(key, at=now, version=1))
    naive = now.replace(tzinfo=None)
    refused(ledger, InvalidInput, "R-ES3", lambda: ledger.sim_as_of(key, at=naive))
    # before the SIM was received it did not exist: said so, not "no SIM" (issue 14 item 11)
    before = born - timedelta(microseconds=1)
    refused(ledger, SimNotYetReceived, "R-ES3", lambda: ledger.sim_as_of(key, at=before))
    dawn = datetime(1, 1, 1, tzinfo=UTC)
    refused(ledger, SimNotYetReceived, "R-ES3", lambda: ledger.sim_as_of(key, at=dawn))
    text_time: Any = "2020-01-01"
    refused(ledger, InvalidInput, "R-IN3", lambda: ledger.sim_as_of(key, at=text_time))
    refused(ledger, InvalidInput, "R-IN2", lambda: ledger.sim_as_of(key, version=10**30))
    refused(ledger, UnknownSim, "R-SIM1", lambda: ledger.sim_as_of(iccid(99), version=1))
    refused(ledger, InvalidIccid, "R-SIM1", lambda: ledger.sim_as_of("8944 1234", version=1))
    # the edges themselves are answered
    assert ledger.sim_as_of(key, at=born).status is SimStatus.PENDING
    assert ledger.sim_as_of(key, version=latest).status is SimStatus.ACTIVE
