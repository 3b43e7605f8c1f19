"""The PostgreSQL recorder simledger runs with (adapters/store/pg_recorder.py)."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from simledger import SimLedger
from simledger.adapters.store.persistence import POSTGRES_RECORDER_TOPIC
from simledger.adapters.store.pg_recorder import BulkPostgresApplicationRecorder, recorder_topic
from simledger.domain.iccid import make_iccid
from simledger.domain.sim import Sim


def test_the_postgres_store_uses_the_bulk_recorder(postgres_env: dict[str, str]) -> None:
    assert recorder_topic() == POSTGRES_RECORDER_TOPIC
    ledger = SimLedger(env=postgres_env)
    try:
        assert type(ledger.recorder) is BulkPostgresApplicationRecorder
    finally:
        ledger.close()


def test_a_big_save_neither_hangs_nor_loses_its_order(postgres_env: dict[str, str]) -> None:
    """eventsourcing's pipelined insert hung for good on a save of a few MB."""
    ledger = SimLedger(env=postgres_env)
    try:
        recorder = ledger.recorder
        before = recorder.max_notification_id() or 0
        state = b'{"padding":"' + b"x" * 40_000 + b'"}'
        events = [StoredEvent(f"big-{n:04d}", 1, "bench:Big", state) for n in range(300)]
        outcome: list[object] = []
        worker = threading.Thread(
            target=lambda: outcome.append(recorder.insert_events(events)), daemon=True
        )
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "a 12 MB save did not finish in 60 s"
        ids = outcome[0]
        assert ids == list(range(before + 1, before + 301))  # in order, gapless
        stored = recorder.select_notifications(start=before + 1, limit=400)
        assert [(n.originator_id, n.state) for n in stored] == [
            (e.originator_id, e.state) for e in events
        ]
        try:
            recorder.insert_events([*events[:1], StoredEvent("new-one", 1, "bench:Big", b"{}")])
        except IntegrityError:
            pass
        else:
            raise AssertionError("a duplicate (id, version) was recorded")
        assert recorder.max_notification_id() == before + 300  # nothing of the refused save
        assert recorder.select_events("new-one") == []
    finally:
        ledger.close()


def test_a_collision_as_statements_get_prepared_leaves_the_next_saves_working(
    postgres_env: dict[str, str],
) -> None:
    """The save's pipeline lets psycopg prepare its statements on the fly (on the 5th
    execution). A collision in the pipeline makes the server skip what followed, a PREPARE
    among them, which psycopg must not remember as prepared ("prepared statement … does not
    exist" on the next save). For every count of earlier saves on the one pooled
    connection (so the collision meets each statement at its threshold once), the collided
    save records nothing and the next saves work, their views with them."""
    env = {**postgres_env, "VIEWS_MODE": "embedded", "POSTGRES_POOL_SIZE": "1"}
    env["POSTGRES_MAX_OVERFLOW"] = "0"
    setup = SimLedger(env=env)
    keys = setup.receive_sims(
        [make_iccid(f"8944{n:015d}") for n in range(2)], operator="Orange", sim_type="prepaid"
    )
    setup.close()
    for earlier in range(8):
        ledger, other = SimLedger(env=env), SimLedger(env=env)
        try:
            for n in range(earlier):
                ledger.set_labels(keys[1], [f"warm-{n}"])
            stale: object = ledger.repository.get(keys[0])
            assert isinstance(stale, Sim)
            other.set_labels(keys[0], [f"other-{earlier}"])
            before = ledger.recorder.max_notification_id()
            stale.set_labels([f"stale-{earlier}"])
            with pytest.raises(IntegrityError):
                ledger.save(stale)
            assert ledger.recorder.max_notification_id() == before
            for n in range(6):
                ledger.set_labels(keys[n % 2], [f"after-{earlier}-{n}"])
            expected = [[f"after-{earlier}-4"], [f"after-{earlier}-5"]]
            assert [ledger.sim(key).labels for key in keys] == expected
        finally:
            ledger.close()
            other.close()
    checked = SimLedger(env=env)
    try:
        checked.rebuild_view("sims")
        assert [checked.sim(key).labels for key in keys] == [["after-7-4"], ["after-7-5"]]
    finally:
        checked.close()
