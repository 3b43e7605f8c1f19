"""The projection worker as a real process (``python -m simledger.runners.worker``).

* Killed with SIGKILL in the middle of a batch and restarted, it ends with views equal to a
  rebuild: the open batch rolled back, the committed ones stay, nothing is folded twice.
* Beside two writer processes (one folding its own writes, one leaving them to the
  worker), every event appears exactly once: each SIM's usage adds up exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any

import pytest
from helpers import iccids

from simledger import SimLedger

NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}
WORKER = [sys.executable, "-m", "simledger.runners.worker"]


def _process_env(store_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**os.environ, **store_env, "SIMLEDGER_LOG_LEVEL": "INFO", **extra}


def _log_lines(stream: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stream:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def _quiet_ledger(store_env: dict[str, str]) -> SimLedger:
    """A ledger that never folds by itself: what it reads is what the worker wrote."""
    return SimLedger({**store_env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"})


def test_worker_killed_mid_batch_resumes_without_loss_or_doubling(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = _quiet_ledger(persistent_store_env)
    keys: list[str] = []
    for start in range(0, 900, 300):
        keys += ledger.receive_sims(iccids(300, start), operator="3UK", sim_type="paygo")
    for n, key in enumerate(keys[:200]):
        ledger.set_labels(key, ["fleet"] if n % 2 else ["eu"])
    last = ledger.views.max_notification_id()
    assert ledger.views.store.position() == 0
    ledger = _quiet_ledger(persistent_store_env)  # wrote nothing: will not fold by itself

    worker = subprocess.Popen(
        [*WORKER, "--batch-size", "150", "--hold-batch", "1.5", "--once"],
        env=_process_env(persistent_store_env),
        stderr=subprocess.PIPE,
        text=True,
    )
    written: list[dict[str, Any]] = []
    assert worker.stderr is not None
    for record in _log_lines(worker.stderr):
        if record.get("event") == "worker.batch.written":
            written.append(record)
            if len(written) == 3:
                worker.kill()  # SIGKILL while the third batch waits for its commit
                break
    worker.wait(timeout=30)
    assert worker.returncode == -9
    committed = ledger.views.store.position()
    assert committed == written[1]["last"], "two batches committed, the third rolled back"
    assert ledger.verify_views() == NO_DIFFERENCES, "the committed batches are whole"
    assert ledger.sims(limit=1).total == committed

    restarted = subprocess.run(
        [*WORKER, "--batch-size", "150", "--once"],
        env=_process_env(persistent_store_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert ledger.views.store.position() == last
    assert ledger.verify_views() == NO_DIFFERENCES
    live = ledger.sims(limit=1000).items
    labelled = (ledger.sims(label="eu").total, ledger.sims(label="fleet").total)
    assert len(live) == 900 and labelled == (100, 100)
    ledger.rebuild_views()
    assert ledger.sims(limit=1000).items == live


WRITER = """
import sys
from simledger import SimLedger
from simledger.domain.iccid import make_iccid

start, sims, usages = (int(arg) for arg in sys.argv[1:4])
ledger = SimLedger()
package = ledger.create_package("1 GB", data_mb=1000, validity_days=30)
keys = [make_iccid(f"8944{n:015d}") for n in range(start, start + sims)]
ledger.receive_sims(keys, operator="3UK", sim_type="paygo")
for key in keys:
    ledger.complete_integration_check(key, ok=True)
    ledger.assign_line(key, "+447700900123")
    ledger.assign_to_company(key, "Acme")
    ledger.assign_package(key, package)
    ledger.activate(key)
for round in range(usages):
    for key in keys:
        ledger.record_usage(key, 3)
    ledger.set_note(keys[round % sims], f"round {round}")
"""


@pytest.mark.parametrize("batch_size", [7])
def test_two_writers_and_a_worker_fold_every_event_exactly_once(
    persistent_store_env: dict[str, str], batch_size: int
) -> None:
    ledger = _quiet_ledger(persistent_store_env)  # makes the tables before anyone starts
    worker = subprocess.Popen(
        [*WORKER, "--batch-size", str(batch_size), "--poll-interval", "0.02"],
        env=_process_env(persistent_store_env),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    for record in _log_lines(worker.stderr):
        if record.get("event") in ("worker.subscribed", "worker.polling"):
            break
    worker_log: list[str] = []  # read on, so the pipe never fills and blocks the worker
    drain = threading.Thread(target=lambda: worker_log.extend(worker.stderr or ()), daemon=True)
    drain.start()
    sims, usages = 6, 5
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(start), str(sims), str(usages)],
            env=_process_env(persistent_store_env, VIEWS_MODE=mode),
            stderr=subprocess.PIPE,
            text=True,
        )
        for start, mode in ((1000, "embedded"), (2000, "external"))
    ]
    try:
        for writer in writers:
            _, errors = writer.communicate(timeout=120)
            assert writer.returncode == 0, errors
        last = ledger.views.max_notification_id()
        deadline = time.monotonic() + 30
        while ledger.views.store.position() < last and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.views.store.position() == last, worker_log[-20:]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        for writer in writers:
            writer.kill()
    drain.join(timeout=5)
    assert worker.returncode == 0, worker_log[-20:]

    page = ledger.sims(limit=100)
    assert page.total == 2 * sims
    for item in page.items:
        assert item.this_month_mb == Decimal(3 * usages), "each usage folded exactly once"
        assert item.data_left_mb == Decimal(1000 - 3 * usages)
        sim = ledger.sim(item.iccid)
        assert (item.status, item.version, item.note) == (sim.status, sim.version, sim.note)
    assert ledger.sims(search="round").total == sims * 2 - 2  # rounds 0..4 over 6 SIMs, twice
    assert ledger.verify_views() == NO_DIFFERENCES
