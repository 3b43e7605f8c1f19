"""The log's seal (R-ES5, issue 14 item 10): reordering events of different SIMs, or
removing the newest events of the log, is found by ``verify_store`` once the log is sealed,
even after ``rebuild_views``; the worker writes checkpoints; a witness kept outside is
checked. Rows are edited with SQL, as an intruder with database access would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from helpers import clean_env, ready_sim, run_sql

from simledger import SimLedger
from simledger.application.audit import VerifyReport
from simledger.domain.errors import InvalidInput

SEAL_KINDS = {"sealed-range", "truncated", "seal-table", "witness"}


def _id_column(env: dict[str, str]) -> str:
    return "rowid" if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite" else "notification_id"


def _seal_sql(env: dict[str, str], statement: str) -> None:
    """Runs ``statement`` on the checkpoint table (``{seals}``)."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        seals = f'"{env["POSTGRES_SCHEMA"]}".simledger_seals'
    else:
        seals = "simledger_seals"
    run_sql(env, statement.replace("{seals}", seals))


def sealed_store(env: dict[str, str]) -> tuple[str, str, str]:
    """Two SIMs whose last events (a note each) are the last two of the log, sealed; the
    SIMs and the checkpoint as printed."""
    ledger = SimLedger(env=env)
    try:
        a, b = ready_sim(ledger, 0), ready_sim(ledger, 1)
        ledger.set_note(a, "a")
        ledger.set_note(b, "b")
        checkpoint = ledger.seal()
        assert checkpoint is not None
        assert checkpoint.position == ledger.recorder.max_notification_id()
        assert ledger.seal() == checkpoint  # nothing new: no second checkpoint
    finally:
        ledger.close()
    return a, b, str(checkpoint)


def seal_problems(report: VerifyReport) -> list[str]:
    return [str(p) for p in report.problems if p.kind in SEAL_KINDS]


def verify(env: dict[str, str], **options: object) -> VerifyReport:
    ledger = SimLedger(env=env)
    try:
        return ledger.verify_store(**options)  # type: ignore[arg-type]
    finally:
        ledger.close()


def test_an_untampered_sealed_store_verifies_and_its_witness_holds(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    _, _, printed = sealed_store(env)
    ledger = SimLedger(env=env)
    try:
        ready_sim(ledger, 2)  # events after the checkpoint: not sealed yet, not a problem
        report = ledger.verify_store(witness=printed)
        assert report.ok, [str(p) for p in report.problems]
        assert report.sealed_up_to == int(printed.split(":")[0])
        later = ledger.seal()
        assert later is not None and later.previous == report.sealed_up_to
        assert ledger.verify_store(witness=str(later)).ok
        wrong = printed.split(":")[0] + ":" + "0" * 64
        assert [p.kind for p in ledger.verify_store(witness=wrong).problems] == ["witness"]
        with pytest.raises(InvalidInput) as refused:
            ledger.verify_store(witness="12:nothex")
        assert refused.value.rule == "R-ES5"
    finally:
        ledger.close()


def test_two_events_of_different_sims_swapped_in_a_sealed_range_are_found(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    sealed_store(env)
    column = _id_column(env)
    [(last,)] = run_sql(env, f"SELECT MAX({column}) FROM {{table}}")
    first = int(last) - 1
    # Swap the positions of the two notes (different SIMs: each SIM's chain still holds).
    run_sql(env, f"UPDATE {{table}} SET {column} = ? WHERE {column} = ?", -1, first)
    run_sql(env, f"UPDATE {{table}} SET {column} = ? WHERE {column} = ?", first, int(last))
    run_sql(env, f"UPDATE {{table}} SET {column} = ? WHERE {column} = ?", int(last), -1)
    report = verify(env, views=False)
    problems = seal_problems(report)
    assert problems and all(f"(notification {last})" in p for p in problems), problems
    assert [p.kind for p in report.problems] == ["sealed-range"]  # the chains see nothing


@pytest.mark.parametrize("rebuild", [False, True], ids=["as-is", "after-rebuild"])
def test_the_newest_events_removed_below_a_checkpoint_are_found(
    persistent_store_env: dict[str, str], rebuild: bool
) -> None:
    env = persistent_store_env
    sealed_store(env)
    column = _id_column(env)
    [(last,)] = run_sql(env, f"SELECT MAX({column}) FROM {{table}}")
    run_sql(env, f"DELETE FROM {{table}} WHERE {column} >= ?", int(last) - 1)
    if rebuild:
        ledger = SimLedger(env=env)
        try:
            ledger.rebuild_views()
        finally:
            ledger.close()
    report = verify(env)
    kinds = {p.kind for p in report.problems}
    assert "truncated" in kinds, [str(p) for p in report.problems]
    truncated = next(p for p in report.problems if p.kind == "truncated")
    assert truncated.notification_id == int(last)
    assert f"ends at position {int(last) - 2}" in truncated.detail


def test_a_rewritten_checkpoint_table_is_found(persistent_store_env: dict[str, str]) -> None:
    env = persistent_store_env
    sealed_store(env)
    ledger = SimLedger(env=env)
    try:
        ledger.set_note(ready_sim(ledger, 2), "later")
        ledger.seal()
    finally:
        ledger.close()
    _seal_sql(env, "UPDATE {seals} SET hash = '" + "f" * 64 + "' WHERE previous = 0")
    kinds = [p.kind for p in verify(env, views=False).problems]
    assert kinds == ["sealed-range", "sealed-range"]  # its own range and the next
    _seal_sql(env, "DELETE FROM {seals} WHERE previous = 0")
    kinds = [p.kind for p in verify(env, views=False).problems]
    assert "seal-table" in kinds


def test_cli_seal_prints_the_checkpoint_and_verify_fails_on_a_removed_tail(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    sealed_store(env)
    ledger = SimLedger(env=env)
    try:
        ready_sim(ledger, 2)
        head = ledger.recorder.max_notification_id() or 0
    finally:
        ledger.close()
    cli = [sys.executable, "-P", "-m", "simledger.runners.cli"]
    done = subprocess.run(
        [*cli, "seal"], capture_output=True, text=True, env=clean_env(env), timeout=120
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed.split(":")[0] == str(head) and len(printed.split(":")[1]) == 64
    column = _id_column(env)
    run_sql(env, f"DELETE FROM {{table}} WHERE {column} = ?", head)
    done = subprocess.run(
        [*cli, "verify", "--witness", printed],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"truncated: the log ends at position {head - 1}" in done.stdout, done.stdout


def test_the_worker_writes_checkpoints(persistent_store_env: dict[str, str]) -> None:
    env = persistent_store_env
    ledger = SimLedger(env=env)
    try:
        ready_sim(ledger, 0)
    finally:
        ledger.close()
    worker = subprocess.Popen(
        [
            *(sys.executable, "-P", "-m", "simledger.runners.worker"),
            *("--seal-every", "1", "--seal-seconds", "0.2", "--poll-interval", "0.05"),
        ],
        env=clean_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ledger = SimLedger(env=env)
        try:
            ready_sim(ledger, 1)
            head = ledger.recorder.max_notification_id()
            deadline = time.monotonic() + 60
            sealed = 0
            while time.monotonic() < deadline and worker.poll() is None:
                report = ledger.verify_store(views=False)
                sealed = report.sealed_up_to
                if sealed == head:
                    break
                time.sleep(0.2)
            assert sealed == head
            assert report.ok, [str(p) for p in report.problems]
        finally:
            ledger.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err.decode()[-2000:]
