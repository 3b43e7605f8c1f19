"""The PostgreSQL recorder simledger runs with (adapters/store/pg_recorder.py)."""

from __future__ import annotations

import threading

from eventsourcing.persistence import IntegrityError, StoredEvent

from simledger import SimLedger
from simledger.adapters.store.persistence import POSTGRES_RECORDER_TOPIC
from simledger.adapters.store.pg_recorder import BulkPostgresApplicationRecorder, recorder_topic


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
