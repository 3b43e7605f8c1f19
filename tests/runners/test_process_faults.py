"""Processes that survive faults (issue 14, item 5), with real processes on a PostgreSQL
cluster of the module's own (``own_cluster``: the shared server is never restarted).

* The projection worker goes on after the cluster restarts under it: it reconnects with
  back-off and folds what was written after the restart, without being restarted.
* So does the carrier forwarder: a pause requested after the restart reaches the carrier
  and its answers come back.
* A parallel rebuild's second process dies with its parent (``kill -9`` of the parent).
* A worker killed mid-rebuild leaves a staged table; the next start drops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import OwnCluster
from helpers import alive, fault_record, iccids, ready_sim, staged_tables, suspended, wait_for

from simledger import SimLedger
from simledger.adapters.carrier.simulator import CarrierConfig, SimulatedCarrier

WORKER = [sys.executable, "-m", "simledger.runners.worker"]
FORWARDER = [sys.executable, "-m", "simledger.runners.forwarder"]
NO_DIFFERENCES: dict[str, list[Any]] = {"sims": [], "pending_activity": [], "shared_groups": []}


OUTAGE_S = 2.5
"""How long the cluster stays down: longer than the pool's wait for a connection in the
processes under test (``POSTGRES_CONNECT_TIMEOUT`` below), so that their work fails."""


def process_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **env,
        "SIMLEDGER_LOG_LEVEL": "INFO",
        "POSTGRES_CONNECT_TIMEOUT": "1",
    }


def quiet_ledger(env: dict[str, str]) -> SimLedger:
    """A writer that leaves the folding to the worker."""
    return SimLedger({**env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"})


def pause_now(env: dict[str, str], keys: list[str]) -> None:
    ledger = quiet_ledger(env)
    try:
        ledger.pause(keys)
    finally:
        ledger.close()


def caught_up(env: dict[str, str]) -> bool:
    ledger = quiet_ledger(env)
    try:
        return ledger.views.store.position() == ledger.views.max_notification_id()
    finally:
        ledger.close()


def events_in(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def test_the_worker_goes_on_after_the_database_restarts(
    own_cluster: OwnCluster, tmp_path: Path
) -> None:
    env = own_cluster.env()
    writer = quiet_ledger(env)
    writer.receive_sims(iccids(50, 0), operator="3UK", sim_type="paygo")
    writer.close()
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([*WORKER, "--batch-size", "20"], env=process_env(env), stderr=out)
    try:
        wait_for(lambda: caught_up(env), 20, "the worker folds the first SIMs")

        own_cluster.stop()
        time.sleep(OUTAGE_S)  # the worker finds the connection gone and backs off
        own_cluster.start()

        writer = quiet_ledger(env)
        try:
            writer.receive_sims(iccids(55, 50), operator="3UK", sim_type="paygo")
            wait_for(lambda: caught_up(env), 30, "the worker folds what came after the restart")
            assert writer.sims(limit=1).total == 105
            assert worker.poll() is None, "the worker was not restarted"
            assert writer.verify_views() == {
                "sims": [],
                "pending_activity": [],
                "shared_groups": [],
            }
        finally:
            writer.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    names = [e.get("event") for e in events_in(log)]
    assert "worker.reconnecting" in names, log.read_text()[-3000:]
    assert worker.returncode == 0, log.read_text()[-3000:]


def test_the_forwarder_goes_on_after_the_database_restarts(
    own_cluster: OwnCluster, tmp_path: Path
) -> None:
    env = own_cluster.env()
    ledger = SimLedger(env)
    try:
        keys = [ready_sim(ledger, n) for n in range(4)]
        ledger.pause(keys[:2])
    finally:
        ledger.close()
    carrier_db = tmp_path / "carrier.db"
    SimulatedCarrier(CarrierConfig(refusal_rate=0.0, silence_rate=0.0), path=carrier_db).close()
    log = tmp_path / "forwarder.log"

    with log.open("w") as out:
        forwarder = subprocess.Popen(
            [
                *FORWARDER,
                "--carrier-db",
                str(carrier_db),
                "--delay",
                "0",
                "--jitter",
                "0",
                "--interval",
                "0.05",
            ],
            env=process_env(env),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_for(lambda: suspended(env, keys[:2]), 20, "the first pause is confirmed")
        own_cluster.stop()
        time.sleep(OUTAGE_S)  # rounds fail meanwhile: the forwarder backs off
        own_cluster.start()
        pause_now(env, keys[2:])
        wait_for(lambda: suspended(env, keys), 30, "the pause after the restart is confirmed")
        assert forwarder.poll() is None, "the forwarder was not restarted"
    finally:
        forwarder.send_signal(signal.SIGTERM)
        forwarder.wait(timeout=30)
    names = [e.get("event") for e in events_in(log)]
    assert "forwarder.reconnecting" in names, log.read_text()[-3000:]
    assert forwarder.returncode == 0, log.read_text()[-3000:]


PARENT = """
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-P", "-m", sys.argv[1], str(__import__("os").getpid())],
    stdin=sys.stdin,  # the test holds the other end open: no EOF ends the child
)
print(child.pid, flush=True)
child.wait()
"""


def ended(pid: int) -> Callable[[], bool]:
    return lambda: not alive(pid)


def test_the_second_process_of_a_rebuild_or_audit_dies_with_its_parent() -> None:
    for child_module in ("simledger.runners.rebuild_part", "simledger.runners.verify_part"):
        read, write = os.pipe()
        try:
            parent = subprocess.Popen(
                [sys.executable, "-c", PARENT, child_module],
                stdin=read,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            time.sleep(1.0)  # the child is waiting for its request
            assert alive(child)
            parent.kill()
            parent.wait(timeout=10)
            wait_for(ended(child), 5, f"{child_module} ends with its parent")
        finally:
            os.close(read)
            os.close(write)


KILLED_MID_REBUILD = """
import time
from simledger import SimLedger
ledger = SimLedger()
runner = ledger.views
runner.parallel_from = 1  # fold in two processes however small the log

def hold(first, last):
    print("folding", flush=True)
    time.sleep(60)  # killed here, after the second process staged its rows

runner.on_batch_written = hold
runner.rebuild()
"""


def test_a_worker_start_drops_what_a_killed_rebuild_staged(own_cluster: OwnCluster) -> None:
    env = own_cluster.env()
    writer = quiet_ledger(env)
    writer.receive_sims(iccids(40, 0), operator="3UK", sim_type="paygo")
    writer.close()
    rebuild = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_REBUILD],
        env=process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert rebuild.stdout is not None
    assert rebuild.stdout.readline().strip() == "folding"
    wait_for(lambda: bool(staged_tables(env)), 20, "the second process stages its SIMs")
    rebuild.kill()
    rebuild.wait(timeout=10)
    assert staged_tables(env), "left behind by the killed rebuild"

    done = subprocess.run(
        [*WORKER, "--once"], env=process_env(env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert staged_tables(env) == []
    ledger = quiet_ledger(env)
    try:
        assert ledger.sims(limit=1).total == 40
    finally:
        ledger.close()


WRITER = r"""
import os, sys, time
from simledger import SimLedger

env, name, keys = eval(sys.stdin.readline())  # the test's own literal: settings, name, ICCIDs
stop = keys.pop()  # a file: once it exists, stop writing
ledger = None
n = 0
while n < len(keys) and not os.path.exists(stop):
    try:
        if ledger is None:
            ledger = SimLedger(env)
        ledger.set_note(keys[n], f"{name} {n}")
    except Exception as error:  # the database is away: a new ledger, the same write again
        print("failed", type(error).__name__, flush=True)
        if ledger is not None:
            ledger.close()
        ledger, _ = None, time.sleep(0.2)
        continue
    print("ack", keys[n], f"{name} {n}", flush=True)
    n += 1
    time.sleep(0.005)
"""


FAST_ROUNDS = ("--delay", "0", "--jitter", "0", "--interval", "0.05")


class Writer:
    """A writer process of single commands, and the writes it acknowledged (read off its
    output in a thread)."""

    def __init__(self, env: dict[str, str], name: str, keys: list[str], stop: Path) -> None:
        self.acks: list[tuple[str, str]] = []
        self.failures = 0
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", WRITER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=process_env(env),
        )
        assert self.process.stdin is not None
        self.process.stdin.write(repr((env, name, [*keys, str(stop)])) + "\n")
        self.process.stdin.close()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            word, *rest = line.split(" ", 2)
            if word == "ack":
                self.acks.append((rest[0], rest[1].strip()))
            elif word == "failed":
                self.failures += 1

    def finish(self) -> None:
        assert self.process.wait(timeout=60) == 0
        self.reader.join(10)


def test_worker_forwarder_and_two_writers_go_on_after_the_database_restarts(
    own_cluster: OwnCluster, tmp_path: Path
) -> None:
    """The issue's fault: the cluster restarts under a worker, a forwarder and two writers at
    once. Every write a writer acknowledged is found, before and after the restart; the
    worker folds everything and the views equal their rebuild; a pause asked after the
    restart reaches the carrier through the same forwarder."""
    env = own_cluster.env()
    writing = {**env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"}
    setup = SimLedger(writing)
    try:
        paused = [ready_sim(setup, n) for n in range(4)]
        setup.pause(paused[:2])
        fleet = setup.receive_sims(iccids(1200, 100), operator="3UK", sim_type="paygo")
    finally:
        setup.close()
    carrier_db = tmp_path / "carrier.db"
    SimulatedCarrier(CarrierConfig(refusal_rate=0.0, silence_rate=0.0), path=carrier_db).close()
    stop = tmp_path / "stop"
    worker_log, forwarder_log = tmp_path / "worker.log", tmp_path / "forwarder.log"
    with worker_log.open("w") as w_out, forwarder_log.open("w") as f_out:
        worker = subprocess.Popen(
            [*WORKER, "--batch-size", "50"], env=process_env(env), stderr=w_out
        )
        forwarder = subprocess.Popen(
            [
                *FORWARDER,
                "--carrier-db",
                str(carrier_db),
                *("--delay", "0", "--jitter", "0"),
                "--interval",
                "0.05",
            ],
            env=process_env(env),
            stdout=subprocess.DEVNULL,
            stderr=f_out,
        )
    writers = [
        Writer(writing, "a", fleet[:600], stop),
        Writer(writing, "b", fleet[600:], stop),
    ]

    try:
        wait_for(lambda: all(len(w.acks) >= 20 for w in writers), 30, "both writers write")
        wait_for(lambda: suspended(env, paused[:2]), 30, "the first pause is confirmed")
        own_cluster.stop()
        time.sleep(OUTAGE_S)  # every process finds its connections gone
        own_cluster.start()
        before = [len(w.acks) for w in writers]
        wait_for(
            lambda: all(len(w.acks) >= b + 20 for w, b in zip(writers, before, strict=True)),
            30,
            "both writers write again after the restart",
        )
        pause_now(env, paused[2:])
        wait_for(lambda: suspended(env, paused), 30, "the pause after the restart is confirmed")
        stop.touch()
        for writer in writers:
            writer.finish()
        wait_for(lambda: caught_up(env), 30, "the worker folds every write")
        assert worker.poll() is None and forwarder.poll() is None, "neither was restarted"
    finally:
        stop.touch()
        for process in (worker, forwarder):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        for writer in writers:
            if writer.process.poll() is None:
                writer.process.kill()
    ledger = quiet_ledger(env)
    try:
        acks = [ack for writer in writers for ack in writer.acks]
        lost = [(key, note) for key, note in acks if ledger.sim(key).note != note]
        diffs = ledger.verify_views()
        fault_record(
            "worker, forwarder, 2 writers",
            "PostgreSQL restart",
            env,
            acknowledged=len(acks),
            found=len(acks) - len(lost),
            views_equal=diffs == NO_DIFFERENCES,
        )
        assert lost == [], "acknowledged, so found"
        assert diffs == NO_DIFFERENCES
        assert ledger.sims(search="a 1").total >= 1, "the views hold the writers' notes"
        report = ledger.verify_store(views=False)
        assert report.ok, report.summary()
    finally:
        ledger.close()
    names = {e.get("event") for e in events_in(worker_log) + events_in(forwarder_log)}
    assert {"worker.reconnecting", "forwarder.reconnecting"} <= names
