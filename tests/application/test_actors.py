"""Who caused each event (R-KY3): the actor a ledger names (``SimLedger(actor=…)``,
``acting_as``) is recorded with every event a call causes — single commands, bulk
operations, usage batches, decisions made late under the store's write lock — inside the
event's chain hash, and shown by ``history`` and the audit log. Events without an actor are
stored and hashed as before; a changed actor is tampering to ``verify``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from helpers import T0, FakeClock, lined_sims, make_package, ready_sim, run_sql
from hypothesis import given, settings
from hypothesis import strategies as st

from simledger import SimLedger
from simledger.application.audit_log import audit_records
from simledger.application.bulk_late import BulkDecision
from simledger.application.commands.pool_draw import PoolDraw
from simledger.application.commands.usage_late import LATE_FROM, UsageLate
from simledger.domain.actor import Actor

ALICE = Actor("key_a11ce0000000", "alice's app")
BOB = Actor("key_b0b000000000", "bob's app")


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # memory, SQLite and PostgreSQL


def actors_after(ledger: SimLedger, position: int) -> list[tuple[str, Actor | None]]:
    """(event, actor) of each event of the log after ``position``, from the audit log (its
    ``actor``: ``{"id", "name"}`` or None)."""
    found = []
    for record in audit_records(ledger):
        if record["position"] > position:
            actor = record["actor"]
            assert actor is None or set(actor) == {"id", "name"}
            found.append((record["event"], None if actor is None else Actor(**actor)))
    return found


def postgres(ledger: SimLedger) -> bool:
    """Whether the ledger's store decides late (PostgreSQL's recorder does)."""
    return ledger.unit_of_work.decides_late


def head(ledger: SimLedger) -> int:
    return ledger.recorder.max_notification_id() or 0


def stored(actor: Actor | None) -> dict[str, str] | None:
    return None if actor is None else {"id": actor.id, "name": actor.name}


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each late decision ran (the originals run: only counted)."""
    runs: dict[str, int] = {}
    for cls in (BulkDecision, UsageLate, PoolDraw):
        original = cls.decide

        def counted(self: Any, newer: Any, _o: Any = original, _n: str = cls.__name__) -> Any:
            runs[_n] = runs.get(_n, 0) + 1
            return _o(self, newer)

        monkeypatch.setattr(cls, "decide", counted)
    return runs


def test_single_commands_record_the_ledgers_actor_or_the_one_acted_as(
    ledger: SimLedger,
) -> None:
    ledger.actor = ALICE
    key = ready_sim(ledger)
    made = head(ledger)
    with ledger.acting_as(BOB):
        ledger.set_note(key, "by bob")
        with ledger.acting_as(None):
            ledger.set_labels(key, ["nobody"])
        ledger.set_end_user(key, "eve@example.com")
    ledger.set_note(key, "by alice")
    assert actors_after(ledger, made) == [
        ("NoteSet", BOB),
        ("LabelsSet", None),
        ("EndUserSet", BOB),
        ("NoteSet", ALICE),
    ]
    history = ledger.history(key)
    assert {e.actor for e in history[:-4]} == {ALICE}
    assert [e.actor for e in history[-4:]] == [BOB, None, BOB, ALICE]
    assert all("actor" not in e.data for e in history)  # beside the event's data, not in it
    assert ledger.verify_store().ok


def test_a_ledger_without_an_actor_records_none_and_stores_no_actor_field(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(persistent_store_env, clock=FakeClock())
    try:
        key = ready_sim(ledger)
        assert {e.actor for e in ledger.history(key)} == {None}
        assert {r["actor"] for r in audit_records(ledger)} == {None}
    finally:
        ledger.close()
    states = [
        json.loads(bytes(s)) for (s,) in run_sql(persistent_store_env, "SELECT state FROM {table}")
    ]
    assert states and all("actor" not in state for state in states)  # bytes as before


@pytest.fixture
def two(persistent_store_env: dict[str, str]) -> Iterator[tuple[SimLedger, SimLedger]]:
    """Two ledgers (two processes, as it were) on one durable store, on one clock."""
    clock = FakeClock()
    one = SimLedger(persistent_store_env, clock=clock)
    other = SimLedger(persistent_store_env, clock=clock)
    yield one, other
    one.close()
    other.close()


def test_a_bulk_pause_its_late_decision_and_the_carriers_answers_record_their_actors(
    two: tuple[SimLedger, SimLedger], spied: dict[str, int]
) -> None:
    one, other = two
    one.actor = ALICE
    keys = [ready_sim(one, n) for n in range(3)]
    other.set_note(keys[1], "changed elsewhere")  # one's cached copy is now stale
    before = head(one)
    with one.acting_as(BOB):
        result = one.pause(keys)
    if postgres(one):  # decided again under the store's write lock
        assert spied.get("BulkDecision") == 1
    assert result.accepted == keys
    paused = actors_after(one, before)
    assert paused and {actor for _, actor in paused} == {BOB}
    answered = head(one)
    one.confirm_many(result.operation_id, [(k, True) for k in keys])  # as the forwarder
    confirmed = actors_after(one, answered)
    assert [e for e, _ in confirmed].count("Paused") == 3
    assert {actor for _, actor in confirmed} == {ALICE}
    assert one.verify_store().ok


def test_usage_batches_and_pool_draws_decided_late_record_the_actor(
    two: tuple[SimLedger, SimLedger], spied: dict[str, int]
) -> None:
    one, other = two
    a, b = lined_sims(one, 2)
    one.create_shared_group("team", [a, b], make_package(one, data_mb=1000))
    one.activate(a)
    one.activate(b)
    own = ready_sim(one, 5, data_mb=100_000)
    other.record_usage(own, 1, at=T0 + timedelta(minutes=1))  # one's copy is stale
    before = head(one)
    batch = [
        {"record_id": f"r{n}", "iccid": own, "mb": 5, "at": T0 + timedelta(minutes=2 + n)}
        for n in range(LATE_FROM)
    ]
    with one.acting_as(BOB):
        one.record_usage(a, 10, at=T0 + timedelta(minutes=2))  # a draw on the pool
        result = one.record_usage_batch(batch)
    assert result.applied == LATE_FROM and not result.rejected
    if postgres(one):  # decided under the store's write lock
        assert spied.get("PoolDraw") == 1 and spied.get("UsageLate") == 1
    recorded = actors_after(one, before)
    assert {"UsageDrawn", "UsageRecorded"} <= {e for e, _ in recorded}
    assert {actor for _, actor in recorded} == {BOB}
    assert one.verify_store().ok


def test_two_threads_acting_as_two_actors_at_once_each_record_their_own(
    ledger: SimLedger,
) -> None:
    keys = [ready_sim(ledger, n) for n in range(2)]
    before = head(ledger)
    turns = threading.Barrier(2)
    failures: list[BaseException] = []

    def work(actor: Actor, key: str) -> None:
        try:
            with ledger.acting_as(actor):
                for n in range(6):
                    turns.wait(timeout=30)  # both threads inside acting_as, step by step
                    ledger.set_note(key, f"{actor.name} {n}")
                    assert ledger.current_actor == actor
        except BaseException as error:  # reported by the main thread
            failures.append(error)
            turns.abort()

    threads = [
        threading.Thread(target=work, args=(actor, key))
        for actor, key in zip((ALICE, BOB), keys, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    for actor, key in zip((ALICE, BOB), keys, strict=True):
        notes = [e for e in ledger.history(key) if e.event == "NoteSet"]
        assert len(notes) == 6
        assert {e.actor for e in notes} == {actor}
        assert all(e.data["note"].startswith(actor.name) for e in notes)
    assert ledger.current_actor is None  # this thread named nobody
    assert len(actors_after(ledger, before)) == 12


def test_asyncio_tasks_each_keep_their_own_actor(ledger: SimLedger) -> None:
    key = ready_sim(ledger)

    async def task(actor: Actor, seen: list[Actor | None]) -> None:
        with ledger.acting_as(actor):
            for _ in range(3):
                await asyncio.sleep(0)  # the other task runs in between
                seen.append(ledger.current_actor)
                ledger.set_note(key, actor.name)

    async def both() -> tuple[list[Actor | None], list[Actor | None]]:
        first: list[Actor | None] = []
        second: list[Actor | None] = []
        await asyncio.gather(task(ALICE, first), task(BOB, second))
        return first, second

    first, second = asyncio.run(both())
    assert first == [ALICE] * 3 and second == [BOB] * 3
    notes = [e for e in ledger.history(key) if e.event == "NoteSet"]
    assert [(e.data["note"], e.actor) for e in notes] == [
        (actor.name, actor) for actor in (ALICE, BOB) * 3
    ]


def test_acting_as_on_one_ledger_names_nobody_on_another(ledger: SimLedger) -> None:
    other = SimLedger(clock=FakeClock())
    try:
        key = ready_sim(other)
        with ledger.acting_as(ALICE):
            other.set_note(key, "not alice")
        assert other.history(key)[-1].actor is None
    finally:
        other.close()


def test_a_changed_actor_is_tampering_and_events_without_one_still_verify(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(persistent_store_env, clock=FakeClock())
    try:
        key = ready_sim(ledger)  # no actor: as every event before actors existed
        with ledger.acting_as(ALICE):
            ledger.set_note(key, "one")
            ledger.set_note(key, "two")
        assert ledger.verify_store().ok
        rows = run_sql(
            persistent_store_env,
            "SELECT originator_version, state FROM {table} WHERE originator_id = ? "
            "ORDER BY originator_version",
            key,
        )
        version, state = [(v, json.loads(bytes(s))) for v, s in rows][-2]
        assert state["actor"] == stored(ALICE)
        state["actor"] = stored(BOB)  # the chain hash left as it was
        run_sql(
            persistent_store_env,
            "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            json.dumps(state).encode(),
            key,
            version,
        )
        report = ledger.verify_store(views=False)
        assert [(p.kind, p.aggregate_id, p.version) for p in report.problems] == [
            ("altered", key, version)
        ]
    finally:
        ledger.close()


def test_an_actor_changes_no_decision(ledger: SimLedger) -> None:
    plain = SimLedger(clock=FakeClock())
    try:
        for each, actor in ((plain, None), (ledger, ALICE)):
            with each.acting_as(actor):
                key = ready_sim(each)
                each.pause([key])
                each.record_usage(key, 3, at=T0)
        mine, theirs = ledger.history(key), plain.history(key)
        assert [e.event for e in mine] == [e.event for e in theirs]  # ids aside, the same
        assert {e.actor for e in mine} == {ALICE} and {e.actor for e in theirs} == {None}
        same = ("status", "data_left_mb", "this_month_mb", "expires_at", "suspended_reason")
        assert [getattr(ledger.sim(key), f) for f in same] == [
            getattr(plain.sim(key), f) for f in same
        ]
    finally:
        plain.close()


NESTING: st.SearchStrategy[list[Any]] = st.recursive(
    st.just([]),
    lambda inner: st.lists(
        st.tuples(st.sampled_from([ALICE, BOB, Actor("k3", "carol"), None]), inner),
        max_size=3,
    ),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(default=st.sampled_from([None, ALICE]), tree=NESTING)
def test_nested_acting_as_restores_the_outer_actor(default: Actor | None, tree: list[Any]) -> None:
    ledger = SimLedger(clock=FakeClock(), actor=default)  # in memory: nothing to store here
    key = ready_sim(ledger)

    def check(expected: Actor | None) -> None:
        assert ledger.current_actor == expected
        ledger.set_note(key, "x")
        assert ledger.history(key)[-1].actor == expected

    def walk(nodes: list[Any], outer: Actor | None) -> None:
        for actor, inner in nodes:
            with ledger.acting_as(actor):
                check(actor)
                walk(inner, actor)
                check(actor)
            check(outer)

    try:
        walk(tree, default)
        check(default)
    finally:
        ledger.close()
