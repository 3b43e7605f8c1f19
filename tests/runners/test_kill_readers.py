"""``kill -9`` of the processes that read the whole log, in the middle of their work (issue
14, "fault tests with real processes"): ``verify`` and its ``verify_part`` child, a parallel
rebuild's ``rebuild_part`` child, and ``seal``.

Each is stopped at a point of its work chosen by a count (the N-th aggregate finished, the
N-th batch folded, the N-th event sealed): a wrapper (:data:`STOPPED`) patches that point
in the process, which then writes its pid to a marker file and waits; the test kills it
once the marker is there. Afterwards: no child outlives its parent, a parent whose child
was killed finishes the work itself, nothing is half written (no checkpoint, no staged
table) and the store still verifies with views equal to their rebuild.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import alive, clean_env, fault_record, iccids, staged_tables, wait_for

from simledger import SimLedger

NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}
SEED = int(os.environ.get("SIMLEDGER_FAULT_SEED", "14"))

STOPPED = r'''
"""Run a module as ``-m`` would, with one of its functions stopping at its N-th call."""
import importlib, os, runpy, sys, time

target, n = os.environ["FAULT_STOP"].rsplit(":", 1)
module_name, _, qualname = target.partition(":")
holder = importlib.import_module(module_name)
*path, name = qualname.split(".")
for part in path:
    holder = getattr(holder, part)
real, calls = getattr(holder, name), 0

def stopping(*args, **kwargs):
    global calls
    calls += 1
    if calls == int(n):
        with open(os.environ["FAULT_MARKER"], "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(600)  # killed here
    return real(*args, **kwargs)

setattr(holder, name, stopping)
module = sys.argv.pop(1)
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''

SWAP_CHILDREN = r"""
import subprocess, sys
popen = subprocess.Popen.__init__
def through_the_wrapper(self, args, *rest, **kwargs):
    # a child ``-m simledger.runners.X`` runs under the stopping wrapper: ``-m stopped X``
    if isinstance(args, list) and "-m" in args and "runners." in str(args[args.index("-m") + 1]):
        at = args.index("-m") + 1
        args = [*args[:at], "stopped", *args[at:]]
    popen(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = through_the_wrapper
"""


class Stops:
    """Processes started with a stop point, and the marker each writes when it is there."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        (tmp_path / "stopped.py").write_text(STOPPED)
        self.marker = tmp_path / "marker"
        self.env = env
        self.tmp_path = tmp_path

    def process_env(self, stop: str, **extra: str) -> dict[str, str]:
        return clean_env(
            {
                **self.env,
                "PYTHONPATH": str(self.tmp_path),
                "FAULT_STOP": stop,
                "FAULT_MARKER": str(self.marker),
                **extra,
            }
        )

    def stopped_pid(self, process: subprocess.Popen[Any]) -> int:
        """The pid that reached its stop point (waiting for its marker)."""

        def there() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"ended before its stop: {process.communicate()}")
            return self.marker.exists() and self.marker.read_text() != ""

        wait_for(there, 60, "the stop point is reached")
        return int(self.marker.read_text())


def store(env: dict[str, str], sims: int = 300) -> None:
    ledger = SimLedger(env)
    keys = ledger.receive_sims(iccids(sims, 5000), operator="3UK", sim_type="paygo")
    for key in keys[::10]:
        ledger.set_labels(key, ["eu"])
    ledger.close()


def verified(env: dict[str, str], process: str) -> None:
    """The store still verifies, its views equal their rebuild (noted for the bench)."""
    ledger = SimLedger(env)
    try:
        report = ledger.verify_store()
        diffs = ledger.verify_views()
        fault_record(
            process, "kill -9", env, acknowledged=0, found=0, views_equal=diffs == NO_DIFFERENCES
        )
        assert report.ok, report.summary()
        assert diffs == NO_DIFFERENCES
    finally:
        ledger.close()


def cli(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "stopped", "simledger.runners.cli", *args]


def test_verify_killed_mid_replay_takes_its_child_along_and_changes_nothing(
    persistent_store_env: dict[str, str], tmp_path: Path
) -> None:
    """The verify_part child stopped mid-replay, the verify above it killed: the child dies
    with it (no orphan)."""
    store(persistent_store_env)
    stops = Stops(tmp_path, persistent_store_env)
    (tmp_path / "sitecustomize.py").write_text(SWAP_CHILDREN)  # the children run stopped
    verify = subprocess.Popen(
        [sys.executable, "-P", "-m", "simledger.runners.cli", "verify"],
        env=stops.process_env("simledger.application.audit:finish_aggregate:100"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = stops.stopped_pid(verify)
    assert child != verify.pid and alive(child)
    verify.kill()
    verify.wait(30)
    wait_for(lambda: not alive(child), 10, "verify_part ends with its parent")
    verified(persistent_store_env, "verify (parent of verify_part)")


def test_a_verify_whose_child_is_killed_replays_by_itself_and_says_ok(
    persistent_store_env: dict[str, str], tmp_path: Path
) -> None:
    store(persistent_store_env)
    stops = Stops(tmp_path, persistent_store_env)
    (tmp_path / "sitecustomize.py").write_text(SWAP_CHILDREN)
    verify = subprocess.Popen(
        [sys.executable, "-P", "-m", "simledger.runners.cli", "verify"],
        env=stops.process_env("simledger.application.audit:finish_aggregate:100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = stops.stopped_pid(verify)
    os.kill(child, signal.SIGKILL)  # the stop point is the child's alone: the parent's
    out, err = verify.communicate(timeout=120)  # own replay then runs through
    assert verify.returncode == 0, out + err
    assert "OK" in out
    verified(persistent_store_env, "verify_part")


REBUILD = """
from simledger import SimLedger
ledger = SimLedger()
ledger.views.parallel_from = 1  # fold in two processes however small the log
ledger.views.batch_size = 50
print(ledger.rebuild_views(), flush=True)
"""


def stopped_rebuild(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[str], Stops]:
    """A parallel rebuild of a store of 330 events whose second process stops at its first
    batch folded."""
    store(env)
    stops = Stops(tmp_path, env)
    (tmp_path / "sitecustomize.py").write_text(SWAP_CHILDREN)
    rebuild = subprocess.Popen(
        [sys.executable, "-P", "-c", REBUILD],
        env=stops.process_env("simledger.application.projection_runner:ViewRunner._fold_decoded:1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return rebuild, stops


def test_a_rebuild_whose_second_process_is_killed_mid_fold_finishes_alone(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    rebuild, stops = stopped_rebuild(postgres_env, tmp_path)
    child = stops.stopped_pid(rebuild)
    assert child != rebuild.pid
    os.kill(child, signal.SIGKILL)
    _, err = rebuild.communicate(timeout=120)
    assert rebuild.returncode == 0, err[-3000:]
    assert "views.rebuild.part_failed" in err, "the parent folded the whole log itself"
    assert staged_tables(postgres_env) == []
    verified(postgres_env, "rebuild_part")


def test_a_rebuild_killed_mid_fold_takes_its_second_process_along(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    rebuild, stops = stopped_rebuild(postgres_env, tmp_path)
    child = stops.stopped_pid(rebuild)
    rebuild.kill()
    rebuild.wait(30)
    wait_for(lambda: not alive(child), 10, "rebuild_part ends with its parent")
    done = subprocess.run(
        [sys.executable, "-P", "-m", "simledger.runners.worker", "--once"],
        env=clean_env(postgres_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert staged_tables(postgres_env) == []
    verified(postgres_env, "rebuild (parent of rebuild_part)")


def test_seal_killed_mid_fold_records_no_checkpoint(
    persistent_store_env: dict[str, str], tmp_path: Path
) -> None:
    store(persistent_store_env)
    nth = random.Random(SEED).randint(1, 330)  # the store's 330 events: killed at one
    stops = Stops(tmp_path, persistent_store_env)
    seal = subprocess.Popen(
        cli(persistent_store_env, "seal"),
        env=stops.process_env(f"simledger.domain.log_seal:SealFold.add:{nth}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert stops.stopped_pid(seal) == seal.pid
    seal.kill()
    seal.wait(30)
    ledger = SimLedger(persistent_store_env)
    try:
        assert ledger.verify_store().sealed_up_to == 0, "no checkpoint of the killed seal"
        checkpoint = ledger.seal()
        assert checkpoint is not None
        assert checkpoint.position == ledger.recorder.max_notification_id()
    finally:
        ledger.close()
    verified(persistent_store_env, "seal")
