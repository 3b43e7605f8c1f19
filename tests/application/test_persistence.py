"""Persistence (R-ES1, R-ES3): a store opened again gives back every SIM, group and package;
current state is derived from the events alone; snapshots change nothing but speed; the
event store is append-only.

Reopening = ``ledger.close()`` then a new ``SimLedger`` on the same env (sqlite, postgres).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import Notification, StoredEvent
from helpers import (
    AGGREGATES,
    COMPANY,
    MSISDN,
    FakeClock,
    event_count,
    iccid,
    iccids,
    make_package,
    ready_sim,
    received_sim,
    sim_in_status,
)

from simledger import (
    OperationInFlight,
    SharedGroupView,
    SimLedger,
    SimStatus,
    SimType,
    SimView,
    SuspendReason,
    SystemPauseNotCleared,
)
from simledger.adapters.store.batch_load import load_many
from simledger.application.ledger import SIM_SNAPSHOT_INTERVAL
from simledger.application.results import HistoryEntry
from simledger.domain.sim import Sim

SNAPSHOT_INTERVAL = SIM_SNAPSHOT_INTERVAL


@dataclass
class Fleet:
    """The ids of a small fleet that has every kind of aggregate."""

    sims: dict[str, str]  # role -> ICCID
    groups: list[UUID]
    packages: list[UUID]
    order_id: UUID
    service_id: UUID
    operation_id: UUID
    in_flight: str  # a SIM whose pause is still waiting for its carrier


def build_fleet(ledger: SimLedger) -> Fleet:
    sims: dict[str, str] = {}
    sims["pending"] = received_sim(ledger, 0)
    sims["invalid"] = sim_in_status(ledger, SimStatus.INVALID, 1)
    sims["not_available"] = sim_in_status(ledger, SimStatus.NOT_AVAILABLE, 2)
    sims["blank"] = received_sim(ledger, 3, checked=True)
    ledger.set_labels(sims["blank"], ["spare", "warehouse"])
    ledger.set_note(sims["blank"], "shelf 4")

    # a catalogue package and two copies of it
    package = make_package(ledger, data_mb=500, name="500 MB / 30 days")
    sims["ready"] = ready_sim(ledger, 4, activate=False, package_id=package)
    sims["active"] = ready_sim(ledger, 5, package_id=package)
    ledger.record_usage(sims["active"], 120, country="GB")
    ledger.set_end_user(sims["active"], "driver@example.com")

    # prepaid: its copy depleted (paused by the system), then topped up (works again)
    small = make_package(ledger, data_mb=50, name="50 MB")
    sims["prepaid"] = ready_sim(ledger, 6, sim_type=SimType.PREPAID, package_id=small)
    ledger.record_usage(sims["prepaid"], 80)
    ledger.top_up(sims["prepaid"], 100)

    sims["system_paused"] = ready_sim(ledger, 7, package_id=package)
    ledger.suspend_by_system(sims["system_paused"], "operator action")
    sims["swapping"] = ready_sim(ledger, 8, package_id=package)
    ledger.start_sim_swap(sims["swapping"])
    [sims["esim"]] = ledger.receive_sims(
        [iccid(9)], operator="Orange", sim_type=SimType.PAYGO, esim=True
    )

    # a shared group whose members used part of the pool
    members = ledger.receive_sims(iccids(3, 10), operator="3UK", sim_type=SimType.SUBSCRIPTION)
    for key in members:
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, MSISDN)
        ledger.assign_to_company(key, COMPANY)
    pool = make_package(ledger, data_mb=300, name="Shared 300 MB")
    group = ledger.create_shared_group("Fleet pool", members, pool, notify_users=True)
    for key in members:
        ledger.activate(key)
    ledger.record_usage(members[0], 100)
    ledger.record_usage(members[1], 50)
    sims.update({f"member{n}": key for n, key in enumerate(members)})

    # the partner flow: an order, its delivery on the holding service, a customer service
    order = ledger.order_sims("3UK", 50)
    delivered = ledger.receive_sims(
        iccids(2, 20), operator="3UK", sim_type=SimType.SUBSCRIPTION, order_id=order
    )
    service = ledger.create_customer_service(
        "10 GB EU", data_mb_per_month=10240, networks=["3UK", "Orange"], minimum_term_months=12
    )
    ledger.complete_integration_check(delivered[0], ok=True)
    ledger.migrate_to_partner_service(delivered[0], "partner-eu")
    ledger.assign_to_customer(delivered[0], COMPANY, service)
    sims["customer"], sims["holding"] = delivered

    # a bulk pause: one confirmed, one refused by its carrier, one still in flight
    targets = [ready_sim(ledger, n, package_id=package) for n in (30, 31, 32)]
    result = ledger.pause([*targets, sims["pending"]], idempotency_key="pause-1")
    assert result.accepted == targets
    assert set(result.rejected) == {sims["pending"]}
    ledger.confirm(result.operation_id, targets[0])
    ledger.confirm(result.operation_id, targets[1], ok=False, reason="carrier refused")
    sims.update(paused=targets[0], pause_refused=targets[1], in_flight=targets[2])

    return Fleet(
        sims=sims,
        groups=[group],
        packages=[package, small, pool],
        order_id=order,
        service_id=service,
        operation_id=result.operation_id,
        in_flight=targets[2],
    )


def typed_state(aggregate: Any) -> dict[str, tuple[type, Any]]:
    """Every attribute of an aggregate with its type: an enum that came back as a plain
    ``str`` compares equal to it, but not here."""
    return {name: (type(value), value) for name, value in vars(aggregate).items()}


def all_notifications(ledger: SimLedger) -> list[Notification]:
    return list(ledger.recorder.select_notifications(start=None, limit=10**9))


def aggregate_ids(ledger: SimLedger) -> list[str]:
    return list(dict.fromkeys(str(n.originator_id) for n in all_notifications(ledger)))


@dataclass
class Observed:
    views: dict[str, SimView]
    groups: dict[UUID, SharedGroupView]
    histories: dict[str, list[HistoryEntry]]
    notifications: list[Notification]
    aggregates: dict[str, dict[str, tuple[type, Any]]]


def observe(ledger: SimLedger, fleet: Fleet) -> Observed:
    keys = list(fleet.sims.values())
    return Observed(
        views={k: ledger.sim(k) for k in keys},
        groups={g: ledger.shared_group(g) for g in fleet.groups},
        histories={k: ledger.history(k) for k in keys},
        notifications=all_notifications(ledger),
        aggregates={a: typed_state(ledger.repository.get(a)) for a in aggregate_ids(ledger)},
    )


# ------------------------------------------------------------------- reopening a store


def test_reopened_store_gives_back_every_sim_group_package_and_history(
    persistent_store_env: dict[str, str],
) -> None:
    clock = FakeClock()
    ledger = SimLedger(persistent_store_env, clock=clock)
    fleet = build_fleet(ledger)
    before = observe(ledger, fleet)
    ledger.close()

    reopened = SimLedger(persistent_store_env, clock=clock)
    after = observe(reopened, fleet)

    # the fleet really has every kind of state, so the comparison below means something
    statuses = {v.status for v in before.views.values()}
    assert statuses == set(SimStatus)
    assert before.views[fleet.sims["system_paused"]].suspended_reason is SuspendReason.SYSTEM
    assert before.views[fleet.in_flight].operation_in_flight is not None
    assert before.groups[fleet.groups[0]].data_left_mb == 150
    kinds = {n.topic.split(":")[-1].split(".")[0] for n in before.notifications}
    assert kinds == AGGREGATES

    assert after.notifications == before.notifications
    assert event_count(reopened) == len(before.notifications)
    assert after.views == before.views
    assert after.groups == before.groups
    assert after.histories == before.histories
    assert after.aggregates == before.aggregates
    reopened.close()


def test_reopened_store_keeps_enforcing_rules_and_takes_new_commands(
    persistent_store_env: dict[str, str],
) -> None:
    clock = FakeClock()
    ledger = SimLedger(persistent_store_env, clock=clock)
    fleet = build_fleet(ledger)
    ledger.close()

    reopened = SimLedger(persistent_store_env, clock=clock)
    # R-BK6: the SIM whose pause is in flight cannot get a second one
    again = reopened.pause([fleet.in_flight])
    assert again.accepted == []
    assert OperationInFlight.rule in again.rejected[fleet.in_flight]
    # R-BK6: the same idempotency key gives the first answer and records nothing
    count = event_count(reopened)
    first_request = [
        *(fleet.sims[role] for role in ("paused", "pause_refused", "in_flight")),
        fleet.sims["pending"],
    ]
    replay = reopened.pause(first_request, idempotency_key="pause-1")
    assert replay.operation_id == fleet.operation_id
    assert replay.accepted == first_request[:3]
    assert event_count(reopened) == count
    # R-SIM6: the system pause survives the reopen
    resumed = reopened.resume([fleet.sims["system_paused"]])
    assert fleet.sims["system_paused"] in resumed.rejected
    assert SystemPauseNotCleared.rule in resumed.rejected[fleet.sims["system_paused"]]

    # the carrier's answer arrives after the restart: only now does the status change
    reopened.confirm(fleet.operation_id, fleet.in_flight)
    assert reopened.sim(fleet.in_flight).status is SimStatus.SUSPENDED
    reopened.complete_sim_swap(fleet.sims["swapping"])
    assert reopened.sim(fleet.sims["swapping"]).status is SimStatus.ACTIVE
    reopened.record_usage(fleet.sims["member2"], 25)
    assert reopened.shared_group(fleet.groups[0]).data_left_mb == 125
    reopened.close()

    third = SimLedger(persistent_store_env, clock=clock)
    assert third.sim(fleet.in_flight).status is SimStatus.SUSPENDED
    assert third.sim(fleet.sims["swapping"]).status is SimStatus.ACTIVE
    assert third.shared_group(fleet.groups[0]).data_left_mb == 125
    third.close()


def test_two_ledgers_on_one_store_see_each_others_writes(
    persistent_store_env: dict[str, str],
) -> None:
    first = SimLedger(persistent_store_env, clock=FakeClock())
    second = SimLedger(persistent_store_env, clock=FakeClock())
    key = ready_sim(first, 1)
    assert second.sim(key).status is SimStatus.ACTIVE
    second.set_note(key, "written by the second")
    assert first.sim(key).note == "written by the second"
    assert event_count(first) == event_count(second)
    first.close()
    second.close()


# ------------------------------------------------------- state from the events alone


def test_every_aggregate_equals_the_replay_of_its_events(store_env: dict[str, str]) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    fleet = build_fleet(ledger)
    ids = aggregate_ids(ledger)
    assert len(ids) > len(fleet.sims)
    for aggregate_id in ids:
        replayed = project_aggregate(None, ledger.events.get(aggregate_id))
        assert typed_state(ledger.repository.get(aggregate_id)) == typed_state(replayed)
    ledger.close()


# -------------------------------------------------------------------------- snapshots


def add_notes(ledger: SimLedger, key: str, until_version: int) -> str:
    """Set notes until the SIM has ``until_version`` events; returns the last note."""
    note = ""
    for n in range(until_version - ledger.sim(key).version):
        note = f"note {n}"
        ledger.set_note(key, note)
    assert ledger.sim(key).version == until_version
    return note


def long_lived_sim(ledger: SimLedger, versions: int) -> tuple[str, str]:
    """An active prepaid SIM with labels, an end user and a pause in flight, brought to
    ``versions`` events with notes. Returns its ICCID and last note."""
    key = ready_sim(ledger, 1, sim_type=SimType.PREPAID)
    ledger.set_labels(key, ["truck", "north"])
    ledger.set_end_user(key, "driver@example.com")
    assert ledger.pause([key]).accepted == [key]
    return key, add_notes(ledger, key, versions)


def snapshot_versions(ledger: SimLedger, key: str) -> list[int]:
    assert ledger.snapshots is not None
    return [s.originator_version for s in ledger.snapshots.get(key)]


def assert_loads_from_snapshot(
    ledger: SimLedger, key: str, monkeypatch: pytest.MonkeyPatch, snapshot_at: int
) -> Sim:
    """Load the SIM, checking the store was asked only for the events after the snapshot."""
    asked: list[Any] = []
    get = ledger.repository.event_store.get

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("gt"))
        return get(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ledger.repository.event_store, "get", spy)
        sim: Any = ledger.repository.get(key)
    assert asked == [snapshot_at]
    assert isinstance(sim, Sim)
    return sim


def test_snapshot_is_taken_and_loads_the_same_state_as_a_full_replay(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    last = 22 * SNAPSHOT_INTERVAL + 2
    key, last_note = long_lived_sim(ledger, last)
    short = received_sim(ledger, 2)

    # one note per save: a snapshot at every multiple of the interval
    versions = snapshot_versions(ledger, key)
    assert versions[-5:] == [n * SNAPSHOT_INTERVAL for n in range(18, 23)]
    assert snapshot_versions(ledger, short) == []
    loaded = assert_loads_from_snapshot(ledger, key, monkeypatch, 22 * SNAPSHOT_INTERVAL)
    replayed = project_aggregate(None, ledger.events.get(key))
    assert loaded.version == last
    assert typed_state(loaded) == typed_state(replayed)
    assert loaded.status is SimStatus.ACTIVE
    assert loaded.sim_type is SimType.PREPAID
    assert loaded.note == last_note
    assert loaded.in_flight is not None
    # the state at the snapshot's own version is the replay of its first 100 events
    at_snapshot: Any = ledger.repository.get(key, version=SNAPSHOT_INTERVAL)
    first_events = list(ledger.events.get(key, lte=SNAPSHOT_INTERVAL))
    assert typed_state(at_snapshot) == typed_state(project_aggregate(None, first_events))

    # the restored SIM behaves as the replayed one: its pause is still the one in flight
    view_in_flight = ledger.sim(key).operation_in_flight
    assert view_in_flight is not None
    ledger.confirm(view_in_flight["operation_id"], key)
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    assert ledger.sim(key).suspended_reason is SuspendReason.USER
    ledger.close()


def test_only_sims_are_snapshotted(store_env: dict[str, str]) -> None:
    """A package copy with more events than the SIM interval gets no snapshot; its SIM does."""
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1, data_mb=10_000)
    for _ in range(2 * SNAPSHOT_INTERVAL):
        ledger.record_usage(key, 1)
    copy = str(ledger.sim(key).copy_id)
    assert len(list(ledger.events.get(copy))) > SNAPSHOT_INTERVAL
    assert snapshot_versions(ledger, copy) == []
    assert snapshot_versions(ledger, key) != []
    ledger.close()


def test_a_system_pause_restored_from_a_snapshot_still_needs_its_cause_cleared(
    store_env: dict[str, str],
) -> None:
    """R-SIM6 and R-SIM7 after a snapshot: the suspension reason and the SIM type keep
    their meaning (they are enums, and a snapshot stores them as JSON text)."""
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1, sim_type=SimType.PREPAID)
    ledger.suspend_by_system(key, "operator action")
    add_notes(ledger, key, 3 * SNAPSHOT_INTERVAL + 1)
    assert snapshot_versions(ledger, key)[-1] == 3 * SNAPSHOT_INTERVAL

    count = event_count(ledger)
    answer = ledger.resume([key])
    assert answer.accepted == []
    assert "R-SIM6" in answer.rejected[key]
    assert event_count(ledger) == count + 1  # the request itself, not a resume of the SIM
    assert ledger.sim(key).status is SimStatus.SUSPENDED

    ledger.top_up(key, 10)  # a prepaid SIM takes a top-up whatever its snapshot says
    assert ledger.sim(key).data_left_mb == 1010
    ledger.close()


def test_a_bulk_save_snapshots_the_saved_sims_that_crossed_the_interval_in_one_write(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot is taken from the saved SIM (no re-read) at its new version, even when
    one save carries it past a multiple of the interval; all of a save's snapshots go to
    the store together; SIMs that crossed nothing get none."""
    ledger = SimLedger(store_env, clock=FakeClock())
    crossing = [ready_sim(ledger, n) for n in range(1, 4)]
    short = received_sim(ledger, 9)
    for key in crossing:  # one event short of the next multiple
        add_notes(
            ledger, key, (ledger.sim(key).version // SNAPSHOT_INTERVAL + 1) * SNAPSHOT_INTERVAL - 1
        )
    before = {key: snapshot_versions(ledger, key) for key in [*crossing, short]}
    loaded = load_many(ledger, [*crossing, short])
    for sim in loaded.values():
        sim.set_note("a")
        sim.set_note("b")  # two events: the first one lands on the multiple
    puts: list[int] = []
    assert ledger.snapshots is not None
    put = ledger.snapshots.put

    def counting_put(events: list[Any], **kwargs: Any) -> Any:
        puts.append(len(events))
        return put(events, **kwargs)

    monkeypatch.setattr(ledger.snapshots, "put", counting_put)
    monkeypatch.setattr(ledger.repository, "get", lambda *a, **k: pytest.fail("re-read"))
    ledger.save(*loaded.values())
    monkeypatch.undo()

    assert puts == [len(crossing)]
    for key in crossing:
        sim = ledger.repository.get(key)
        assert snapshot_versions(ledger, key) == [*before[key], sim.version]
        assert sim.version % SNAPSHOT_INTERVAL == 1
        replayed = project_aggregate(None, ledger.events.get(key))
        assert typed_state(sim) == typed_state(replayed)
    assert snapshot_versions(ledger, short) == before[short] == []
    ledger.close()


def test_snapshot_survives_reopening(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    ledger = SimLedger(persistent_store_env, clock=clock)
    key, _ = long_lived_sim(ledger, 41 * SNAPSHOT_INTERVAL + 1)
    view = ledger.sim(key)
    ledger.close()

    reopened = SimLedger(persistent_store_env, clock=clock)
    assert snapshot_versions(reopened, key)[-2:] == [40 * SNAPSHOT_INTERVAL, 41 * SNAPSHOT_INTERVAL]
    loaded = assert_loads_from_snapshot(reopened, key, monkeypatch, 41 * SNAPSHOT_INTERVAL)
    replayed = project_aggregate(None, reopened.events.get(key))
    assert typed_state(loaded) == typed_state(replayed)
    assert reopened.sim(key) == view
    # an earlier version is rebuilt from the older snapshot, not the newest one
    earlier = 30 * SNAPSHOT_INTERVAL + 2
    at_earlier: Any = reopened.repository.get(key, version=earlier)
    assert at_earlier.version == earlier
    assert typed_state(at_earlier) == typed_state(
        project_aggregate(None, reopened.events.get(key, lte=earlier))
    )
    reopened.close()


# -------------------------------------------------------------------- append-only (R-ES1)


def stored_records(ledger: SimLedger, key: str) -> list[StoredEvent]:
    return list(ledger.recorder.select_events(key))


def test_events_are_only_ever_appended(store_env: dict[str, str]) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    fleet = build_fleet(ledger)
    watched = [fleet.sims["active"], fleet.in_flight, fleet.sims["member0"]]
    before_all = all_notifications(ledger)
    before = {key: stored_records(ledger, key) for key in watched}
    group_before = stored_records(ledger, str(fleet.groups[0]))

    # more commands on the same aggregates, enough for a snapshot, a depletion and a resume
    ledger.confirm(fleet.operation_id, fleet.in_flight)
    ledger.resume([fleet.in_flight])
    add_notes(
        ledger, fleet.sims["active"], ledger.sim(fleet.sims["active"]).version + SNAPSHOT_INTERVAL
    )
    ledger.set_labels(fleet.sims["active"], ["relabelled"])
    ledger.record_usage(fleet.sims["member0"], 500)  # drains the pool: members suspended
    assert ledger.shared_group(fleet.groups[0]).depleted

    after_all = all_notifications(ledger)
    assert after_all[: len(before_all)] == before_all
    assert len(after_all) > len(before_all) + SNAPSHOT_INTERVAL
    for key in watched:
        after = stored_records(ledger, key)
        assert after[: len(before[key])] == before[key]
        assert len(after) > len(before[key])
    group_after = stored_records(ledger, str(fleet.groups[0]))
    assert group_after[: len(group_before)] == group_before
    # a snapshot is kept apart: the SIM's event records are not replaced by it
    assert SNAPSHOT_INTERVAL in snapshot_versions(ledger, fleet.sims["active"])
    versions = [r.originator_version for r in stored_records(ledger, fleet.sims["active"])]
    assert versions == list(range(1, len(versions) + 1))
    ledger.close()
