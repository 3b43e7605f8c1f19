"""``kill -9`` of each writing process kind in the middle of its work (issue 14, "fault tests
with real processes"), on SQLite and PostgreSQL.

A child process (the CLI's ``import`` and ``usage``, a writer of single commands, a bulk
pause) is stopped INSIDE a save's transaction: its N-th inline fold of the views (called
after the save's rows are written, before the commit) announces itself and waits; N comes
from a seed, and the parent kills the child on that announcement, not after a guessed
sleep. Afterwards: the killed unit of work left all or nothing, every write acknowledged
before it is found, the views equal their rebuild, the log verifies and nothing staged is
left behind. The other kinds (worker, forwarder, rebuild, verify, seal) are in
test_views_worker.py, test_forwarder.py, test_process_faults.py and test_kill_readers.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    clean_env,
    fault_record,
    iccids,
    make_package,
    ready_sim,
    staged_tables,
)

from simledger import SimLedger, SimStatus

NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}
SEED = int(os.environ.get("SIMLEDGER_FAULT_SEED", "14"))
CHUNK = 5000  # the import's and the usage file's chunk (one save each / one fold each)

CHILD = r"""
import json, os, sys, time
request = json.loads(sys.stdin.readline())
os.environ.update(request["env"])
from simledger.application import inline_fold

calls, stop_at = 0, request["stop_at"]
fold, early = inline_fold.fold_inline, inline_fold.fold_early

def stop():
    global calls
    calls += 1
    if calls == stop_at:  # the save's events are sent, its transaction open: killed here
        print("stopped", calls, flush=True)
        time.sleep(600)

def stopping(*args, **kwargs):  # after the INSERT (SQLite, big saves)
    stop()
    return fold(*args, **kwargs)

def stopping_early(*args, **kwargs):  # a small PostgreSQL save: after its INSERT is sent
    send = early(*args, **kwargs)
    if send is None:
        stop()
        return None
    def send_then_stop(position_sql):
        send(position_sql)
        stop()
    return send_then_stop

inline_fold.fold_inline, inline_fold.fold_early = stopping, stopping_early
kind = request["kind"]
if kind in ("import", "usage"):
    from simledger.runners.cli import main
    sys.exit(main([kind, request["file"]]))
from simledger import SimLedger
ledger = SimLedger(request["env"])
if kind == "pause":
    ledger.pause(request["keys"])
elif kind == "writer":
    for n, key in enumerate(request["keys"]):
        ledger.set_note(key, f"note {n}")
        print("ack", key, f"note {n}", flush=True)
print("done", flush=True)
"""


def killed_at(env: dict[str, str], kind: str, stop_at: int, **request: Any) -> list[str]:
    """Run ``kind`` in a child until its ``stop_at``-th inline fold, kill it there
    (``SIGKILL``); the lines it printed before (its acknowledgements)."""
    child = subprocess.Popen(
        [sys.executable, "-P", "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps({"env": env, "kind": kind, "stop_at": stop_at, **request}) + "\n")
    child.stdin.flush()
    lines: list[str] = []
    try:
        for line in child.stdout:
            if line.startswith("stopped"):
                break
            lines.append(line.strip())
        else:
            error = child.stderr.read() if child.stderr else ""
            raise AssertionError(f"{kind} ended before its stop: {error[-3000:]}")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return lines


def run_again(env: dict[str, str], kind: str, path: Path) -> None:
    """The same CLI command on the same file, to its end."""
    again = subprocess.run(
        [sys.executable, "-P", "-m", "simledger.runners.cli", kind, str(path)],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.fixture
def after(persistent_store_env: dict[str, str]) -> Iterator[SimLedger]:
    """The ledger opened after the kill."""
    ledger = SimLedger(persistent_store_env)
    yield ledger
    ledger.close()


def checked(
    ledger: SimLedger, env: dict[str, str], process: str, acknowledged: int, found: int
) -> None:
    """What every kill must leave: acknowledged writes found, views equal to their
    rebuild, a log that verifies, nothing staged (noted for bench/bench_faults.py)."""
    ledger.catch_up_views()
    diffs = ledger.verify_views()
    fault_record(
        process,
        "kill -9",
        env,
        acknowledged=acknowledged,
        found=found,
        views_equal=diffs == NO_DIFFERENCES,
    )
    assert found == acknowledged
    assert diffs == NO_DIFFERENCES
    report = ledger.verify_store(views=False)
    assert report.ok, report.summary()
    assert staged_tables(env) == []


def test_a_cli_import_killed_mid_file_records_none_of_it(
    persistent_store_env: dict[str, str], tmp_path: Path, after: SimLedger
) -> None:
    rows = 2 * CHUNK + 1000  # three chunks in one transaction
    path = tmp_path / "delivery.csv"
    path.write_text(
        "iccid,operator,sim_type,esim\n"
        + "".join(f"{k},3UK,prepaid,no\n" for k in iccids(rows, 1000))
    )
    chunk = random.Random(SEED).randint(1, 3)
    killed_at(persistent_store_env, "import", chunk, file=str(path))
    assert after.sims(limit=1).total == 0, f"killed at chunk {chunk}: all or nothing"
    checked(after, persistent_store_env, "CLI import", 0, 0)
    run_again(persistent_store_env, "import", path)
    after.catch_up_views()
    assert after.sims(limit=1).total == rows


def test_a_cli_usage_file_killed_mid_file_keeps_whole_chunks_only(
    persistent_store_env: dict[str, str], tmp_path: Path, after: SimLedger
) -> None:
    package = make_package(after, data_mb=10**6)
    keys = [ready_sim(after, n, package_id=package) for n in range(5)]
    records = 2 * CHUNK + 500
    start = datetime.now(UTC)  # after the activations, before the child reads the file
    path = tmp_path / "usage.csv"
    path.write_text(
        "record_id,iccid,mb,at\n"
        + "".join(
            f"r{n},{keys[n % 5]},1,{(start + timedelta(microseconds=n)).isoformat()}\n"
            for n in range(records)
        )
    )
    chunk = random.Random(SEED + 1).randint(1, 3)
    killed_at(persistent_store_env, "usage", chunk, file=str(path))

    def used() -> int:
        return sum(10**6 - int(after.sim(k).data_left_mb or 0) for k in keys)

    assert used() == (chunk - 1) * CHUNK, f"killed in chunk {chunk}: the ones before, whole"
    checked(after, persistent_store_env, "CLI usage", (chunk - 1) * CHUNK, used())
    run_again(persistent_store_env, "usage", path)
    assert used() == records, "sent again: every record counted once"


def test_a_writer_killed_mid_command_loses_no_acknowledged_write(
    persistent_store_env: dict[str, str], after: SimLedger
) -> None:
    keys = after.receive_sims(iccids(30, 2000), operator="3UK", sim_type="paygo")
    stop = random.Random(SEED + 2).randint(1, 30)
    acks = [
        line.split(" ", 2) for line in killed_at(persistent_store_env, "writer", stop, keys=keys)
    ]
    assert len(acks) == stop - 1
    found = sum(after.sim(key).note == note for _, key, note in acks)
    assert after.sim(keys[stop - 1]).note is None, "the killed command: nothing of it"
    checked(after, persistent_store_env, "writer (single commands)", len(acks), found)


def test_a_bulk_pause_killed_mid_save_pauses_all_or_none(
    persistent_store_env: dict[str, str], after: SimLedger
) -> None:
    package = make_package(after)
    keys = [ready_sim(after, n, package_id=package) for n in range(40)]
    killed_at(persistent_store_env, "pause", 1, keys=keys)
    assert after.pending_activity() == [], "none of the pause"
    assert {after.sim(k).status for k in keys} == {SimStatus.ACTIVE}
    checked(after, persistent_store_env, "bulk pause", 0, 0)
    result = after.pause(keys)
    [operation] = after.pending_activity()
    assert (operation.operation_id, operation.requested) == (result.operation_id, len(keys))
