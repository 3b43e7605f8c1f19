"""Read models folded inline: inside the save's own transaction, from the events in memory.

On SQLite and PostgreSQL an embedded ledger's save folds its new events into the views in
the transaction that records them (application/queries.py ``inline_fold``,
adapters/store/in_transaction.py): no read-back of the log, no second transaction, the
tracking position written with the rows. These tests make the other paths fail, so a save
that did not fold inline shows, and check the views against a rebuild in the cases that
mix inline folds with other projectors.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from helpers import FakeClock, iccids, ready_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simledger import SimLedger, SimType
from simledger.application import inline_fold
from simledger.application.projection_runner import ViewRunner
from simledger.domain.sim import Sim

NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}


def _forbid_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of folding other than inline fail loudly."""

    def no_catch_up(self: ViewRunner, until: int | None = None) -> int:
        raise AssertionError("the save read its events back (catch-up after the commit)")

    monkeypatch.setattr(ViewRunner, "catch_up", no_catch_up)


def _head(ledger: SimLedger) -> int:
    return ledger.recorder.max_notification_id() or 0


def test_a_save_folds_its_events_inline_without_reading_them_back(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(persistent_store_env, clock=FakeClock())
    keys = ledger.receive_sims(iccids(3), operator="3UK", sim_type=SimType.PAYGO)
    ledger.catch_up_views()
    _forbid_read_back(monkeypatch)
    ledger.set_labels(keys[0], ["fleet-a"])
    ledger.set_note(keys[1], "inline")
    ledger.complete_integration_check(keys[2], ok=True)
    # The views stand at the last event, folded by the saves themselves.
    assert ledger.views.store.position() == _head(ledger)
    monkeypatch.undo()
    assert [i.iccid for i in ledger.sims(label="fleet-a").items] == [keys[0]]
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


def test_a_failing_inline_fold_still_records_the_command_and_the_views_catch_up(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(persistent_store_env, clock=FakeClock())
    (key,) = ledger.receive_sims(iccids(1), operator="3UK", sim_type=SimType.PAYGO)
    calls: list[int] = []

    def broken(runner: object, connection: object, events: Any, ids: Any, *_: Any) -> bool:
        calls.append(len(events))
        raise RuntimeError("a view that cannot be written")

    def broken_early(runner: object, events: Any, *_: Any) -> None:
        calls.append(len(events))
        raise RuntimeError("a view that cannot be written")

    # PostgreSQL folds before the INSERT (fold_early), SQLite after it (fold_inline).
    monkeypatch.setattr(inline_fold, "fold_inline", broken)
    monkeypatch.setattr(inline_fold, "fold_early", broken_early)
    ledger.set_note(key, "kept")
    assert calls == [1]
    assert ledger.sim(key).note == "kept"  # recorded, in a transaction without the hook
    monkeypatch.undo()
    assert ledger.views.store.position() == _head(ledger)  # folded after the commit
    assert ledger.sims().items[0].note == "kept"
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


def test_an_inline_fold_first_folds_what_a_writer_without_views_left(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixed deployment: a writer with external views records events nobody folds; the
    next inline save folds them before its own, in its transaction."""
    embedded = SimLedger(persistent_store_env, clock=FakeClock())
    external = SimLedger({**persistent_store_env, "VIEWS_MODE": "external"}, clock=FakeClock())
    keys = embedded.receive_sims(iccids(4), operator="3UK", sim_type=SimType.PAYGO)
    before = embedded.views.store.position()
    external.set_note(keys[0], "by the external writer")
    external.set_labels(keys[1], ["ext"])
    assert embedded.views.store.position() == before  # nobody folded those
    _forbid_read_back(monkeypatch)
    embedded.set_note(keys[2], "by the embedded writer")
    assert embedded.views.store.position() == _head(embedded)
    monkeypatch.undo()
    notes = {i.iccid: i.note for i in embedded.sims().items}
    assert notes[keys[0]] == "by the external writer"
    assert notes[keys[2]] == "by the embedded writer"
    assert embedded.verify_views() == NO_DIFFERENCES
    external.close()
    embedded.close()


def test_colliding_writers_fold_each_event_once(persistent_store_env: dict[str, str]) -> None:
    """Two ledgers on one store write the same SIMs from threads: saves collide, roll back
    (their inline folds with them) and run again; the views equal a rebuild."""
    ledgers = [SimLedger(persistent_store_env, clock=FakeClock()) for _ in range(2)]
    keys = ledgers[0].receive_sims(iccids(2), operator="3UK", sim_type=SimType.PAYGO)
    errors: list[BaseException] = []

    def write(ledger: SimLedger, name: str) -> None:
        try:
            for n in range(15):
                ledger.set_note(keys[n % 2], f"{name}-{n}")
                ledger.set_labels(keys[(n + 1) % 2], [f"{name}{n}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(ledger, f"w{n}")) for n, ledger in enumerate(ledgers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    ledger = ledgers[0]
    assert ledger.views.store.position() == _head(ledger)
    assert ledger.verify_views() == NO_DIFFERENCES
    for each in ledgers:
        each.close()


_WRITER = """
import sys
from simledger import SimLedger
from simledger.domain.iccid import make_iccid
ledger = SimLedger()
keys = sys.argv[1].split(",")
for n in range(40):
    ledger.set_note(keys[n % len(keys)], f"{sys.argv[2]}-{n}")
    ledger.record_usage(keys[(n + 1) % len(keys)], 1)
ledger.close()
"""


def test_two_writer_processes_and_a_worker_leave_views_equal_to_a_rebuild(
    persistent_store_env: dict[str, str],
) -> None:
    """One writer folds inline, one leaves it to the worker, the worker follows both."""
    ledger = SimLedger(persistent_store_env)
    keys = [ready_sim(ledger, n, data_mb=10_000) for n in range(3)]
    base = {**os.environ, **persistent_store_env}
    worker = subprocess.Popen(
        [sys.executable, "-P", "-m", "simledger.runners.worker", "--poll-interval", "0.02"],
        env=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        writers = [
            subprocess.Popen(
                [sys.executable, "-P", "-c", _WRITER, ",".join(keys), mode],
                env={**base, "VIEWS_MODE": mode},
                stderr=subprocess.PIPE,
            )
            for mode in ("embedded", "external")
        ]
        for writer in writers:
            _, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err.decode()
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    ledger.catch_up_views()
    notes = [ledger.sim(k).note for k in keys]
    assert all(note for note in notes)
    assert sum(ledger.sim(k).this_month_mb for k in keys) == 80
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


def test_a_view_statement_the_database_refuses_does_not_fail_the_command(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of the views that the database refuses inside the save's transaction (on
    PostgreSQL it shows only at the pipeline's end) rolls the attempt back; the events are
    then recorded without the fold, and the views catch up once they can."""
    ledger = SimLedger(persistent_store_env, clock=FakeClock())
    (key,) = ledger.receive_sims(iccids(1), operator="3UK", sim_type=SimType.PAYGO)
    store: Any = type(ledger.views.store)
    original = store.write_changes

    def refused(self: Any, cursor: Any, tables: Any, changes: Any) -> None:
        cursor.execute("SELECT no_such_column FROM no_such_table")

    monkeypatch.setattr(store, "write_changes", refused)
    ledger.set_note(key, "recorded anyway")
    assert ledger.sim(key).note == "recorded anyway"
    assert ledger.views.store.position() < _head(ledger)
    monkeypatch.setattr(store, "write_changes", original)
    assert ledger.sims().items[0].note == "recorded anyway"
    assert ledger.views.store.position() == _head(ledger)
    assert ledger.verify_views() == NO_DIFFERENCES
    ledger.close()


def test_inline_views_equal_a_rebuild_after_histories_with_collisions(
    persistent_store_env: dict[str, str],
) -> None:
    """The random histories of test_views_rebuild.py, with another writer getting in before
    some saves (a note on one of the SIMs being saved): those saves collide, roll back with
    their inline folds, and run again. The views then equal a rebuild."""
    spec = importlib.util.spec_from_file_location(
        "views_rebuild_histories", Path(__file__).with_name("test_views_rebuild.py")
    )
    assert spec is not None and spec.loader is not None
    histories = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(histories)
    History, check_views_match = histories.History, histories.check_views_match
    command_lists, fresh_env, warm_up = (
        histories.command_lists,
        histories.fresh_env,
        histories.warm_up,
    )
    sim_topic = get_topic(Sim) + "."
    injected = [0]

    @settings(
        max_examples=4,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(commands=command_lists, every=st.integers(2, 4))
    def run(commands: list[tuple[str, int, int, int]], every: int) -> None:
        with fresh_env(persistent_store_env) as env:
            clock = FakeClock()
            ledger = SimLedger(env, clock=clock)
            other = SimLedger(env, clock=clock)
            history = History(ledger, clock)
            original = ledger.recorder.insert_events
            calls = [0]

            def sometimes_beaten(stored_events: Any, **kwargs: Any) -> Any:
                calls[0] += 1
                sims = [e.originator_id for e in stored_events if e.topic.startswith(sim_topic)]
                if sims and calls[0] % every == 0:
                    other.set_note(sims[-1], f"meanwhile {calls[0]}")
                    injected[0] += 1
                return original(stored_events, **kwargs)

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ledger.recorder, "insert_events", sometimes_beaten)
                for command in [*warm_up, *commands]:
                    history.run(*command)
            check_views_match(ledger)
            other.close()
            ledger.close()

    run()
    assert injected[0] > 0, "no save was beaten: the test tested nothing"
