"""Shared groups: R-SG1..R-SG4 of docs/rules.md, one or more tests per rule.

R-SG5 (regular groups can be changed at any time) has no command in docs/api.md, so it has no
test here.

Every refusal is checked for its error class, its ``.rule`` and that it recorded nothing.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from helpers import T0, FakeClock, iccids, refused

from simledger import (
    AlreadyInSharedGroup,
    AutoRenewNotAllowed,
    IllegalTransition,
    InvalidInput,
    PackageStillActive,
    SharedGroupLocked,
    SimLedger,
    SimledgerError,
    SimStatus,
    SuspendReason,
    UnknownGroup,
    UnknownSim,
)

LINE = "+447700900123"


def last_id(ledger: SimLedger) -> int:
    """The id of the newest notification: a mark for :func:`notifications_after`."""
    return ledger.recorder.max_notification_id() or 0


def notifications_after(ledger: SimLedger, mark: int) -> list[Notification]:
    return list(ledger.recorder.select_notifications(start=mark + 1, limit=10_000))


def event_name(note: Notification) -> str:
    """``SharedGroup.Created`` for a notification of that event class."""
    return note.topic.split(":")[-1]


def blank_sims(
    ledger: SimLedger, n: int, *, start: int = 0, sim_type: str = "prepaid"
) -> list[str]:
    keys = ledger.receive_sims(iccids(n, start), operator="3UK", sim_type=sim_type)
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
    return keys


def lined_sims(ledger: SimLedger, n: int, *, start: int = 0) -> list[str]:
    """``blank`` SIMs with a line and a company: a plan makes them ``activation_ready``."""
    keys = blank_sims(ledger, n, start=start)
    for key in keys:
        ledger.assign_line(key, LINE)
        ledger.assign_to_company(key, "ACME")
    return keys


def package(ledger: SimLedger, data_mb: int = 100, *, auto_renew: bool = False) -> UUID:
    return ledger.create_package(
        f"{data_mb} MB", data_mb=data_mb, validity_days=30, auto_renew=auto_renew
    )


def active_group(
    ledger: SimLedger, n: int, data_mb: int = 100, *, start: int = 0
) -> tuple[UUID, list[str]]:
    """A shared group of ``n`` active SIMs on a fresh pool of ``data_mb``."""
    keys = lined_sims(ledger, n, start=start)
    group = ledger.create_shared_group(f"fleet {start}", keys, package(ledger, data_mb))
    for key in keys:
        ledger.activate(key)
    return group, keys


# ---------------------------------------------------------------------------- R-SG1


def test_sg1_every_member_draws_the_one_pool_and_has_no_copy(ledger: SimLedger) -> None:
    group, (a, b, c) = active_group(ledger, 3, data_mb=100)

    ledger.record_usage(a, 30)
    ledger.record_usage(b, Decimal("12.5"))

    assert ledger.shared_group(group).data_left_mb == Decimal("57.5")
    for key in (a, b, c):  # the member that did not use any data sees the same pool
        view = ledger.sim(key)
        assert view.copy_id is None
        assert view.group_id == group
        assert view.data_left_mb == Decimal("57.5")
    drawn = [
        (e.data["iccid"], e.data["mb"])
        for e in ledger.history(a) + ledger.history(b)
        if e.aggregate == "SharedGroup" and e.event == "UsageDrawn"
    ]
    assert sorted(drawn) == sorted([(a, Decimal(30)), (b, Decimal("12.5"))])


def test_sg1_no_individual_copy_is_ever_made(ledger: SimLedger) -> None:
    keys = lined_sims(ledger, 4)
    pkg = package(ledger)
    mark = last_id(ledger)

    ledger.create_shared_group("fleet", keys, pkg)

    names = [event_name(n) for n in notifications_after(ledger, mark)]
    assert "Package.Assigned" not in names  # the copy event of R-PK2
    assert names.count("Sim.PackageShared") == 4
    assert names.count("SharedGroup.Created") == 1


def test_sg1_usage_of_a_non_member_leaves_the_pool_alone(ledger: SimLedger) -> None:
    group, _ = active_group(ledger, 2, data_mb=100)
    (outsider,) = lined_sims(ledger, 1, start=50)
    ledger.assign_package(outsider, package(ledger, 40))
    ledger.activate(outsider)

    ledger.record_usage(outsider, 25)

    assert ledger.shared_group(group).data_left_mb == Decimal(100)
    assert ledger.sim(outsider).data_left_mb == Decimal(15)


def test_sg1_depleting_the_pool_suspends_every_active_member_by_the_system(
    ledger: SimLedger,
) -> None:
    group, (a, b) = active_group(ledger, 2, data_mb=100)
    keys = lined_sims(ledger, 3, start=30)
    group2 = ledger.create_shared_group("half active", keys, package(ledger))
    ledger.activate(keys[0])
    ledger.activate(keys[1])
    not_yet_active = keys[2]

    ledger.record_usage(a, 60)
    assert ledger.sim(b).status is SimStatus.ACTIVE  # 40 MB left: nothing happens yet
    ledger.record_usage(b, 70)  # more than is left: the pool stops at zero

    pool = ledger.shared_group(group)
    assert pool.data_left_mb == 0
    assert pool.depleted
    for key in (a, b):
        view = ledger.sim(key)
        assert view.status is SimStatus.SUSPENDED
        assert view.suspended_reason is SuspendReason.SYSTEM
        assert view.system_cause == "depleted"
    assert ledger.shared_group(group2).data_left_mb == 100  # another pool is untouched

    ledger.record_usage(keys[0], 100)
    assert ledger.sim(keys[1]).status is SimStatus.SUSPENDED
    # A member that was never activated is not "suspended": it stays where it was.
    assert ledger.sim(not_yet_active).status is SimStatus.ACTIVATION_READY


# ---------------------------------------------------------------------------- R-SG2


def test_sg2_creation_records_name_members_package_and_notify_flag(ledger: SimLedger) -> None:
    keys = lined_sims(ledger, 3)
    pkg = package(ledger, 250)

    group = ledger.create_shared_group("Field team", keys, pkg, notify_users=True)

    view = ledger.shared_group(group)
    assert view.name == "Field team"
    assert view.members == keys
    assert view.package_id == pkg
    assert view.notify_users is True
    assert view.data_left_mb == view.data_mb == 250
    assert view.locked
    other = ledger.create_shared_group("Quiet", lined_sims(ledger, 1, start=10), pkg)
    assert ledger.shared_group(other).notify_users is False


def test_sg2_every_member_gets_the_package_at_once(ledger: SimLedger) -> None:
    (ready,) = lined_sims(ledger, 1)
    store, no_line, no_company = blank_sims(ledger, 3, start=10)
    ledger.assign_line(store, LINE)
    ledger.mark_store_use(store)
    ledger.assign_to_company(no_line, "ACME")
    ledger.assign_line(no_company, LINE)
    pkg = package(ledger)

    group = ledger.create_shared_group("fleet", [ready, store, no_line, no_company], pkg)

    for key in (ready, store, no_line, no_company):
        view = ledger.sim(key)
        assert view.group_id == group
        assert view.package_id == pkg
        assert view.plan == "100 MB"
        assert view.data_left_mb == 100
    assert ledger.sim(ready).status is SimStatus.ACTIVATION_READY
    assert ledger.sim(store).status is SimStatus.ACTIVATION_READY  # store use: no company
    assert ledger.sim(no_line).status is SimStatus.BLANK  # R-SIM5: still no line
    assert ledger.sim(no_company).status is SimStatus.BLANK
    ledger.activate(ready)  # usable right away
    ledger.record_usage(ready, 1)
    assert ledger.shared_group(group).data_left_mb == 99


def test_sg2_a_sim_with_an_active_own_package_is_refused(ledger: SimLedger) -> None:
    keys = lined_sims(ledger, 3)
    ledger.assign_package(keys[1], package(ledger, 10))
    pkg = package(ledger)

    error = refused(
        ledger, PackageStillActive, "R-SG2", ledger.create_shared_group, "fleet", keys, pkg
    )

    assert keys[1] in str(error)
    for key in keys:  # not even the SIMs before the bad one joined
        assert ledger.sim(key).group_id is None
    assert ledger.sim(keys[0]).package_id is None


def test_sg2_a_sim_whose_package_ran_out_or_expired_may_join(
    ledger: SimLedger, clock: FakeClock
) -> None:
    drained, expired = lined_sims(ledger, 2)
    ledger.assign_package(drained, package(ledger, 10))
    ledger.activate(drained)
    ledger.record_usage(drained, 10)  # the copy is depleted
    ledger.assign_package(expired, package(ledger, 10))
    clock.advance(timedelta(days=31))  # validity over, not yet processed by expire_packages

    group = ledger.create_shared_group("second life", [drained, expired], package(ledger))

    assert ledger.sim(drained).group_id == group
    assert ledger.sim(expired).group_id == group
    assert ledger.sim(drained).copy_id is None


def test_sg2_an_auto_renew_package_is_refused(ledger: SimLedger) -> None:
    keys = lined_sims(ledger, 2)
    renewing = package(ledger, auto_renew=True)

    refused(
        ledger, AutoRenewNotAllowed, "R-SG2", ledger.create_shared_group, "fleet", keys, renewing
    )

    assert all(ledger.sim(k).group_id is None for k in keys)


def test_sg2_a_sim_belongs_to_at_most_one_shared_group(ledger: SimLedger) -> None:
    first, (a, b) = active_group(ledger, 2)
    (c,) = lined_sims(ledger, 1, start=10)
    pkg = package(ledger)

    refused(
        ledger, AlreadyInSharedGroup, "R-SG2", ledger.create_shared_group, "second", [c, b], pkg
    )
    assert ledger.sim(c).group_id is None

    second = ledger.create_shared_group("second", [c], pkg)
    ledger.activate(c)
    ledger.record_usage(c, 100)  # second is depleted: it takes members again (R-SG3)
    refused(ledger, AlreadyInSharedGroup, "R-SG2", ledger.add_to_shared_group, second, a)
    assert ledger.sim(a).group_id == first
    assert ledger.shared_group(second).members == [c]
    # Not even into the group it is already in.
    refused(ledger, AlreadyInSharedGroup, "R-SG2", ledger.add_to_shared_group, second, c)


def test_sg2_a_member_cannot_take_an_own_package_too(ledger: SimLedger) -> None:
    """R-SG1 + R-PK3: the pool is the member's one active package."""
    _, (a,) = active_group(ledger, 1)

    refused(ledger, AlreadyInSharedGroup, "R-PK3", ledger.assign_package, a, package(ledger))

    assert ledger.sim(a).copy_id is None


def test_sg2_an_unknown_or_unfit_sim_among_many_records_nothing_for_any(
    ledger: SimLedger,
) -> None:
    keys = lined_sims(ledger, 5)
    pkg = package(ledger)
    stranger = iccids(1, start=99)[0]
    refused(ledger, UnknownSim, "R-SIM1", ledger.create_shared_group, "x", [*keys, stranger], pkg)
    (pending,) = ledger.receive_sims(iccids(1, start=60), operator="3UK", sim_type="prepaid")
    refused(
        ledger,
        IllegalTransition,
        "R-SIM4",
        ledger.create_shared_group,
        "x",
        [*keys[:3], pending, *keys[3:]],
        pkg,
    )
    assert all(ledger.sim(k).group_id is None for k in keys)
    refused(ledger, InvalidInput, "R-SG2", ledger.create_shared_group, "x", [], pkg)


def test_sg2_the_events_of_one_creation_are_recorded_together(ledger: SimLedger) -> None:
    keys = lined_sims(ledger, 4)
    pkg = package(ledger)
    mark = last_id(ledger)

    group = ledger.create_shared_group("fleet", keys, pkg)

    notes = notifications_after(ledger, mark)
    assert [n.id for n in notes] == list(range(mark + 1, mark + 1 + len(notes)))
    assert {n.originator_id for n in notes} == {str(group), *keys}
    assert len(notes) == 1 + len(keys)


# ---------------------------------------------------------------------------- R-SG3


def test_sg3_members_are_locked_until_the_pool_runs_out(ledger: SimLedger) -> None:
    group, (a, b) = active_group(ledger, 2, data_mb=100)
    (c,) = lined_sims(ledger, 1, start=10)

    refused(ledger, SharedGroupLocked, "R-SG3", ledger.add_to_shared_group, group, c)
    refused(ledger, SharedGroupLocked, "R-SG3", ledger.remove_from_shared_group, group, a)
    ledger.record_usage(a, 99)  # one MB left: still locked
    refused(ledger, SharedGroupLocked, "R-SG3", ledger.add_to_shared_group, group, c)
    assert ledger.shared_group(group).locked
    assert ledger.shared_group(group).members == [a, b]
    assert ledger.sim(c).group_id is None

    ledger.record_usage(b, 1)  # depleted by usage

    assert not ledger.shared_group(group).locked
    ledger.add_to_shared_group(group, c)
    ledger.remove_from_shared_group(group, a)
    assert ledger.shared_group(group).members == [b, c]
    assert ledger.sim(c).group_id == group
    assert ledger.sim(c).package_id == ledger.shared_group(group).package_id
    left = ledger.sim(a)
    assert (left.group_id, left.package_id, left.plan, left.data_left_mb) == (
        None,
        None,
        None,
        None,
    )
    assert left.status is SimStatus.SUSPENDED  # leaving a group changes no service status


def test_sg3_the_lock_lifts_when_the_pool_expires(ledger: SimLedger, clock: FakeClock) -> None:
    group, (a, b) = active_group(ledger, 2, data_mb=100)
    (c,) = lined_sims(ledger, 1, start=10)
    expires_at = ledger.shared_group(group).expires_at
    assert expires_at == T0 + timedelta(days=30)

    result = ledger.expire_packages(clock.advance(timedelta(days=30)) - timedelta(seconds=1))
    assert str(group) not in result.depleted
    refused(ledger, SharedGroupLocked, "R-SG3", ledger.add_to_shared_group, group, c)

    result = ledger.expire_packages(clock.advance(timedelta(seconds=1)))

    assert str(group) in result.depleted
    view = ledger.shared_group(group)
    assert view.depleted and not view.locked
    assert view.data_left_mb == 0  # nothing left to use once expired, though none was drawn
    assert not [e for e in ledger.history(a) if e.event == "UsageDrawn"]
    for key in (a, b):
        assert ledger.sim(key).status is SimStatus.SUSPENDED
        assert ledger.sim(key).system_cause == "expired"
    ledger.add_to_shared_group(group, c)
    ledger.remove_from_shared_group(group, b)
    assert ledger.shared_group(group).members == [a, c]


def test_sg3_remove_from_an_open_group_needs_a_member(ledger: SimLedger) -> None:
    group, (a,) = active_group(ledger, 1, data_mb=5)
    (c,) = lined_sims(ledger, 1, start=10)
    ledger.record_usage(a, 5)

    refused(ledger, SimledgerError, "R-SG1", ledger.remove_from_shared_group, group, c)


# ---------------------------------------------------------------------------- R-SG4


def test_sg4_delete_ungroups_the_sims_and_deletes_the_group(ledger: SimLedger) -> None:
    group, (a, b) = active_group(ledger, 2)
    ledger.record_usage(a, 10)
    mark = last_id(ledger)

    ledger.delete_shared_group(group)  # allowed while locked: "delete it and create a new one"

    notes = notifications_after(ledger, mark)
    assert [n.id for n in notes] == list(range(mark + 1, mark + 1 + len(notes)))
    assert {n.originator_id for n in notes} == {str(group), a, b}
    view = ledger.shared_group(group)
    assert view.deleted and view.members == []
    for key in (a, b):  # the SIMs stay, with their status, out of any group
        sim = ledger.sim(key)
        assert sim.group_id is None
        assert sim.package_id is None
        assert sim.status is SimStatus.ACTIVE
    refused(ledger, UnknownGroup, "R-SG4", ledger.add_to_shared_group, group, a)
    refused(ledger, UnknownGroup, "R-SG4", ledger.delete_shared_group, group)
    again = ledger.create_shared_group("new", [a, b], package(ledger))  # and may regroup
    assert ledger.sim(a).group_id == again


def test_sg4_move_to_puts_the_sims_in_the_target_and_keeps_the_empty_group(
    ledger: SimLedger,
) -> None:
    source, (a, b) = active_group(ledger, 2, data_mb=100)
    target, (c,) = active_group(ledger, 1, data_mb=10, start=10)
    ledger.record_usage(c, 10)  # the target takes members only once depleted (R-SG3)
    target_package = ledger.shared_group(target).package_id
    mark = last_id(ledger)

    ledger.delete_shared_group(source, move_to=target)

    notes = notifications_after(ledger, mark)
    assert [n.id for n in notes] == list(range(mark + 1, mark + 1 + len(notes)))
    assert {n.originator_id for n in notes} == {str(source), str(target), a, b}
    kept = ledger.shared_group(source)
    assert kept.members == []
    assert not kept.deleted
    assert sorted(ledger.shared_group(target).members) == sorted([a, b, c])
    for key in (a, b):
        sim = ledger.sim(key)
        assert sim.group_id == target
        assert sim.package_id == target_package
        assert sim.data_left_mb == 0


def test_sg4_move_to_a_locked_missing_or_same_group_is_refused(ledger: SimLedger) -> None:
    source, (a,) = active_group(ledger, 1)
    locked, _ = active_group(ledger, 1, start=10)

    refused(ledger, SharedGroupLocked, "R-SG3", ledger.delete_shared_group, source, move_to=locked)
    refused(
        ledger,
        UnknownGroup,
        "R-SG4",
        ledger.delete_shared_group,
        source,
        move_to=UUID(int=7),
    )
    refused(ledger, InvalidInput, "R-SG4", ledger.delete_shared_group, source, move_to=source)
    assert ledger.sim(a).group_id == source
    assert ledger.shared_group(source).members == [a]


def test_sg4_sims_are_never_deleted(ledger: SimLedger) -> None:
    group, keys = active_group(ledger, 3)
    versions = {k: ledger.sim(k).version for k in keys}

    ledger.delete_shared_group(group)

    for key in keys:
        assert ledger.sim(key).version == versions[key] + 1  # one more event: ungrouped
        assert ledger.history(key)[0].event == "Received"


# ------------------------------------------------- one command, many aggregates, one save


def _collide_once(ledger: SimLedger, other: SimLedger, victim: str) -> list[int]:
    """Make the first save of ``ledger`` collide with a write of ``other`` on ``victim``."""
    calls: list[int] = []
    insert = ledger.recorder.insert_events

    def colliding(stored_events: Any, **kwargs: Any) -> Any:
        if "late" in kwargs:
            # A member's draw tried under the table lock first (PostgreSQL): it stops
            # before writing anything when the pool runs out, and the usual path follows.
            return insert(stored_events, **kwargs)
        calls.append(len(stored_events))
        if len(calls) == 1:
            # Another process writes the SIM while this command is saving: the SIM's next
            # version is taken, so the save fails part-way through its rows.
            other.set_note(victim, "written concurrently")
        return insert(stored_events, **kwargs)

    ledger.recorder.insert_events = colliding  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("command", ["create", "delete", "deplete"])
def test_multi_aggregate_commands_save_in_one_transaction(
    persistent_store_env: dict[str, str], command: str
) -> None:
    """Group + SIMs of one command are all saved or none: a collision on the last SIM makes
    the first attempt fail after the group's and the other SIMs' rows were written; none of
    them may remain, and the retry on fresh state records the command exactly once."""
    clock = FakeClock()
    ledger = SimLedger(env=persistent_store_env, clock=clock)
    other = SimLedger(env=persistent_store_env, clock=clock)
    try:
        keys = lined_sims(ledger, 3)
        pkg = package(ledger, 100)
        group: UUID | None = None
        if command != "create":
            group = ledger.create_shared_group("fleet", keys, pkg)
            for key in keys:
                ledger.activate(key)
        mark = last_id(ledger)
        calls = _collide_once(ledger, other, keys[-1])

        if command == "create":
            group = ledger.create_shared_group("fleet", keys, pkg)
        elif command == "delete":
            assert group is not None
            ledger.delete_shared_group(group)
        else:
            ledger.record_usage(keys[0], 150)

        assert len(calls) == 2, "the first save should have collided and been retried"
        assert calls[0] == calls[1]
        notes = notifications_after(ledger, mark)
        names = [event_name(n) for n in notes]
        # The concurrent note first, then the whole command, with consecutive ids
        # (PostgreSQL may leave a gap where the failed attempt took ids and rolled back).
        assert names[0] == "Sim.NoteSet"
        assert [n.id for n in notes[1:]] == [notes[1].id + i for i in range(len(notes) - 1)]
        assert len(notes) == 1 + calls[1]
        assert {n.originator_id for n in notes[1:]} == {str(group), *keys}
        reopened = SimLedger(env=persistent_store_env, clock=clock)
        try:
            assert reopened.sim(keys[-1]).note == "written concurrently"
            assert group is not None
            pool = reopened.shared_group(group)
            if command == "create":
                assert names.count("SharedGroup.Created") == 1
                assert all(reopened.sim(k).group_id == group for k in keys)
            elif command == "delete":
                assert names.count("SharedGroup.Deleted") == 1
                assert pool.deleted
                assert all(reopened.sim(k).group_id is None for k in keys)
            else:
                assert names.count("SharedGroup.UsageDrawn") == 1
                assert names.count("Sim.UsageRecorded") == 1
                assert pool.data_left_mb == 0 and pool.depleted
                assert all(reopened.sim(k).status is SimStatus.SUSPENDED for k in keys)
        finally:
            reopened.close()
    finally:
        other.close()
        ledger.close()
