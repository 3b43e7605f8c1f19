"""simledger as a service on PostgreSQL: single commands from several writer processes at
once, against plain SQL doing the same bookkeeping (issue 13, item 5).

    python bench/bench_service.py [--procs 2] [--seconds 10] [--sims 20000] [--group 10000]
                                  [--ready N] [--phases labels,activate,pause,usage,group,batch]
                                  [--keep]

Setup (untimed, progress on stderr), in a fresh schema: ``--sims`` active SIMs each with its
own copy of a package (an allowance never used up here), ``--ready`` (default ``--sims``)
``activation_ready`` SIMs (line, company, own package), and one shared group of ``--group``
active members with the same package as its pool (``_service_setup.py``); then the plain
reference's tables beside them: ``plain_sims`` (status, labels, data left, group,
in-flight operation), ``plain_groups`` (the pool), ``plain_audit`` (a row per command) and
``plain_usage`` (usage records by id).

Each phase runs ``--seconds`` in ``--procs`` processes at once (started together at a
barrier, after an untimed warm-up), first as plain SQL (psycopg 3, autocommit off, one
connection per process: the UPDATE and an audit INSERT in one transaction per command),
then on the engine (one ``SimLedger`` per process) with ``VIEWS_MODE=embedded``, then with
``VIEWS_MODE=external`` while ``python -m simledger.runners.worker`` keeps the views:

* ``labels``:   ``set_labels`` on random SIMs of the own-package fleet.
* ``activate``: ``activate`` of ``activation_ready`` SIMs (the lifecycle's one way into
  ``active``: ``activation_ready → active``), each SIM once.
* ``pause``:    ``pause([one SIM])`` then the carrier's ``confirm`` (two commands), on the
  own-package fleet, each SIM once (``active → suspended``; usage still applies after).
* ``usage``:    ``record_usage`` on random SIMs of the own-package fleet.
* ``group``:    ``record_usage`` on random members of the one shared group.
* ``batch``:    ``record_usage_batch`` of 1,000 records (10 % sent before) on random SIMs
  of the fleet, in records/s; plain: COPY of the rows, then ``INSERT ... ON CONFLICT DO
  NOTHING`` and the balance UPDATEs, one transaction. Skipped when ``SimLedger`` has no
  ``record_usage_batch``.

Printed per phase and side: commands (records) per second over all processes, p50 and p99
latency per call (ms), errors by type, and the ratio engine / plain throughput; then the
targets of the issue, met or not. The schema is dropped at the end unless ``--keep``.

PostgreSQL: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432), POSTGRES_DBNAME (test),
POSTGRES_USER (postgres), POSTGRES_PASSWORD (if set).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from _common import create_schema, keep_or_drop, pg_env
from _service_setup import Fleet, build_engine, build_plain
from _service_work import POOL_PHASES, Outcome, Task, serve

from simledger.application.ledger import SimLedger

PHASES = ("labels", "activate", "pause", "usage", "group", "batch")
TITLES = {
    "labels": "set_labels, random SIMs",
    "activate": "activate, activation_ready SIMs",
    "pause": "pause + confirm, one SIM",
    "usage": "record_usage, own package",
    "group": "record_usage, shared group",
    "batch": "record_usage_batch, 1,000",
}
SIDES = ("plain", "embedded", "external")
SINGLE = ("labels", "activate", "pause", "usage")
"""The single commands of the first target."""

WORKER_READY_SECONDS = 60.0


# ---- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    rate: float
    """Commands (records) per second, over all processes."""
    p50: float
    p99: float
    """Milliseconds per call."""
    errors: Counter[str]
    exhausted: bool
    calls: int


def merge(outcomes: list[Outcome]) -> Figures:
    latencies = sorted(x for o in outcomes for x in o.latencies)
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.errors)

    def percentile(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[max(0, math.ceil(p * len(latencies)) - 1)] * 1000  # nearest rank

    return Figures(
        rate=sum(o.units / o.elapsed for o in outcomes if o.elapsed > 0),
        p50=percentile(0.50),
        p99=percentile(0.99),
        errors=errors,
        exhausted=any(o.exhausted for o in outcomes),
        calls=len(latencies),
    )


# ---- processes ------------------------------------------------------------------------------


class Writers:
    """``procs`` writer processes (spawned once, serving every phase) and the projection
    worker of the external phases."""

    def __init__(self, procs: int, env: dict[str, str], schema: str) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.barrier = self.ctx.Barrier(procs)
        self.results: Any = self.ctx.Queue()
        self.tasks: list[Any] = [self.ctx.Queue() for _ in range(procs)]
        self.env = env
        self.procs: list[BaseProcess] = [
            self.ctx.Process(
                target=serve,
                args=(env, schema, tasks, self.results, self.barrier),
                name=f"bench-writer-{i}",
                daemon=True,
            )
            for i, tasks in enumerate(self.tasks)
        ]
        for proc in self.procs:
            proc.start()
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log: Path | None = None

    def run(self, tasks: list[Task]) -> list[Outcome]:
        for inbox, task in zip(self.tasks, tasks, strict=True):
            inbox.put(task)
        outcomes: list[Outcome] = []
        failures: list[str] = []
        waited_until = time.monotonic() + tasks[0].seconds + 600
        while len(outcomes) + len(failures) < len(tasks):
            try:
                got = self.results.get(timeout=1.0)
            except queue.Empty:
                dead = [p.name for p in self.procs if not p.is_alive()]
                if dead or time.monotonic() > waited_until:
                    raise SystemExit(f"writers stopped answering (dead: {dead})") from None
                continue
            (outcomes if isinstance(got, Outcome) else failures).append(got)
        if failures:
            raise SystemExit("a writer failed: " + "; ".join(map(str, failures)))
        return outcomes

    def start_worker(self) -> None:
        """``python -m simledger.runners.worker`` on the run's store, once it follows it."""
        handle, name = tempfile.mkstemp(prefix="bench_service_worker_", suffix=".log")
        os.close(handle)
        self.worker_log = Path(name)
        with self.worker_log.open("wb") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-P", "-m", "simledger.runners.worker"],
                env={**os.environ, **self.env, "VIEWS_MODE": "external"},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        until = time.monotonic() + WORKER_READY_SECONDS
        while "worker.subscribed" not in self.worker_log.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() > until:
                tail = self.worker_log.read_text(errors="replace")[-2000:]
                self.stop_worker()
                raise SystemExit(f"the projection worker did not start:\n{tail}")
            time.sleep(0.05)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()  # SIGTERM: it stops cleanly
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None
        if self.worker_log is not None:
            self.worker_log.unlink(missing_ok=True)
            self.worker_log = None

    def close(self, *, graceful: bool) -> None:
        """Stop everything: asked to finish (``graceful``), else terminated."""
        self.stop_worker()
        if graceful:
            for inbox in self.tasks:
                inbox.put(None)
            for proc in self.procs:
                proc.join(30)
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def split(keys: list[str], parts: int) -> list[list[str]]:
    """``keys`` in ``parts`` contiguous slices, as even as can be."""
    size, extra = divmod(len(keys), parts)
    bounds = [k * size + min(k, extra) for k in range(parts + 1)]
    return [keys[bounds[k] : bounds[k + 1]] for k in range(parts)]


def tasks_for(
    phase: str, side: str, fleet: Fleet, procs: int, seconds: float, seed: int
) -> list[Task]:
    """Each process's task: a slice of the phase's pool (one-shot phases; the engine's pool
    is halved between its two views modes), or the SIMs to pick from."""
    if phase in POOL_PHASES:
        if side == "plain":
            pool = fleet.plain_ready if phase == "activate" else fleet.plain_active
        else:
            engine_pool = fleet.ready if phase == "activate" else fleet.own
            pool = split(engine_pool, 2)[0 if side == "embedded" else 1]
        keys = split(pool, procs)
    else:
        keys = [fleet.members if phase == "group" else fleet.own] * procs
    return [Task(phase, side, seconds, keys[i], seed + i) for i in range(procs)]


# ---- report ---------------------------------------------------------------------------------


def _errors(errors: Counter[str]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in errors.most_common()) or "-"


def report(results: dict[str, dict[str, Figures]]) -> None:
    print()
    print(
        f"| {'phase':<31} | {'side':<9} | {'per second':>10} | {'p50 ms':>7} | {'p99 ms':>7} "
        f"| {'ratio':>6} | errors"
    )
    print(f"|{'-' * 33}|{'-' * 11}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 8}")
    for phase, sides in results.items():
        plain = sides.get("plain")
        for side, f in sides.items():
            ratio = (
                f"{f.rate / plain.rate:5.2f}x" if plain and plain.rate and side != "plain" else ""
            )
            note = " (pool used up early)" if f.exhausted else ""
            print(
                f"| {TITLES[phase]:<31} | {side:<9} | {f.rate:>10,.0f} | {f.p50:>7.2f} "
                f"| {f.p99:>7.2f} | {ratio:>6} | {_errors(f.errors)}{note}"
            )
    print(
        "per second: commands (batch: records) over all processes; latency per call "
        "(pause + confirm: two calls); ratio: engine / plain SQL throughput"
    )


def targets(results: dict[str, dict[str, Figures]]) -> bool:
    """The issue's targets, each met or not; True when every one evaluated is met."""
    lines: list[tuple[str, bool | None, str]] = []

    def get(phase: str, side: str) -> Figures | None:
        return results.get(phase, {}).get(side)

    for phase in SINGLE:
        f, plain = get(phase, "embedded"), get(phase, "plain")
        what = f"{TITLES[phase]} (embedded): >= 0.5x plain SQL and p99 <= 15 ms"
        if f is None or plain is None or not plain.rate:
            lines.append((what, None, "not run"))
        else:
            ok = f.rate >= 0.5 * plain.rate and f.p99 <= 15.0
            lines.append((what, ok, f"{f.rate / plain.rate:.2f}x, p99 {f.p99:.1f} ms"))
    for mode in ("embedded", "external"):
        group, own = get("group", mode), get("usage", mode)
        what = f"shared-group usage ({mode}): >= 80% of own-package usage, no ConcurrencyConflict"
        if group is None or own is None or not own.rate:
            lines.append((what, None, "not run"))
        else:
            conflicts = group.errors.get("ConcurrencyConflict", 0)
            ok = group.rate >= 0.8 * own.rate and conflicts == 0
            lines.append(
                (what, ok, f"{group.rate / own.rate:.0%}, {conflicts:,} ConcurrencyConflict")
            )
    for mode in ("embedded", "external"):
        f, plain = get("batch", mode), get("batch", "plain")
        what = f"record_usage_batch ({mode}): >= 20,000 records/s and <= 3x plain SQL's time"
        if f is None or plain is None or not f.rate:
            lines.append((what, None, "not run"))
        else:
            ok = f.rate >= 20_000 and plain.rate / f.rate <= 3.0
            lines.append((what, ok, f"{f.rate:,.0f} records/s, {plain.rate / f.rate:.2f}x plain"))
    print()
    print("targets (issue 13):")
    for what, verdict, figures in lines:
        word = "-" if verdict is None else "met" if verdict else "MISSED"
        print(f"  {word:<6} {what}: {figures}")
    return all(verdict is not False for _, verdict, _ in lines)


# ---- main -----------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=2, help="writer processes (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase and side")
    parser.add_argument("--sims", type=int, default=20_000, help="SIMs with their own package")
    parser.add_argument("--group", type=int, default=10_000, help="members of the shared group")
    parser.add_argument(
        "--ready", type=int, default=None, help="activation_ready SIMs (default: --sims)"
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in args.phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phases {unknown}; known: {', '.join(PHASES)}")
    if args.ready is None:
        args.ready = args.sims
    if args.procs < 1 or args.seconds <= 0 or args.sims < 4 * args.procs or args.group < 1:
        parser.error("--procs >= 1, --seconds > 0, --sims >= 4 x --procs, --group >= 1")
    if args.ready < 2 * args.procs:
        parser.error("--ready >= 2 x --procs")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does: writers ended, schema dropped


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    batch = hasattr(SimLedger, "record_usage_batch")
    schema = f"bench_service_{uuid.uuid4().hex[:10]}"
    env = pg_env(schema)
    print(
        f"{args.procs} processes, {args.seconds:g} s per phase and side; {args.sims:,} SIMs "
        f"with their own package, {args.ready:,} activation_ready, a shared group of "
        f"{args.group:,}; schema {schema}",
        flush=True,
    )
    create_schema(schema)
    writers: Writers | None = None
    graceful = False
    try:
        sys.stderr.write("setup (untimed):\n")
        setup = SimLedger(env={**env, "VIEWS_MODE": "external"})
        try:
            fleet = build_engine(setup, args.sims, args.group, args.ready)
            started = time.perf_counter()
            setup.catch_up_views()
            sys.stderr.write(f"  views folded in {time.perf_counter() - started:,.1f} s\n")
            fleet = build_plain(schema, fleet, args.procs, args.seconds)
            writers = Writers(args.procs, env, schema)
            results: dict[str, dict[str, Figures]] = {}
            for number, phase in enumerate(args.phases):
                if phase == "batch" and not batch:
                    print("record_usage_batch: not available", flush=True)
                    continue
                results[phase] = {}
                for side in SIDES:
                    sys.stderr.write(f"  {phase} / {side} ...\n")
                    if side == "external":
                        writers.start_worker()
                    try:
                        seed = 1000 * number + 100 * SIDES.index(side)
                        outcomes = writers.run(
                            tasks_for(phase, side, fleet, args.procs, args.seconds, seed)
                        )
                    finally:
                        writers.stop_worker()
                    results[phase][side] = merge(outcomes)
                    if side == "external":
                        # What the worker left unfolded is not the next embedded phase's cost.
                        setup.catch_up_views()
            graceful = True
        finally:
            setup.close()
        report(results)
        met = targets(results)
        return 0 if met else 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if writers is not None:
            writers.close(graceful=graceful)
        keep_or_drop(schema, args.keep)


if __name__ == "__main__":
    sys.exit(main())
