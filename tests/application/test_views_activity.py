"""The pending activity list (R-BK3) and the shared groups view (R-SG1..4), on every store."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from helpers import iccid, new_ledger

from simledger import InvalidInput, SimLedger, SimStatus


def active_sims(ledger: SimLedger, numbers: range, company: str = "Acme") -> list[str]:
    package = ledger.create_package("1 GB", data_mb=1000, validity_days=30)
    keys = ledger.receive_sims([iccid(n) for n in numbers], operator="3UK", sim_type="paygo")
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, "+447700900123")
        ledger.assign_to_company(key, company)
        ledger.assign_package(key, package)
        ledger.activate(key)
    return keys


def test_pending_activity_counts_answers_and_overdue(store_env: dict[str, str]) -> None:
    ledger, clock = new_ledger(store_env, carrier_deadline=timedelta(hours=2))
    a, b, c, d = active_sims(ledger, range(4))
    [blank] = ledger.receive_sims([iccid(9)], operator="3UK", sim_type="paygo")
    assert ledger.pending_activity() == []

    pause = ledger.pause([a, b, c, d, blank])
    assert len(pause.accepted) == 4 and blank in pause.rejected
    [row] = ledger.pending_activity()
    assert (row.operation_id, row.kind, row.requested, row.pending) == (
        pause.operation_id,
        "pause",
        4,
        4,
    )
    assert (row.confirmed, row.refused, row.overdue) == (0, 0, 0)

    ledger.confirm(pause.operation_id, a)
    ledger.confirm(pause.operation_id, b, ok=False, reason="carrier said no")
    ledger.suspend_by_system(c, "operator action")  # c moves before its carrier says yes
    ledger.confirm(pause.operation_id, c)  # kept as OperationSuperseded: not applied
    assert ledger.sim(c).suspended_reason == "system"
    [row] = ledger.pending_activity()
    assert (row.requested, row.confirmed, row.refused, row.pending) == (4, 1, 2, 1)
    assert row.overdue == 0

    clock.advance(timedelta(minutes=30))
    resume = ledger.resume([a])
    newest, oldest = ledger.pending_activity()
    assert (newest.operation_id, newest.kind) == (resume.operation_id, "resume")
    assert oldest.operation_id == pause.operation_id
    assert newest.requested_at >= oldest.requested_at

    clock.advance(timedelta(hours=1, minutes=45))  # the pause's deadline has passed
    newest, oldest = ledger.pending_activity()
    assert (oldest.pending, oldest.overdue) == (1, 1)
    assert (newest.pending, newest.overdue) == (1, 0)
    ledger.confirm(resume.operation_id, a)
    newest, oldest = ledger.pending_activity()
    assert (newest.confirmed, newest.pending, newest.overdue) == (1, 0, 0)
    assert ledger.sim(a).status is SimStatus.ACTIVE
    # a second request with the same idempotency key records nothing
    again = ledger.pause([d], idempotency_key="k1")
    assert ledger.pause([d], idempotency_key="k1") == again
    assert len(ledger.pending_activity()) == 3


def test_shared_groups_view_and_filters(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    acme = active_sims(ledger, range(0, 3), company="Acme")
    globex = active_sims(ledger, range(10, 14), company="Globex")
    [spare] = ledger.receive_sims([iccid(20)], operator="A1", sim_type="paygo")
    ledger.complete_integration_check(spare, ok=True)
    pool = ledger.create_package("Pool", data_mb=100, validity_days=30)
    big = ledger.create_package("Big pool", data_mb=5000, validity_days=30)
    # the members' own copies must be spent before they join (R-SG2)
    for key in (*acme, *globex):
        ledger.record_usage(key, 1000)
    g1 = ledger.create_shared_group("Alpha", [*acme, globex[0]], pool)
    g2 = ledger.create_shared_group("Beta", globex[1:], big)
    g3 = ledger.create_shared_group("Gamma", [spare], big)

    names = [(g.name, g.member_count, g.locked) for g in ledger.shared_groups()]
    assert names == [("Alpha", 4, True), ("Beta", 3, True), ("Gamma", 1, True)]
    assert [g.group_id for g in ledger.shared_groups(company="Acme")] == [g1]
    assert [g.group_id for g in ledger.shared_groups(company="Globex")] == [g1, g2]
    assert ledger.shared_groups(company="Initech") == []

    # a draw on the pool changes every member's data left, in the same batch
    ledger.record_usage(acme[0], 30)
    [alpha] = ledger.shared_groups(company="Acme")
    assert alpha.data_left_mb == Decimal(70)
    members = ledger.sims(group_id=g1)
    assert members.total == 4
    assert {i.data_left_mb for i in members.items} == {Decimal(70)}
    assert {i.data_left_mb for i in members.items} == {ledger.sim(k).data_left_mb for k in acme}

    # depleting the pool unlocks the group (R-SG3) and the system pauses its members
    ledger.record_usage(globex[0], 500)
    unlocked = ledger.shared_groups(locked=False)
    assert [g.group_id for g in unlocked] == [g1]
    assert unlocked[0].data_left_mb == 0 and unlocked[0].depleted
    assert [g.group_id for g in ledger.shared_groups(locked=True)] == [g2, g3]
    assert ledger.sims(group_id=g1, status="suspended").total == 4

    ledger.remove_from_shared_group(g1, acme[2])
    [left] = ledger.sims(search=acme[2]).items
    assert left.group_id is None and left.data_left_mb is None and left.plan is None
    assert [g.member_count for g in ledger.shared_groups(locked=False)] == [3]

    ledger.delete_shared_group(g1)
    deleted = [g for g in ledger.shared_groups() if g.group_id == g1]
    assert deleted[0].deleted and not deleted[0].locked and deleted[0].member_count == 0
    assert ledger.sims(group_id=g1).total == 0
    assert ledger.shared_groups(company="Acme") == []
    assert ledger.shared_groups(company="Globex", locked=True) == ledger.shared_groups(
        company="Globex"
    )
    with pytest.raises(InvalidInput):
        ledger.shared_groups(company="  ")
    with pytest.raises(InvalidInput):
        ledger.shared_groups(locked="yes")  # type: ignore[arg-type]
    assert ledger.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}


def test_moving_members_to_another_group(store_env: dict[str, str]) -> None:
    ledger, clock = new_ledger(store_env)
    keys = active_sims(ledger, range(5))
    for key in keys:
        ledger.record_usage(key, 1000)
    small = ledger.create_package("Small", data_mb=10, validity_days=5)
    large = ledger.create_package("Large", data_mb=900, validity_days=40)
    source = ledger.create_shared_group("Source", keys[:3], small)
    target = ledger.create_shared_group("Target", keys[3:], large)
    ledger.record_usage(keys[3], 100)
    ledger.record_usage(keys[4], 850)  # both pools run out: both groups may change (R-SG3)
    ledger.record_usage(keys[0], 10)
    clock.advance(timedelta(days=1))
    ledger.delete_shared_group(source, move_to=target)
    view = {g.name: g for g in ledger.shared_groups()}
    assert (view["Source"].member_count, view["Source"].deleted) == (0, False)
    assert (view["Target"].member_count, view["Target"].data_left_mb) == (5, Decimal(0))
    assert not view["Target"].locked
    moved = ledger.sims(group_id=target, limit=10).items
    assert {i.iccid for i in moved} == set(keys)
    assert {(i.data_left_mb, i.days_left, i.plan) for i in moved} == {(Decimal(0), 39, "Large")}
    for item in moved:
        sim = ledger.sim(item.iccid)
        assert (item.data_left_mb, item.plan, item.days_left) == (
            sim.data_left_mb,
            sim.plan,
            sim.days_left,
        )


def test_views_of_a_fresh_ledger_are_empty(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    page = ledger.sims()
    assert (page.items, page.next_cursor, page.total) == ([], None, 0)
    assert ledger.pending_activity() == [] and ledger.shared_groups() == []
    assert ledger.catch_up_views() == 0
