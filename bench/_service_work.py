"""The writer processes of ``bench_service.py``: each serves the phases its parent sends,
on its own ``SimLedger`` (engine) or its own psycopg connection (plain SQL), and sends back
what it measured.

A process is started once (``multiprocessing``, spawn) and runs every phase: it warms up
(:data:`WARM_UP` calls, untimed), waits at the barrier shared by all writers, then calls for
the phase's seconds, timing each call.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from _common import pg_connect

BATCH = 1_000
"""Usage records per ``record_usage_batch`` call (and per plain COPY)."""

DUPLICATES = 0.10
"""Share of each batch's records sent before (a carrier re-delivering a file)."""

WARM_UP = 10
"""Untimed calls of each process before the barrier (batches: 2)."""

BARRIER_SECONDS = 300.0
"""How long a process waits for the others at the start: the slowest warm-up."""

POOL_PHASES = frozenset({"activate", "pause"})
"""Phases that use each SIM once: a process takes its keys in order, and stops early when
they run out (the report says so)."""


@dataclass(frozen=True)
class Task:
    phase: str
    side: str
    """``plain``, or the engine's views mode: ``embedded`` / ``external``."""
    seconds: float
    keys: list[str]
    """This process's pool (one-shot phases) or the SIMs it picks from at random."""
    seed: int


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    """Seconds per successful call."""
    errors: Counter[str] = field(default_factory=Counter)
    units: int = 0
    """Commands (or usage records) done."""
    elapsed: float = 0.0
    exhausted: bool = False


class _Failed:
    pass


FAILED = _Failed()


class Meter:
    """Times calls into an :class:`Outcome`; an exception counts as an error of its type."""

    def __init__(self) -> None:
        self.outcome = Outcome()

    def call(self, fn: Callable[..., Any], *args: Any, units: int = 1) -> Any:
        started = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as error:
            self.outcome.errors[type(error).__name__] += 1
            return FAILED
        self.outcome.latencies.append(time.perf_counter() - started)
        self.outcome.units += units
        return result


# ---- usage records --------------------------------------------------------------------------


def usage_batches(rng: random.Random, keys: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Batches of :data:`BATCH` records on random ``keys``; :data:`DUPLICATES` of each are
    records of the previous batch again (of the same batch, for the first)."""
    previous: list[dict[str, Any]] = []
    fresh_count = BATCH - int(BATCH * DUPLICATES)
    while True:
        at = datetime.now(UTC)
        fresh = [
            {
                "record_id": uuid.uuid4().hex,
                "iccid": rng.choice(keys),
                "mb": rng.randint(1, 5),
                "at": at,
            }
            for _ in range(fresh_count)
        ]
        again = rng.choices(previous or fresh, k=BATCH - fresh_count)
        batch = fresh + again
        rng.shuffle(batch)
        previous = fresh
        yield batch


# ---- the engine -----------------------------------------------------------------------------


def engine_step(ledger: Any, phase: str, rng: random.Random) -> Callable[[Meter, str], None]:
    """One command (pause: two) of ``phase`` on ``ledger`` for one SIM."""
    if phase == "labels":
        return lambda m, key: m.call(ledger.set_labels, key, ["bench", f"l{rng.randrange(16)}"])
    if phase == "activate":
        return lambda m, key: m.call(ledger.activate, key)
    if phase in ("usage", "group"):
        return lambda m, key: m.call(ledger.record_usage, key, rng.randint(1, 5))
    if phase == "pause":

        def pause(m: Meter, key: str) -> None:
            result = m.call(ledger.pause, [key])
            if result is FAILED:
                return
            if result.rejected:
                m.outcome.errors["pause rejected"] += 1
                return
            m.call(ledger.confirm, result.operation_id, key)

        return pause
    raise ValueError(phase)


def engine_batch(ledger: Any) -> Callable[[Meter, list[dict[str, Any]]], None]:
    def run(m: Meter, records: list[dict[str, Any]]) -> None:
        result = m.call(ledger.record_usage_batch, records, units=len(records))
        if result is not FAILED and result.rejected:
            m.outcome.errors["records rejected"] += len(result.rejected)

    return run


# ---- plain SQL: the same bookkeeping, one transaction per command ---------------------------

AUDIT = "INSERT INTO plain_audit (iccid, action, detail, at) VALUES (%s, %s, %s, now())"

PLAIN_SQL: dict[str, list[tuple[str, str]]] = {
    # phase: [(UPDATE, audit action)], one transaction each
    "labels": [
        (
            "UPDATE plain_sims SET labels = %(labels)s, updated_at = now() WHERE iccid = %(key)s",
            "labels",
        ),
    ],
    "activate": [
        (
            "UPDATE plain_sims SET status = 'active', updated_at = now() "
            "WHERE iccid = %(key)s AND status = 'activation_ready'",
            "activated",
        ),
    ],
    "pause": [
        (
            "UPDATE plain_sims SET in_flight = %(op)s, updated_at = now() "
            "WHERE iccid = %(key)s AND status = 'active' AND in_flight IS NULL",
            "pause_requested",
        ),
        (
            "UPDATE plain_sims SET status = 'suspended', in_flight = NULL, updated_at = now() "
            "WHERE iccid = %(key)s AND in_flight = %(op)s",
            "paused",
        ),
    ],
    "usage": [
        (
            "UPDATE plain_sims SET data_left = data_left - %(mb)s, updated_at = now() "
            "WHERE iccid = %(key)s AND status IN ('active', 'suspended')",
            "usage",
        ),
    ],
    "group": [
        (
            "UPDATE plain_groups SET data_left = data_left - %(mb)s, updated_at = now() "
            "WHERE id = (SELECT group_id FROM plain_sims WHERE iccid = %(key)s "
            "AND status IN ('active', 'suspended'))",
            "usage",
        ),
    ],
}

PLAIN_BATCH = (
    # Rows locked in one order: concurrent batches touching the same SIMs would deadlock.
    "SELECT 1 FROM plain_sims WHERE iccid IN (SELECT iccid FROM plain_staging) "
    "ORDER BY iccid FOR UPDATE",
    "WITH fresh AS (INSERT INTO plain_usage SELECT record_id, iccid, mb, at FROM plain_staging "
    "ON CONFLICT (record_id) DO NOTHING RETURNING iccid, mb), "
    "drawn AS (SELECT iccid, sum(mb) AS mb FROM fresh GROUP BY iccid) "
    "UPDATE plain_sims p SET data_left = p.data_left - drawn.mb, updated_at = now() "
    "FROM drawn WHERE p.iccid = drawn.iccid",
)


class NoRowUpdated(Exception):
    """Plain SQL's IllegalTransition: the row was not in the status the command needs."""


def plain_step(conn: Any, phase: str, rng: random.Random) -> Callable[[Meter, str], None]:
    steps = PLAIN_SQL[phase]

    def transaction(update: str, action: str, params: dict[str, Any]) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(update, params)
                if cur.rowcount != 1:
                    raise NoRowUpdated(params["key"])
                cur.execute(AUDIT, (params["key"], action, params.get("detail")))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def run(m: Meter, key: str) -> None:
        params: dict[str, Any] = {"key": key, "op": uuid.uuid4(), "mb": rng.randint(1, 5)}
        if phase == "labels":
            params["labels"] = ["bench", f"l{rng.randrange(16)}"]
            params["detail"] = ",".join(params["labels"])
        for update, action in steps:
            if m.call(transaction, update, action, params) is FAILED:
                return

    return run


def plain_batch(conn: Any) -> Callable[[Meter, list[dict[str, Any]]], None]:
    def transaction(records: list[dict[str, Any]]) -> None:
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY plain_staging (record_id, iccid, mb, at) FROM STDIN") as cp:
                    for r in records:
                        cp.write_row((r["record_id"], r["iccid"], r["mb"], r["at"]))
                for statement in PLAIN_BATCH:
                    cur.execute(statement)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    return lambda m, records: m.call(transaction, records, units=len(records))


# ---- the process ----------------------------------------------------------------------------


class Writer:
    """What one process holds across phases: a ledger (one views mode at a time) and the
    plain connection."""

    def __init__(self, env: dict[str, str], schema: str) -> None:
        self.env, self.schema = env, schema
        self.ledger: Any = None
        self.mode = ""
        self.conn: Any = None

    def engine(self, mode: str) -> Any:
        if self.mode != mode:
            self.close_ledger()
            from simledger.application.ledger import SimLedger

            self.ledger = SimLedger(env={**self.env, "VIEWS_MODE": mode})
            self.mode = mode
        return self.ledger

    def plain(self) -> Any:
        if self.conn is None:
            self.conn = pg_connect(self.schema)
            self.conn.execute(
                "CREATE TEMP TABLE plain_staging (record_id text, iccid text, mb numeric, "
                "at timestamptz) ON COMMIT DELETE ROWS"
            )
            self.conn.autocommit = False  # a transaction per command, committed by hand
        return self.conn

    def close_ledger(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger, self.mode = None, ""

    def close(self) -> None:
        self.close_ledger()
        if self.conn is not None:
            self.conn.close()

    def run(self, task: Task, barrier: Barrier) -> Outcome:
        rng = random.Random(task.seed)
        source: Iterator[Any]
        if task.phase == "batch":
            source = usage_batches(rng, task.keys)
            if task.side == "plain":
                step: Callable[[Meter, Any], None] = plain_batch(self.plain())
            else:
                step = engine_batch(self.engine(task.side))
            warm_up = 2
        else:
            if task.phase in POOL_PHASES:
                source = iter(task.keys)
            else:
                source = iter(lambda: rng.choice(task.keys), None)
            if task.side == "plain":
                step = plain_step(self.plain(), task.phase, rng)
            else:
                step = engine_step(self.engine(task.side), task.phase, rng)
            warm_up = WARM_UP
        untimed = Meter()
        for _, item in zip(range(warm_up), source, strict=False):
            step(untimed, item)
        meter = Meter()
        barrier.wait(BARRIER_SECONDS)
        started = time.perf_counter()
        deadline = started + task.seconds
        while time.perf_counter() < deadline:
            item = next(source, None)
            if item is None:
                meter.outcome.exhausted = True
                break
            step(meter, item)
        meter.outcome.elapsed = time.perf_counter() - started
        return meter.outcome


def serve(
    env: dict[str, str], schema: str, tasks: Queue[Any], results: Queue[Any], barrier: Barrier
) -> None:
    """A writer process: run each task from ``tasks`` until ``None``; put its
    :class:`Outcome` (or the error that stopped it, as text) on ``results``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends us
    writer = Writer(env, schema)
    try:
        while (task := tasks.get()) is not None:
            try:
                results.put(writer.run(task, barrier))
            except Exception as error:
                barrier.abort()
                results.put(f"{task.side} {task.phase}: {type(error).__name__}: {error}")
    finally:
        writer.close()
