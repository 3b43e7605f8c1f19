"""Usage records as a batch (R-US1, R-US2): ``record_usage_batch`` on every store.

Each record is counted once (a record_id already counted, by this ledger, another one on the
same store, a concurrent writer, or earlier in the batch, is a duplicate), bad records are
listed apart while the others apply, records apply in time order whatever order they come
in, a pool emptied inside a batch pauses its SIMs once at the record that emptied it, and a
batch is all or nothing (a process killed in the middle leaves none of it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from helpers import (
    COMPANY,
    MSISDN,
    OPERATOR,
    T0,
    FakeClock,
    clean_env,
    event_count,
    iccid,
    iccids,
    lined_sims,
    make_package,
    ready_sim,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simledger import (
    IllegalTransition,
    SimLedger,
    SimStatus,
    SimType,
    SuspendReason,
    UsageRecord,
    UsageResult,
)
from simledger.domain.usage_receipt import UsageReceipt, receipt_id


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # memory, SQLite and PostgreSQL


def rec(
    record_id: str, key: str, mb: float | int | str, minute: int, country: str | None = None
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "iccid": key,
        "mb": mb,
        "at": T0 + timedelta(minutes=minute),
        "country": country,
    }


def batch_for(keys: Sequence[str], prefix: str = "r") -> list[dict[str, Any]]:
    """A batch in time order over ``keys``: 4 records each, 1 minute apart, mixed sizes."""
    out = []
    for n in range(4 * len(keys)):
        key = keys[n % len(keys)]
        out.append(rec(f"{prefix}{n:03d}", key, 5 + (n * 7) % 23, n, "FR" if n % 3 else None))
    return out


def sim_state(ledger: SimLedger, key: str) -> tuple[Any, ...]:
    view = ledger.sim(key)
    return (
        view.status,
        view.data_left_mb,
        view.this_month_mb,
        view.suspended_reason,
        view.system_cause,
        view.version,
    )


def story(ledger: SimLedger, key: str) -> list[tuple[Any, ...]]:
    """The SIM's history without what differs between two equal fleets (times, ids), per
    aggregate in version order (events of two aggregates saved together may share a time)."""
    entries = [
        (h.aggregate, h.event, h.data.get("mb"), h.data.get("at"), h.data.get("cause"))
        for h in ledger.history(key)
    ]
    return sorted(entries, key=lambda entry: entry[0])


def receipts(ledger: SimLedger) -> int:
    topic = "UsageReceipt.Recorded"
    notes = ledger.recorder.select_notifications(start=None, limit=10**9)
    return sum(1 for n in notes if n.topic.endswith(topic))


def two_fleets(ledger: SimLedger, size: int = 3) -> tuple[list[str], list[str]]:
    """Two equal fleets of active SIMs, each with its own 40 MB copy."""
    pkg = make_package(ledger, data_mb=40)
    first = [ready_sim(ledger, n, package_id=pkg) for n in range(size)]
    second = [ready_sim(ledger, 100 + n, package_id=pkg) for n in range(size)]
    return first, second


# ---- R-US1: duplicates ------------------------------------------------------------------------
def test_a_batch_sent_twice_or_shuffled_leaves_the_state_of_one_sent_in_order(
    ledger: SimLedger,
) -> None:
    ordered_keys, shuffled_keys = two_fleets(ledger)
    ordered = batch_for(ordered_keys)
    result = ledger.record_usage_batch(ordered)
    assert result == UsageResult(applied=len(ordered), duplicates=0, rejected={})

    mirror = dict(zip(ordered_keys, shuffled_keys, strict=True))
    shuffled = [
        {**r, "iccid": mirror[r["iccid"]], "record_id": f"s{r['record_id']}"} for r in ordered
    ]
    random.Random(7).shuffle(shuffled)
    first = ledger.record_usage_batch(shuffled)
    assert (first.applied, first.duplicates) == (len(shuffled), 0)
    before = event_count(ledger)
    again = ledger.record_usage_batch(list(reversed(shuffled)))
    assert again == UsageResult(applied=0, duplicates=len(shuffled), rejected={})
    assert event_count(ledger) == before  # a duplicate changes nothing

    for key in ordered_keys:
        assert sim_state(ledger, key) == sim_state(ledger, mirror[key])
        assert story(ledger, key) == story(ledger, mirror[key])
    # the batch emptied some copies and not others, so the comparison covers pauses too
    assert {ledger.sim(k).status for k in ordered_keys} == {
        SimStatus.SUSPENDED,
        SimStatus.ACTIVE,
    }
    assert receipts(ledger) == 2 * len(ordered)
    assert ledger.verify_store().ok
    assert ledger.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}


def test_duplicates_inside_a_batch_count_once_and_the_first_wins(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    records = [
        rec("a", key, 10, 1),
        rec("b", key, 20, 2),
        rec("a", key, 99, 3),
        rec("b", key, 1, 0),
    ]
    result = ledger.record_usage_batch(records)
    assert result == UsageResult(applied=2, duplicates=2, rejected={})
    assert ledger.sim(key).data_left_mb == Decimal(970)
    assert [e for e in story(ledger, key) if e[1] == "UsageRecorded"] == [
        ("Sim", "UsageRecorded", Decimal(10), T0 + timedelta(minutes=1), None),
        ("Sim", "UsageRecorded", Decimal(20), T0 + timedelta(minutes=2), None),
    ]


def test_usage_record_objects_and_iso_times_are_taken_too(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    result = ledger.record_usage_batch(
        [
            UsageRecord("x1", key, Decimal("1.5"), T0, "DE"),
            UsageRecord("x2", key, "2.5", "2026-03-01T10:00:00+01:00"),
            {"record_id": "x3", "iccid": key, "mb": 1, "at": "2026-03-01T10:00:00Z", "extra": 1},
        ]
    )
    assert result == UsageResult(applied=3, duplicates=0, rejected={})
    assert ledger.sim(key).data_left_mb == Decimal(995)


def test_record_usage_with_a_record_id_is_counted_once_and_without_one_every_time(
    ledger: SimLedger,
) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    ledger.record_usage(key, 10, record_id="cdr-1")
    ledger.record_usage(key, 10, record_id="cdr-1")
    assert ledger.record_usage_batch([rec("cdr-1", key, 10, 0)]).duplicates == 1
    ledger.record_usage(key, 10)
    ledger.record_usage(key, 10)
    assert ledger.sim(key).data_left_mb == Decimal(970)
    assert receipts(ledger) == 1  # a generated id can never come again: no receipt


def test_a_record_counted_by_another_ledger_on_the_same_store_is_a_duplicate(
    persistent_store_env: dict[str, str],
) -> None:
    clock = FakeClock()
    first = SimLedger(persistent_store_env, clock=clock)
    key = ready_sim(first, 1, data_mb=1000)
    assert first.record_usage_batch([rec("e1", key, 10, 0), rec("e2", key, 10, 1)]).applied == 2
    first.close()

    reopened = SimLedger(persistent_store_env, clock=clock)
    result = reopened.record_usage_batch([rec("e2", key, 10, 1), rec("e3", key, 10, 2)])
    assert result == UsageResult(applied=1, duplicates=1, rejected={})
    assert reopened.sim(key).data_left_mb == Decimal(970)
    reopened.close()


# ---- rejections ---------------------------------------------------------------------------------
def test_bad_records_are_listed_with_their_rule_and_the_others_apply(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    not_active = ready_sim(ledger, 2, activate=False)
    good = [rec("ok1", key, 10, 0), rec("ok2", key, 5, 9)]
    bad = [
        rec("unknown", iccid(77), 1, 1),
        rec("not-an-iccid", "1234", 1, 1),
        rec("zero", key, 0, 1),
        rec("nan", key, "lots", 1),
        {**rec("naive", key, 1, 1), "at": datetime(2026, 1, 1)},
        {**rec("no-time", key, 1, 1), "at": None},
        {**rec("bad-time", key, 1, 1), "at": "yesterday"},
        rec("inactive", not_active, 1, 1),
        {**rec("", key, 1, 1)},
        {"iccid": key, "mb": 1, "at": T0},
        {**rec("country", key, 1, 1), "country": 44},
    ]
    before = event_count(ledger)
    result = ledger.record_usage_batch([good[0], *bad, good[1]])
    assert result.applied == 2 and result.duplicates == 0
    assert {k: v.split(":")[0] for k, v in result.rejected.items()} == {
        "unknown": "R-SIM1",
        "not-an-iccid": "R-SIM1",
        "zero": "R-PK2",
        "nan": "R-IN2",
        "naive": "R-ES3",
        "no-time": "R-US1",
        "bad-time": "R-US1",
        "inactive": "R-SIM4",
        "#10": "R-US1",
        "#11": "R-US1",
        "country": "R-US1",
    }
    assert ledger.sim(key).data_left_mb == Decimal(985)
    assert event_count(ledger) == before + 2 * 2 + 2  # per record: draw, usage, receipt
    # A rejected record left no receipt: sent again once its SIM takes usage, it counts.
    ledger.activate(not_active)
    assert ledger.record_usage_batch([rec("inactive", not_active, 1, 1)]).applied == 1


def test_record_usage_raises_the_refusal_of_its_one_record(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, activate=False)
    before = event_count(ledger)
    with pytest.raises(IllegalTransition) as refused:
        ledger.record_usage(key, 5, record_id="r-1")
    assert refused.value.rule == "R-SIM4"
    assert event_count(ledger) == before
    ledger.activate(key)
    ledger.record_usage(key, 5, record_id="r-1")  # refused before, so not a duplicate
    assert ledger.sim(key).this_month_mb == Decimal(5)


def test_a_draw_refused_for_one_record_leaves_the_sims_other_records(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, data_mb=1, auto_renew=True)
    result = ledger.record_usage_batch([rec("small", key, 1, 0), rec("huge", key, 5000, 1)])
    assert result.applied == 1
    assert result.rejected["huge"].startswith("R-PK2: ")


# ---- R-US2: order and depletion -----------------------------------------------------------------
def sim_events(ledger: SimLedger, key: str) -> list[tuple[str, Any]]:
    return [
        (h.event, h.data.get("mb") or h.data.get("cause"))
        for h in ledger.history(key)
        if h.aggregate == "Sim" and h.event in ("UsageRecorded", "SuspendedBySystem")
    ]


def test_an_own_copy_emptied_inside_a_batch_pauses_once_at_the_emptying_record(
    ledger: SimLedger,
) -> None:
    key = ready_sim(ledger, 1, data_mb=100)
    records = [
        rec("d", key, 30, 3),
        rec("a", key, 40, 0),
        rec("c", key, 50, 2),
        rec("b", key, 5, 1),
    ]
    result = ledger.record_usage_batch(records)
    assert result.applied == 4
    # in time order: 40, 5, 50 (95 drawn), then 30 empties it (5 drawn): the pause follows it
    assert sim_events(ledger, key) == [
        ("UsageRecorded", Decimal(40)),
        ("UsageRecorded", Decimal(5)),
        ("UsageRecorded", Decimal(50)),
        ("UsageRecorded", Decimal(30)),
        ("SuspendedBySystem", "depleted"),
    ]
    later = ledger.record_usage_batch([rec("e", key, 7, 4), rec("late", key, 3, -60)])
    assert later.applied == 2  # after depletion, and a late one: both still recorded
    assert sim_events(ledger, key)[-2:] == [
        ("UsageRecorded", Decimal(3)),
        ("UsageRecorded", Decimal(7)),
    ]
    view = ledger.sim(key)
    assert (view.status, view.suspended_reason, view.data_left_mb) == (
        SimStatus.SUSPENDED,
        SuspendReason.SYSTEM,
        Decimal(0),
    )
    copy_events = [h.event for h in ledger.history(key) if h.aggregate == "Package"]
    assert copy_events == ["Assigned", *["UsageDrawn"] * 4, "Depleted"]
    # the emptying draw is recorded before its SIM's usage event (sim_as_of reads it so)
    history = ledger.history(key)
    [depleted] = [h for h in history if h.event == "Depleted"]
    [paused] = [h for h in history if h.event == "SuspendedBySystem"]
    [emptying] = [h for h in history if h.event == "UsageRecorded" and h.data["mb"] == 30]
    assert depleted.at <= emptying.at <= paused.at
    assert emptying.version + 1 == paused.version
    assert ledger.verify_store().ok


def test_a_big_batch_emptying_a_copy_pauses_once_and_records_the_rest(
    ledger: SimLedger,
) -> None:
    # 300 records: on PostgreSQL folded under the store's write lock (usage_late.py)
    key = ready_sim(ledger, 1, data_mb=100)
    other = ready_sim(ledger, 2, data_mb=10**6)
    records = [rec(f"b{n:03d}", key if n % 2 else other, 2, n) for n in range(300)]
    random.Random(3).shuffle(records)
    result = ledger.record_usage_batch([*records, records[0]])
    assert (result.applied, result.duplicates, result.rejected) == (300, 1, {})
    events = sim_events(ledger, key)
    # 50 records of 2 MB empty the 100 MB copy: the pause follows the 50th, once
    assert events.index(("SuspendedBySystem", "depleted")) == 50
    assert [e for e in events if e[0] == "UsageRecorded"] == [("UsageRecorded", Decimal(2))] * 150
    assert ledger.sim(other).data_left_mb == 10**6 - 300
    assert receipts(ledger) == 300
    assert ledger.verify_store().ok


def test_a_batch_meeting_another_writers_usage_counts_both_and_each_record_once(
    persistent_store_env: dict[str, str],
) -> None:
    # Another ledger records on the same SIMs (one record the same) after this batch
    # loaded them and before it saves: the batch is folded on the state it left.
    clock = FakeClock()
    ledger = SimLedger(persistent_store_env, clock=clock)
    other = SimLedger(persistent_store_env, clock=clock)
    pkg = make_package(ledger, data_mb=10**6)
    keys = [ready_sim(ledger, n, package_id=pkg) for n in range(3)]
    records = [rec(f"m{n:03d}", keys[n % 3], 1, n) for n in range(150)]
    record = ledger.unit_of_work.record
    sent: list[UsageResult] = []

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not sent:
            sent.append(other.record_usage_batch([records[7], rec("x", keys[1], 50, 500)]))
        return record(*args, **kwargs)

    ledger.unit_of_work.record = meanwhile  # type: ignore[method-assign]
    result = ledger.record_usage_batch(records)
    assert sent[0].applied == 2
    assert (result.applied, result.duplicates) == (149, 1)
    used = [10**6 - (ledger.sim(k).data_left_mb or 0) for k in keys]
    assert used == [50, 50 + 50, 50]
    assert receipts(ledger) == 151
    assert ledger.verify_store().ok
    other.close()
    ledger.close()


def test_a_shared_pool_emptied_inside_a_batch_pauses_every_member_once(
    ledger: SimLedger,
) -> None:
    a, b, c, idle = lined_sims(ledger, 4)
    pkg = make_package(ledger, data_mb=100)
    group = ledger.create_shared_group("team", [a, b, c, idle], pkg)
    for key in (a, b, c):
        ledger.activate(key)
    records = [
        rec("b1", b, 30, 1),
        rec("a1", a, 50, 0),
        rec("a2", a, 40, 2),  # 120 asked of 100: empties the pool
        rec("b2", b, 10, 3),  # after: recorded, nothing drawn
    ]
    result = ledger.record_usage_batch(records)
    assert result == UsageResult(applied=4, duplicates=0, rejected={})
    pool = ledger.shared_group(group)
    assert pool.depleted and pool.data_left_mb == 0
    assert sim_events(ledger, a) == [
        ("UsageRecorded", Decimal(50)),
        ("UsageRecorded", Decimal(40)),
        ("SuspendedBySystem", "depleted"),
    ]
    assert sim_events(ledger, b) == [
        ("UsageRecorded", Decimal(30)),
        ("SuspendedBySystem", "depleted"),
        ("UsageRecorded", Decimal(10)),
    ]
    assert sim_events(ledger, c) == [("SuspendedBySystem", "depleted")]  # no record, paused
    assert ledger.sim(idle).status is SimStatus.ACTIVATION_READY  # never active: not paused
    draws = [
        (type(e).__name__, getattr(e, "iccid", None), getattr(e, "mb", None))
        for e in ledger.events.get(str(group))
        if type(e).__name__ in ("UsageDrawn", "Depleted")
    ]
    assert draws == [
        ("UsageDrawn", a, Decimal(50)),
        ("UsageDrawn", b, Decimal(30)),
        ("UsageDrawn", a, Decimal(20)),
        ("Depleted", None, None),
    ]
    assert ledger.verify_store().ok


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 60), st.integers(0, 20)),
        min_size=1,
        max_size=14,
    ),
    seed=st.integers(0, 2**16),
    repeats=st.integers(1, 3),
)
def test_any_delivery_order_and_repeats_give_the_state_of_one_in_order(
    records: list[tuple[int, int, int]], seed: int, repeats: int
) -> None:
    """Memory store: a fresh pair of ledgers per example."""

    def fleet() -> tuple[SimLedger, list[str]]:
        ledger = SimLedger(clock=FakeClock())
        pkg = make_package(ledger, data_mb=80)
        keys = [ready_sim(ledger, n, package_id=pkg) for n in range(2)]
        keys += lined_sims(ledger, 1, start=10)  # the third SIM draws a shared pool...
        ledger.create_shared_group("pool", keys[2:] + lined_sims(ledger, 1, start=11), pkg)
        ledger.activate(keys[2])
        return ledger, keys

    once, keys = fleet()
    batch = [rec(f"r{n}", keys[s], mb, minute) for n, (s, mb, minute) in enumerate(records)]
    once.record_usage_batch(batch)
    twice, keys2 = fleet()
    assert keys2 == keys
    rng = random.Random(seed)
    for _ in range(repeats):
        shuffled = batch * 2
        rng.shuffle(shuffled)
        twice.record_usage_batch(shuffled)
    for key in keys:
        assert sim_state(once, key) == sim_state(twice, key)
        assert story(once, key) == story(twice, key)


# ---- concurrency and crashes --------------------------------------------------------------------
@pytest.mark.parametrize("overlap", ["half", "all"])
def test_overlapping_batches_of_two_ledgers_at_once_count_each_record_once(
    persistent_store_env: dict[str, str], overlap: str
) -> None:
    clock = FakeClock()
    setup = SimLedger(persistent_store_env, clock=clock)
    pkg = make_package(setup, data_mb=10**6)
    keys = [ready_sim(setup, n, package_id=pkg) for n in range(6)]
    setup.close()
    records = [rec(f"c{n}", keys[n % 6], 1 + n % 5, n) for n in range(300)]
    # "half": 100 records in both; "all": the same batches at the same time, colliding
    halves = [records[:200], records[100:]] if overlap == "half" else [records, records]
    results: list[UsageResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def send(part: list[dict[str, Any]]) -> None:
        ledger = SimLedger(persistent_store_env, clock=clock)
        try:
            start.wait()
            for chunk in range(0, len(part), 50):
                results.append(ledger.record_usage_batch(part[chunk : chunk + 50]))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            ledger.close()

    threads = [threading.Thread(target=send, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sum(r.applied for r in results) == 300
    assert sum(r.duplicates for r in results) == (100 if overlap == "half" else 300)
    check = SimLedger(persistent_store_env, clock=clock)
    total = sum(Decimal(r["mb"]) for r in records)
    assert sum(10**6 - (check.sim(k).data_left_mb or 0) for k in keys) == total
    assert receipts(check) == 300
    check.close()


CHILD = """
import json, sys
from simledger import SimLedger
request = json.loads(sys.stdin.readline())
ledger = SimLedger(request["env"])
insert = ledger.recorder.insert_events
def inserting(*args, **kwargs):
    print("saving", flush=True)  # the parent kills this process from now on
    return insert(*args, **kwargs)
ledger.recorder.insert_events = inserting
ledger.record_usage_batch(request["records"])
print("done", flush=True)
"""


def child(env: dict[str, str], records: list[dict[str, Any]]) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-P", "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps({"env": env, "records": records}, default=str) + "\n")
    process.stdin.close()
    try:
        yield process.stdout.readline().strip()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)


def test_a_process_killed_during_a_big_batch_leaves_all_or_nothing_of_it(
    persistent_store_env: dict[str, str],
) -> None:
    clock = FakeClock()
    setup = SimLedger(persistent_store_env, clock=clock)
    keys = setup.receive_sims(iccids(20, 500), operator=OPERATOR, sim_type=SimType.PREPAID)
    pkg = make_package(setup, data_mb=10**6)
    for key in keys:
        setup.complete_integration_check(key, ok=True)
        setup.assign_line(key, MSISDN)
        setup.assign_to_company(key, COMPANY)
        setup.assign_package(key, pkg)
        setup.activate(key)
    setup.close()
    records = [rec(f"k{n}", keys[n % 20], 1, n) for n in range(4000)]
    for line in child(persistent_store_env, records):
        assert line == "saving"
        time.sleep(random.uniform(0, 0.2))  # somewhere in the save's one transaction
    after = SimLedger(persistent_store_env, clock=clock)
    counted = receipts(after)
    assert counted in (0, 4000)
    used = sum(10**6 - (after.sim(k).data_left_mb or 0) for k in keys)
    assert used == counted
    assert after.verify_store(views=False).ok
    # whatever the crash left, sending the batch again ends with every record counted once
    result = after.record_usage_batch(records)
    assert (result.applied, result.duplicates) == (4000 - counted, counted)
    assert sum(10**6 - (after.sim(k).data_left_mb or 0) for k in keys) == 4000
    after.close()


def test_a_receipt_is_an_aggregate_of_its_own_that_history_and_views_leave_out(
    ledger: SimLedger,
) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    ledger.record_usage_batch([rec("cdr-1", key, 12, 0)])
    receipt: object = ledger.repository.get(receipt_id("cdr-1"))
    assert isinstance(receipt, UsageReceipt)
    assert (receipt.record_id, receipt.iccid, receipt.mb) == ("cdr-1", key, Decimal(12))
    assert receipt.at == T0
    assert UUID(receipt_id("cdr-1")) != UUID(receipt_id("cdr-2"))
    assert {h.aggregate for h in ledger.history(key)} == {"Sim", "Package"}
    assert ledger.sims().total == 1
    report = ledger.verify_store()
    assert report.ok and report.aggregates["UsageReceipt"] == 1


def test_a_single_record_draws_the_copy_the_sim_has_now_not_the_one_remembered(
    persistent_store_env: dict[str, str],
) -> None:
    """A ledger loads a single record's SIM together with the package copy it drew when
    last seen there; another ledger gives the SIM a new package meanwhile (the old one
    used up, R-PK3): the record must draw the new copy."""
    first = SimLedger(env=persistent_store_env, clock=FakeClock())
    other = SimLedger(env=persistent_store_env, clock=FakeClock())
    try:
        key = ready_sim(first, 1, package_id=make_package(first, data_mb=40))
        first.record_usage(key, 5)  # remembered: the SIM draws its 40 MB copy
        other.record_usage(key, 35)  # used up: paused by the system
        other.assign_package(key, make_package(other, data_mb=100))
        first.record_usage(key, 7)
        assert first.sim(key).data_left_mb == 93
        assert other.sim(key).data_left_mb == 93
        first.record_usage(key, 3)  # the new copy remembered now
        assert first.sim(key).data_left_mb == 90
        assert first.verify_store().ok
    finally:
        first.close()
        other.close()
