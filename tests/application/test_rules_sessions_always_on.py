"""In session (R-SS1..2) and Always On (R-AO1..2) of docs/rules.md: a refusal test per rule,
the SIM list's ``in_session`` and ``always_on`` columns on every store, and the records
counted once however often they are delivered.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from helpers import FakeClock, active_sims, event_count, iccids, lined_sims, make_package

from simledger import (
    AlreadyInSharedGroup,
    InvalidInput,
    SimLedger,
    SimStatus,
    SuspendReason,
    UnknownSim,
)


def row(ledger: SimLedger, iccid: str) -> Any:
    [item] = [i for i in ledger.sims(limit=1000).items if i.iccid == iccid]
    return item


def record(record_id: str, iccid: str, kind: str, at: Any) -> dict[str, Any]:
    return {"record_id": record_id, "iccid": iccid, "kind": kind, "at": at}


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env


def test_session_records_set_in_session_latest_first_counted_once(
    ledger: SimLedger, clock: FakeClock
) -> None:
    a, b = active_sims(ledger, 2)
    t = clock()
    assert row(ledger, a).in_session == "n/a"  # no session reported yet (R-SS2)
    result = ledger.record_sessions(
        [
            record("s-2", a, "session_ended", t + timedelta(minutes=5)),
            record("s-1", a, "session_started", t),
            record("s-1", a, "session_started", t),  # delivered twice in one batch
            record("s-3", b, "started", t),
        ]
    )
    assert (result.applied, result.duplicates, result.rejected) == (3, 1, {})
    assert (row(ledger, a).in_session, row(ledger, b).in_session) == ("no", "yes")
    before = event_count(ledger)
    again = ledger.record_sessions([record("s-3", b, "ended", t + timedelta(hours=1))])
    assert (again.applied, again.duplicates) == (0, 1) and event_count(ledger) == before
    # A late record older than the SIM's latest is recorded and changes nothing.
    assert ledger.record_session("s-0", a, "started", at=t - timedelta(minutes=1))
    assert row(ledger, a).in_session == "no"
    assert ledger.record_session("s-4", a, "started", at=t + timedelta(minutes=6))
    assert row(ledger, a).in_session == "yes"
    assert not ledger.record_session("s-4", a, "started", at=t + timedelta(minutes=6))
    last = ledger.history(a)[-1]
    assert (last.event, last.aggregate, last.data["current"]) == ("SessionStarted", "Sim", True)
    assert [i.iccid for i in ledger.sims(sort="in_session").items] == [a, b]
    assert ledger.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}


def test_always_on_is_set_cleared_recorded_and_listed(ledger: SimLedger) -> None:
    a, b = active_sims(ledger, 2)
    ledger.set_always_on(a, True)
    assert (row(ledger, a).always_on, row(ledger, b).always_on) == (True, False)
    assert [i.iccid for i in ledger.sims(sort="always_on", descending=True).items] == [a, b]
    ledger.set_always_on(a, False)
    assert not row(ledger, a).always_on
    entries = [(e.event, e.aggregate) for e in ledger.history(a)]
    assert entries.count(("AlwaysOnSet", "Sim")) == 2
    ledger.set_always_on(b, True)
    assert ledger.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}


# ---- refusals and meaning, in memory -----------------------------------------------------------


@pytest.fixture
def mem() -> SimLedger:
    return SimLedger(clock=FakeClock(), operators_without_integration=["NoInt"])


def test_r_ss1_bad_records_are_listed_apart_and_leave_no_receipt(mem: SimLedger) -> None:
    [a] = active_sims(mem, 1)
    [n] = mem.receive_sims(iccids(1, 50), operator="NoInt", sim_type="prepaid")
    assert mem.sim(n).status is SimStatus.NOT_AVAILABLE
    now = mem.clock()
    before = event_count(mem)
    result = mem.record_sessions(
        [
            {"iccid": a, "kind": "started", "at": now},
            record("k", a, "paused", now),
            record("t", a, "started", "yesterday"),
            record("z", a, "started", now.replace(tzinfo=None)),
            record("u", iccids(1, 99)[0], "started", now),
            record("n", n, "started", now),
        ]
    )
    assert result.applied == 0 and event_count(mem) == before
    assert set(result.rejected) == {"#1", "k", "t", "z", "u", "n"}
    assert "R-SS1" in result.rejected["n"] and "R-SS1" in result.rejected["k"]
    with pytest.raises(InvalidInput) as info:
        mem.record_session("n", n, "started", at=now)
    assert info.value.rule == "R-SS1"
    with pytest.raises(UnknownSim):
        mem.record_session("u", iccids(1, 99)[0], "started", at=now)
    assert event_count(mem) == before
    assert mem.record_session("n", a, "started", at=now)  # fixed, then counted


def test_r_ao1_setting_it_as_it_is_is_refused(mem: SimLedger) -> None:
    [a] = active_sims(mem, 1)
    before = event_count(mem)
    text: Any = "yes"  # not a flag (R-IN4)
    for call in (lambda: mem.set_always_on(a, False), lambda: mem.set_always_on(a, text)):
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.rule in ("R-AO1", "R-IN4")
    assert event_count(mem) == before
    with pytest.raises(UnknownSim):
        mem.set_always_on(iccids(1, 99)[0], True)


def test_r_ao2_an_always_on_sim_is_not_paused_when_its_package_runs_out(ledger: SimLedger) -> None:
    mem = ledger
    a, b = active_sims(mem, 2)
    mem.set_always_on(a, True)
    mem.record_usage(a, 5000)
    mem.record_usage(b, 5000)
    assert mem.sim(a).status is SimStatus.ACTIVE  # its data keeps working
    assert mem.sim(b).suspended_reason is SuspendReason.SYSTEM
    mem.record_usage(a, 7)  # usage past the package: recorded, drawn from nothing
    assert mem.sim(a).this_month_mb == 5007 and mem.sim(a).data_left_mb == 0


def test_r_sg2_an_always_on_sim_joins_a_shared_group_but_not_with_a_package(
    ledger: SimLedger,
) -> None:
    mem = ledger  # every store: on PostgreSQL a member's draw is decided late (pool_draw.py)
    keys = lined_sims(mem, 2, start=10)
    for key in keys:
        mem.set_always_on(key, True)
    package = make_package(mem)
    group = mem.create_shared_group("pool", keys, package)
    assert mem.shared_group(group).members == keys
    assert all(mem.sim(k).group_id == group for k in keys)
    for key in keys:
        mem.activate(key)
    [c] = active_sims(mem, 1, start=20)  # an active package: still refused (R-SG2)
    mem.set_always_on(c, True)
    with pytest.raises(Exception) as info:
        mem.create_shared_group("other", [c], package)
    assert getattr(info.value, "rule", None) == "R-SG2"
    assert not isinstance(info.value, AlreadyInSharedGroup)
    mem.record_usage(keys[0], 2000)  # the pool runs out: Always On members keep working
    assert mem.shared_group(group).depleted
    assert {mem.sim(k).status for k in keys} == {SimStatus.ACTIVE}


def test_everything_is_there_after_reopening_the_store(
    persistent_store_env: dict[str, str],
) -> None:
    """Snapshots (every 5th SIM event) keep the new attributes; the receipts keep counting
    a session record once across ledgers; the views of a reopened store are the same."""
    first = SimLedger(persistent_store_env, clock=FakeClock())
    a, b = active_sims(first, 2)
    group = first.create_group("north", [a, b])
    first.set_always_on(a, True)
    for n in range(6):  # past a snapshot of the SIM
        first.set_note(a, f"note {n}")
    at = first.clock()
    assert first.record_session("s1", a, "started", at=at)
    listed = first.sims(limit=100).items
    first.close()
    again = SimLedger(persistent_store_env, clock=FakeClock())
    try:
        assert again.sims(limit=100).items == listed
        view = again.sim(a)
        assert (view.always_on, view.in_session) == (True, "yes")
        assert not again.record_session("s1", a, "ended", at=at)
        assert again.regular_group(group).members == [a, b]
        again.set_always_on(a, False)
        assert not again.sim(a).always_on
    finally:
        again.close()
