"""Regular groups: R-SG5 and R-RG1..3 of docs/rules.md, a refusal test per rule, and the SIM
list's ``regular_groups`` column and filter on every store (memory, SQLite, PostgreSQL).

Every refusal is checked for its error class, its ``.rule`` and that it recorded nothing.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest
from helpers import FakeClock, iccids, refused

from simledger import (
    InvalidInput,
    RegularGroupMembership,
    SimLedger,
    UnknownRegularGroup,
    UnknownSim,
)


def sims(ledger: SimLedger, n: int, *, start: int = 0, company: str | None = None) -> list[str]:
    keys = ledger.receive_sims(iccids(n, start), operator="3UK", sim_type="prepaid")
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
        if company is not None:
            ledger.assign_to_company(key, company)
    return keys


def groups_of(ledger: SimLedger) -> dict[str, list[UUID]]:
    return {item.iccid: item.regular_groups for item in ledger.sims(limit=1000).items}


def in_group(ledger: SimLedger, group: UUID) -> list[str]:
    page = ledger.sims(regular_group_id=group, limit=1000)
    assert page.total == len(page.items)
    return [item.iccid for item in page.items]


# ---- R-SG5 / R-RG1..3 on every store ---------------------------------------------------------


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env


def test_a_sim_may_be_in_several_groups_and_the_sim_list_shows_and_filters_them(
    ledger: SimLedger,
) -> None:
    a, b, c = sims(ledger, 3)
    north = ledger.create_group("north", [a, b])
    trucks = ledger.create_group("trucks", [b])
    ledger.add_to_group(trucks, [c])
    assert groups_of(ledger) == {a: [north], b: [north, trucks], c: [trucks]}
    assert in_group(ledger, north) == [a, b]
    assert in_group(ledger, trucks) == [b, c]
    # Filters combine with the others, and with paging.
    assert ledger.sims(regular_group_id=trucks, search=c[:-2]).total == 2
    first = ledger.sims(regular_group_id=trucks, limit=1)
    assert first.total == 2 and first.next_cursor is not None
    rest = ledger.sims(regular_group_id=trucks, limit=1, cursor=first.next_cursor)
    assert [i.iccid for i in first.items + rest.items] == [b, c]
    ledger.remove_from_group(north, [b])
    assert groups_of(ledger)[b] == [trucks]
    assert ledger.regular_group(north).members == [a]


def test_a_group_is_renamed_at_any_time_and_its_sims_keep_it(ledger: SimLedger) -> None:
    [a] = sims(ledger, 1)
    group = ledger.create_group("north", [a])
    ledger.rename_group(group, "north-east")
    view = ledger.regular_group(group)
    assert (view.name, view.members, view.deleted) == ("north-east", [a], False)
    assert groups_of(ledger)[a] == [group]


def test_deleting_a_group_never_deletes_its_sims(ledger: SimLedger) -> None:
    a, b = sims(ledger, 2)
    group = ledger.create_group("north", [a, b])
    other = ledger.create_group("south", [b])
    ledger.delete_group(group)
    assert ledger.regular_group(group).deleted
    assert groups_of(ledger) == {a: [], b: [other]}
    assert ledger.sims().total == 2
    assert in_group(ledger, group) == []
    refused(ledger, UnknownRegularGroup, "R-RG1", ledger.add_to_group, group, [a])


def test_deleting_with_move_to_moves_the_sims_and_leaves_the_group_empty(
    ledger: SimLedger,
) -> None:
    a, b, c = sims(ledger, 3)
    group = ledger.create_group("north", [a, b])
    target = ledger.create_group("south", [b, c])
    ledger.delete_group(group, move_to=target)
    moved, kept = ledger.regular_group(group), ledger.regular_group(target)
    assert (moved.members, moved.deleted) == ([], False)
    assert kept.members == [b, c, a]  # b was there already: once
    assert groups_of(ledger) == {a: [target], b: [target], c: [target]}
    assert in_group(ledger, target) == [a, b, c]
    ledger.add_to_group(group, [a])  # the emptied group is still there
    assert groups_of(ledger)[a] == [target, group]


def test_the_views_rebuilt_from_the_log_equal_the_live_ones(ledger: SimLedger) -> None:
    a, b, c = sims(ledger, 3)
    one = ledger.create_group("one", [a, b])
    two = ledger.create_group("two", [c])
    ledger.delete_group(one, move_to=two)
    ledger.add_to_group(one, [b])
    three = ledger.create_group("three", [a])
    ledger.delete_group(three)
    live = groups_of(ledger)
    assert ledger.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}
    ledger.rebuild_views()
    assert groups_of(ledger) == live == {a: [two], b: [two, one], c: [two]}


# ---- refusals, one per rule (in memory) ------------------------------------------------------


@pytest.fixture
def mem() -> SimLedger:
    return SimLedger(clock=FakeClock())


def test_r_rg1_a_group_needs_a_name_and_must_exist(mem: SimLedger) -> None:
    [a] = sims(mem, 1)
    refused(mem, InvalidInput, "R-RG1", mem.create_group, "  ", [a])
    group = mem.create_group("north")
    refused(mem, InvalidInput, "R-RG1", mem.rename_group, group, "")
    refused(mem, InvalidInput, "R-RG1", mem.rename_group, group, "north")
    refused(mem, UnknownRegularGroup, "R-RG1", mem.rename_group, uuid.uuid4(), "x")
    refused(mem, UnknownRegularGroup, "R-RG1", mem.regular_group, "not-a-uuid")
    refused(mem, InvalidInput, "R-RG1", mem.sims, regular_group_id="not-a-uuid")
    mem.delete_group(group)
    refused(mem, UnknownRegularGroup, "R-RG1", mem.delete_group, group)
    refused(mem, UnknownRegularGroup, "R-RG1", mem.rename_group, group, "y")


def test_r_rg2_membership_refusals_record_nothing(mem: SimLedger) -> None:
    a, b = sims(mem, 2, company="acme")
    [c] = sims(mem, 1, start=5, company="other")
    group = mem.create_group("north", [a])
    refused(mem, RegularGroupMembership, "R-RG2", mem.add_to_group, group, [b, a])
    refused(mem, RegularGroupMembership, "R-RG2", mem.remove_from_group, group, [b])
    refused(mem, InvalidInput, "R-RG2", mem.add_to_group, group, [])
    refused(mem, UnknownSim, "R-SIM1", mem.add_to_group, group, iccids(1, 99))
    own = mem.create_group("acme only", [a], company="acme")
    refused(mem, RegularGroupMembership, "R-RG2", mem.add_to_group, own, [c])
    refused(mem, RegularGroupMembership, "R-RG2", mem.create_group, "x", [c], company="acme")
    assert mem.regular_group(group).members == [a]


def test_r_rg3_move_to_refusals_record_nothing(mem: SimLedger) -> None:
    [a] = sims(mem, 1, company="acme")
    group = mem.create_group("north", [a])
    refused(mem, InvalidInput, "R-RG3", mem.delete_group, group, move_to=group)
    refused(mem, UnknownRegularGroup, "R-RG1", mem.delete_group, group, move_to=uuid.uuid4())
    theirs = mem.create_group("theirs", [], company="other")
    refused(mem, RegularGroupMembership, "R-RG2", mem.delete_group, group, move_to=theirs)
    assert mem.regular_group(group).members == [a]
