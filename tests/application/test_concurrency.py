"""Concurrent writers (R-ES1, R-BK6, R-SG1..3): conflicting commands on one SIM or one group.

Every command either applies once or is refused, and the store holds exactly the events the
applied commands imply. A save that collides with another writer's is re-run on fresh state
by the ``command`` wrapper of ``application/unit_of_work.py``; after ``MAX_ATTEMPTS`` collisions it
gives up with ``ConcurrencyConflict`` and records nothing.

Threads share one ``SimLedger`` (memory, sqlite, postgres); the PostgreSQL test at the end
runs two processes, each with its own ``SimLedger`` on the same schema.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError
from helpers import (
    FakeClock,
    event_count,
    lined_sims,
    make_package,
    ready_sim,
)

import simledger.application.unit_of_work as ledger_module
from simledger import (
    AlreadyInSharedGroup,
    ConcurrencyConflict,
    IllegalTransition,
    NoOperationInFlight,
    SimLedger,
    SimledgerError,
    SimStatus,
    SuspendReason,
)

THREAD_TIMEOUT = 60.0


# -------------------------------------------------------------------------- helpers


def run_threads(*work: Callable[[], Any]) -> list[Any]:
    """Run each callable in its own thread, all released at once; their results in order."""
    start = threading.Barrier(len(work), timeout=10)
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def body(n: int, fn: Callable[[], Any]) -> None:
        try:
            start.wait()
            results[n] = fn()
        except BaseException as error:  # reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=body, args=(n, fn)) for n, fn in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@contextlib.contextmanager
def racing_saves(ledger: SimLedger, parties: int = 2) -> Iterator[None]:
    """Hold every thread's first save until ``parties`` threads are about to save: each has
    loaded the same state, so all but one collide and must be re-run on fresh state."""
    barrier = threading.Barrier(parties, timeout=10)
    first_seen: set[int] = set()
    lock = threading.Lock()
    original = ledger.recorder.insert_events

    def record(stored_events: Any, **kwargs: Any) -> Any:
        with lock:
            first = threading.get_ident() not in first_seen
            first_seen.add(threading.get_ident())
        if first:
            barrier.wait()
        return original(stored_events, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger.recorder, "insert_events", record)
        yield


def outcome(call: Callable[[], Any]) -> Callable[[], Any]:
    """A thread body that returns the command's result, or the refusal it raised."""

    def run() -> Any:
        try:
            return call()
        except SimledgerError as refusal:
            return refusal

    return run


def applied(call: Callable[[], Any]) -> bool:
    """Run a command: True when it applied, False when it gave up on a collision
    (``ConcurrencyConflict``, which records nothing). Any other refusal propagates."""
    try:
        call()
    except ConcurrencyConflict as refusal:
        assert refusal.rule == "R-ES1"
        return False
    return True


def conflicts(caplog: pytest.LogCaptureFixture) -> int:
    return sum("command.conflict" in r.getMessage() for r in caplog.records)


def event_names(ledger: SimLedger, aggregate_id: str) -> list[str]:
    return [type(e).__name__ for e in ledger.events.get(aggregate_id)]


def events_of(ledger: SimLedger, aggregate_id: str, name: str) -> list[Any]:
    return [e for e in ledger.events.get(aggregate_id) if type(e).__name__ == name]


def active_group(ledger: SimLedger, n: int, data_mb: int, start: int) -> tuple[UUID, list[str]]:
    keys = lined_sims(ledger, n, start)
    group = ledger.create_shared_group(
        f"pool {start}", keys, make_package(ledger, data_mb=data_mb, name=f"{data_mb} MB")
    )
    for key in keys:
        ledger.activate(key)
    return group, keys


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="simledger")
    return caplog


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # the ledger on every store


# ------------------------------------------------------------------- one SIM, threads


def test_two_threads_setting_notes_on_one_sim_lose_nothing(ledger: SimLedger) -> None:
    """Every note is recorded exactly once, or was refused with ConcurrencyConflict (the
    writer saw it) and is nowhere in the store."""
    key = ready_sim(ledger, 1)
    version, count = ledger.sim(key).version, event_count(ledger)

    def writer(name: str) -> tuple[list[str], list[str]]:
        stored: list[str] = []
        refused: list[str] = []
        for n in range(50):
            note = f"{name}-{n}"
            ok = applied(functools.partial(ledger.set_note, key, note))
            (stored if ok else refused).append(note)
        return stored, refused

    (a_notes, a_refused), (b_notes, b_refused) = run_threads(
        lambda: writer("a"), lambda: writer("b")
    )

    assert len(a_notes + a_refused + b_notes + b_refused) == 100
    # collisions are retried: giving up is the rare exception, not the rule
    assert len(a_notes) + len(b_notes) >= 80, (a_refused, b_refused)
    recorded = [e.note for e in events_of(ledger, key, "NoteSet")]
    assert sorted(recorded) == sorted(a_notes + b_notes)  # each applied note exactly once
    assert [n for n in recorded if n.startswith("a-")] == a_notes  # in each writer's order
    assert [n for n in recorded if n.startswith("b-")] == b_notes
    assert ledger.sim(key).version == version + len(recorded)
    assert event_count(ledger) == count + len(recorded)
    assert ledger.sim(key).note == recorded[-1]


def test_racing_pauses_of_one_sim_one_accepted_one_rejected(
    ledger: SimLedger, caplog_info: pytest.LogCaptureFixture
) -> None:
    """R-BK6: at most one pause in flight, even when two requests load the SIM at once."""
    key = ready_sim(ledger, 1)
    count = event_count(ledger)

    with racing_saves(ledger):
        answers = run_threads(lambda: ledger.pause([key]), lambda: ledger.pause([key]))

    # The loser really collided: re-run, or (PostgreSQL) decided again under the lock.
    collided = sum("bulk.collided" in r.getMessage() for r in caplog_info.records)
    assert conflicts(caplog_info) + collided >= 1
    winners = [a for a in answers if a.accepted == [key]]
    losers = [a for a in answers if key in a.rejected]
    assert len(winners) == 1
    assert len(losers) == 1
    assert losers[0].accepted == []
    assert "R-BK6" in losers[0].rejected[key]
    in_flight = ledger.sim(key).operation_in_flight
    assert in_flight is not None
    assert in_flight["operation_id"] == str(winners[0].operation_id)
    # one PauseRequested on the SIM, and each request recorded its own answer
    assert event_names(ledger, key).count("PauseRequested") == 1
    assert event_count(ledger) == count + 3

    # two copies of the carrier's answer at once: applied once, the other refused
    count = event_count(ledger)
    results = run_threads(
        outcome(lambda: ledger.confirm(winners[0].operation_id, key)),
        outcome(lambda: ledger.confirm(winners[0].operation_id, key)),
    )
    refusals = [r for r in results if isinstance(r, SimledgerError)]
    assert [r for r in results if r is None] == [None]
    assert len(refusals) == 1
    assert isinstance(refusals[0], NoOperationInFlight)
    assert refusals[0].rule == "R-BK3"
    assert event_count(ledger) == count + 1
    view = ledger.sim(key)
    assert view.status is SimStatus.SUSPENDED
    assert view.suspended_reason is SuspendReason.USER


def test_concurrent_pause_requests_and_answers_keep_one_operation_in_flight(
    ledger: SimLedger,
) -> None:
    """Four threads keep requesting pauses of SIMs that two confirmers answer: a SIM never has
    two operations in flight, and every accepted request was answered exactly once."""
    keys = [ready_sim(ledger, n) for n in range(3)]
    count = event_count(ledger)

    def requester() -> tuple[int, int, int]:
        accepted = rejected = requests = 0
        for _ in range(10):
            try:
                answer = ledger.pause(keys)
            except ConcurrencyConflict:
                continue  # given up: nothing recorded
            requests += 1
            accepted += len(answer.accepted)
            rejected += len(answer.rejected)
            for key in answer.accepted:
                ledger.confirm(answer.operation_id, key, ok=False, reason="busy")
        return accepted, rejected, requests

    tallies = run_threads(requester, requester, requester)
    accepted = sum(t[0] for t in tallies)
    rejected = sum(t[1] for t in tallies)
    requests = sum(t[2] for t in tallies)
    assert accepted + rejected == requests * len(keys)
    assert accepted >= len(keys)  # the first request for each SIM cannot be refused
    requested = sum(event_names(ledger, k).count("PauseRequested") for k in keys)
    refused = sum(event_names(ledger, k).count("PauseRefused") for k in keys)
    assert requested == refused == accepted
    for key in keys:  # in each SIM's own history requests and answers alternate
        trail = [n for n in event_names(ledger, key) if n in ("PauseRequested", "PauseRefused")]
        assert trail == ["PauseRequested", "PauseRefused"] * (len(trail) // 2)
        assert ledger.sim(key).operation_in_flight is None
        assert ledger.sim(key).status is SimStatus.ACTIVE
    assert event_count(ledger) == count + requests + 2 * accepted


# --------------------------------------------------------------- one group, threads


def test_racing_usage_on_a_shared_pool_never_overdraws(ledger: SimLedger) -> None:
    """R-SG1: two members draw the one pool at once; total drawn = min(usage, allowance)."""
    group, (a, b, idle) = active_group(ledger, 3, data_mb=100, start=10)
    count = event_count(ledger)

    def user(key: str) -> int:
        return sum(applied(lambda: ledger.record_usage(key, 3)) for _ in range(25))

    a_calls, b_calls = run_threads(lambda: user(a), lambda: user(b))
    calls = a_calls + b_calls
    assert calls >= 34  # enough usage to drain the pool

    pool = ledger.shared_group(group)
    drawn = events_of(ledger, str(group), "UsageDrawn")
    total_usage = Decimal(3 * calls)
    assert pool.data_left_mb == 0
    assert sum(e.mb for e in drawn) == min(total_usage, pool.data_mb) == 100
    assert len(drawn) == 34  # 33 draws of 3 MB, then the last 1 MB
    assert sorted(e.mb for e in drawn)[0] == 1
    assert all(e.iccid in (a, b) for e in drawn)
    assert event_names(ledger, str(group)).count("Depleted") == 1
    assert pool.depleted and not pool.locked
    # every applied usage record of each member is kept, even after depletion
    assert len(events_of(ledger, a, "UsageRecorded")) == a_calls
    assert len(events_of(ledger, b, "UsageRecorded")) == b_calls
    for key in (a, b, idle):  # each member paused by the system exactly once
        assert event_names(ledger, key).count("SuspendedBySystem") == 1
        assert ledger.sim(key).suspended_reason is SuspendReason.SYSTEM
    assert event_count(ledger) == count + calls + len(drawn) + 1 + 3


def test_racing_additions_to_one_group_both_apply(
    ledger: SimLedger, caplog_info: pytest.LogCaptureFixture
) -> None:
    group, members = active_group(ledger, 1, data_mb=10, start=10)
    ledger.record_usage(members[0], 10)  # depleted: the group is open again (R-SG3)
    x, y = lined_sims(ledger, 2, start=20)
    count, version = event_count(ledger), ledger.shared_group(group).version

    with racing_saves(ledger):
        run_threads(
            lambda: ledger.add_to_shared_group(group, x),
            lambda: ledger.add_to_shared_group(group, y),
        )

    assert conflicts(caplog_info) >= 1
    view = ledger.shared_group(group)
    assert sorted(view.members) == sorted([members[0], x, y])
    assert view.version == version + 2
    assert sorted(e.iccid for e in events_of(ledger, str(group), "MemberAdded")) == sorted([x, y])
    for key in (x, y):
        assert ledger.sim(key).group_id == group
    assert event_count(ledger) == count + 4  # MemberAdded and PackageShared for each


def test_one_sim_added_to_two_groups_at_once_joins_only_one(
    ledger: SimLedger, caplog_info: pytest.LogCaptureFixture
) -> None:
    """R-SG2: a SIM belongs to at most one shared group, also under a race."""
    groups: list[UUID] = []
    for start in (10, 12):
        group, members = active_group(ledger, 1, data_mb=10, start=start)
        ledger.record_usage(members[0], 10)
        groups.append(group)
    [x] = lined_sims(ledger, 1, start=20)
    count = event_count(ledger)
    before = {g: ledger.shared_group(g) for g in groups}

    with racing_saves(ledger):
        results = run_threads(
            outcome(lambda: ledger.add_to_shared_group(groups[0], x)),
            outcome(lambda: ledger.add_to_shared_group(groups[1], x)),
        )

    assert conflicts(caplog_info) >= 1
    refusals = [r for r in results if isinstance(r, SimledgerError)]
    assert len(refusals) == 1
    assert isinstance(refusals[0], AlreadyInSharedGroup)
    assert refusals[0].rule == "R-SG2"
    winner = groups[results.index(None)]
    loser = groups[1 - results.index(None)]
    assert ledger.sim(x).group_id == winner
    assert x in ledger.shared_group(winner).members
    assert ledger.shared_group(loser) == before[loser]
    assert event_count(ledger) == count + 2


# ------------------------------------------------------------------ the retry wrapper


def test_a_collision_reruns_the_command_on_fresh_state(ledger: SimLedger) -> None:
    """A pause whose first save collides with a system suspension is decided again on the
    SIM as it now is: suspended, so the pause is refused for it (R-SIM4)."""
    key = ready_sim(ledger, 1)
    original = ledger.recorder.insert_events
    calls: list[int] = []

    def record(stored_events: Any, **kwargs: Any) -> Any:
        calls.append(len(stored_events))
        if len(calls) == 1:  # another writer gets in between load and save
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ledger.recorder, "insert_events", original)
                ledger.suspend_by_system(key, "operator action")
        return original(stored_events, **kwargs)

    count = event_count(ledger)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger.recorder, "insert_events", record)
        answer = ledger.pause([key])

    assert len(calls) == 2
    assert answer.accepted == []
    assert "R-SIM4" in answer.rejected[key]
    assert IllegalTransition.rule == "R-SIM4"
    assert event_names(ledger, key)[-1] == "SuspendedBySystem"
    assert "PauseRequested" not in event_names(ledger, key)
    assert event_count(ledger) == count + 2  # the suspension and the (re-run) request


def test_exhausted_retries_raise_concurrency_conflict_and_record_nothing(
    ledger: SimLedger, monkeypatch: pytest.MonkeyPatch, caplog_info: pytest.LogCaptureFixture
) -> None:
    key = ready_sim(ledger, 1)
    before = ledger.sim(key)
    count = event_count(ledger)
    attempts: list[int] = []

    def always_collide(stored_events: Any, **kwargs: Any) -> Any:
        attempts.append(len(stored_events))
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(ledger_module.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(ledger.recorder, "insert_events", always_collide)
    with pytest.raises(ConcurrencyConflict) as info:
        ledger.set_note(key, "never stored")
    with pytest.raises(ConcurrencyConflict):
        ledger.pause([key])
    monkeypatch.undo()

    assert info.value.rule == "R-ES1"
    assert isinstance(info.value.__cause__, IntegrityError)
    # A pause on PostgreSQL tries each run twice: as decided, then under the lock.
    per_pause = 2 if ledger.unit_of_work.decides_late else 1
    assert len(attempts) == (1 + per_pause) * ledger_module.MAX_ATTEMPTS
    assert conflicts(caplog_info) == 2 * ledger_module.MAX_ATTEMPTS
    assert event_count(ledger) == count
    assert ledger.sim(key) == before
    assert ledger.sim(key).operation_in_flight is None
    # the ledger works normally again once the collisions stop
    ledger.set_note(key, "stored")
    assert ledger.sim(key).note == "stored"


# ----------------------------------------------------------- PostgreSQL, two processes


NOTES_PER_PROCESS = 40
USAGE_CALLS_PER_PROCESS = 20
USAGE_MB = 3
POOL_MB = 100

_SPAWNED = """
import importlib.util
spec = importlib.util.spec_from_file_location("simledger_concurrency_worker", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.process_worker(**kwargs)
"""


def process_worker(
    env: dict[str, str],
    name: str,
    noted: str,
    member: str,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Run in a spawned process: its own SimLedger on the shared schema."""
    try:
        ledger = SimLedger(env)
        ready.set()
        go.wait(30)
        notes: list[str] = []
        tally: Counter[str] = Counter()
        for n in range(NOTES_PER_PROCESS):
            note = f"{name}-{n}"
            if applied(functools.partial(ledger.set_note, noted, note)):
                notes.append(note)
            else:
                tally["notes refused"] += 1
        for _ in range(USAGE_CALLS_PER_PROCESS):
            ok = applied(lambda: ledger.record_usage(member, USAGE_MB))
            tally["usage" if ok else "usage refused"] += 1
        ledger.close()
        results.put((name, notes, dict(tally), None))
    except BaseException as error:
        results.put((name, [], {}, repr(error)))


@pytest.mark.postgres
def test_two_processes_on_one_postgres_schema(postgres_env: dict[str, str]) -> None:
    ledger = SimLedger(postgres_env, clock=FakeClock())
    noted = ready_sim(ledger, 1)
    group, members = active_group(ledger, 2, data_mb=POOL_MB, start=10)
    version, count = ledger.sim(noted).version, event_count(ledger)

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in members]
    processes = [
        ctx.Process(
            target=exec,
            args=(
                _SPAWNED,
                {
                    "path": __file__,
                    "kwargs": {
                        "env": postgres_env,
                        "name": f"p{n}",
                        "noted": noted,
                        "member": member,
                        "ready": readies[n],
                        "go": go,
                        "results": results,
                    },
                },
            ),
        )
        for n, member in enumerate(members)
    ]
    for process in processes:
        process.start()
    try:
        for ready in readies:
            assert ready.wait(60), "a worker process did not start"
        go.set()
        reports = []
        for _ in processes:
            try:
                reports.append(results.get(timeout=60))
            except queue.Empty:
                pytest.fail("a worker process did not report")
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    reports.sort()
    assert [error for *_, error in reports] == [None, None]
    applied_notes = {name: notes for name, notes, _, _ in reports}
    tallies = {name: tally for name, _, tally, _ in reports}
    for name, tally in tallies.items():
        assert len(applied_notes[name]) + tally.get("notes refused", 0) == NOTES_PER_PROCESS
        assert tally.get("usage", 0) + tally.get("usage refused", 0) == USAGE_CALLS_PER_PROCESS
    usage_calls = [tallies[f"p{n}"].get("usage", 0) for n in range(len(members))]

    notes = [e.note for e in events_of(ledger, noted, "NoteSet")]
    n_notes = sum(len(v) for v in applied_notes.values())
    assert n_notes >= NOTES_PER_PROCESS  # collisions are retried; giving up is rare
    assert ledger.sim(noted).version == version + n_notes
    for name, stored in applied_notes.items():  # each applied note once, in order
        assert [n for n in notes if n.startswith(f"{name}-")] == stored
    pool = ledger.shared_group(group)
    drawn = events_of(ledger, str(group), "UsageDrawn")
    total_usage = sum(usage_calls) * USAGE_MB
    assert total_usage > POOL_MB
    assert sum(e.mb for e in drawn) == min(total_usage, POOL_MB)
    assert len(drawn) == -(-POOL_MB // USAGE_MB)  # ceil: the last draw takes what is left
    assert pool.data_left_mb == 0
    assert event_names(ledger, str(group)).count("Depleted") == 1
    for member, calls in zip(members, usage_calls, strict=True):
        assert len(events_of(ledger, member, "UsageRecorded")) == calls
        assert event_names(ledger, member).count("SuspendedBySystem") == 1
    assert event_count(ledger) == (count + n_notes + sum(usage_calls) + len(drawn) + 1 + 2)
    ledger.close()
