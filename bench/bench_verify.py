"""The replayable audit at scale on PostgreSQL: ``verify`` against eventsourcing's own replay.

    python bench/bench_verify.py [--events 1000000] [--sims 0] [--keep] [--runs 1]
    python bench/bench_verify.py --reuse SCHEMA [--runs 3]

All in one run, on one store:

1. **Store.** ``--reuse SCHEMA``: an existing schema holding a simledger store (one left by
   ``bench_views.py --keep`` or ``--generate-only``, or by an earlier ``--keep`` run of this
   script), with no event added. Otherwise a new schema filled by ``bench_views.generate``
   (the realistic mix of SIMs, package copies, usage, labels, notes, bulk pauses with
   carrier answers and shared groups described there) until it holds at least ``--events``
   events (and ``--sims`` SIMs, if given); 1,000,000 events take about 835,000 SIMs (about
   1.2 events per SIM) and a few minutes. The read models are then brought up to the end
   of the log (untimed; also on a reused store whose views are behind), so that ``verify``
   compares full views. Printed: events, aggregates (distinct originator ids), the views'
   position.
2. **Timed, in the same run**, ``--runs`` times each, alternating which goes first:

   * **verify** (the engine): ``SimLedger(env).verify_store()`` -- the replay of every event
     (hash chains, rebuild of every aggregate, pools, snapshots; in a child process) beside
     the verification of every read model against its rebuild (in this process). Wall
     time from the call to the report, events/s, ``report.ok``, the replay's own time, peak
     RSS of this process and of the child.
   * **the reference, eventsourcing's own replay**: every stored event read with the
     library's API, ``recorder.select_notifications(start, 10,000, stop,
     inclusive_of_start=False)`` page by page, decoded by a plain ``eventsourcing``
     ``Mapper`` whose ``JSONTranscoder`` has the standard transcodings (``UUIDAsHex``,
     ``DecimalAsStr``, ``DatetimeAsISO``, as ``Application.register_transcodings``
     registers them) with ``mapper.to_domain_event``, and folded with ``event.mutate``
     into one aggregate per originator id kept in a dict (what
     ``eventsourcing.application.project_aggregate`` does for one aggregate). It checks
     nothing and builds no view. It runs as a plain program would, with the cyclic garbage
     collector on (the engine pauses it during its folds); ``--reference-gc-off`` pauses it
     for the reference too.

   Peak RSS is read from ``/proc/self/status`` (``VmHWM``, reset before each measure
   through ``/proc/self/clear_refs``) where Linux allows it, else from
   ``resource.getrusage`` (then a peak since the start of the script); the child's from
   ``getrusage(RUSAGE_CHILDREN)``.
3. **Table**: medians (min-max) over the runs; the target (issue 5): ``verify`` over
   1,000,000 events under 60 s, checked on the time scaled to 1,000,000 events
   (1,000,000 / verify's events per second); the ratio verify / reference. The script
   exits 1 when the target is missed or the report is not ``ok``.

Progress goes to stderr (a line every few seconds during long steps); figures to stdout.

PostgreSQL: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432), POSTGRES_DBNAME (test),
POSTGRES_USER (postgres), POSTGRES_PASSWORD (default ``x``, for a trust-auth server). A new
schema is dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import bench_views
from _common import pg_connect, pg_env
from bench_views import PASSWORD, fresh_store
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from psycopg.sql import SQL, Identifier

from simledger.adapters.store.batch_load import gc_paused
from simledger.application.ledger import SimLedger

TARGET_SECONDS = 60.0
TARGET_EVENTS = 1_000_000
REFERENCE_PAGE = 10_000
TICK = 5.0
"""Seconds between progress lines."""
REFERENCE = "eventsourcing's own replay (select_notifications + Mapper + mutate)"


def say(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


bench_views.say = say  # the generator's progress lines to stderr too


# ---- memory ------------------------------------------------------------------------------
def reset_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where it cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_self_mb() -> float:
    """This process's peak RSS since the last :func:`reset_peak` (else since its start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def peak_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@contextmanager
def ticking(label: str, position: Callable[[], str] | None = None) -> Iterator[None]:
    """A progress line on stderr every ``TICK`` seconds while the block runs."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(TICK):
            where = f", {position()}" if position is not None else ""
            say(f"  {label}: {time.monotonic() - started:.0f} s{where}")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# ---- the store ---------------------------------------------------------------------------
def has_store(schema: str) -> bool:
    """Whether ``schema`` holds an event store (a ``*_events`` table, as eventsourcing names
    it after the application)."""
    with pg_connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name LIKE %s",
            (schema, "%\\_events"),
        ).fetchone()
    return bool(row and row[0])


def store_counts(ledger: SimLedger, schema: str) -> tuple[int, int]:
    """(events, aggregates) of the store: rows and distinct originator ids."""
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    with pg_connect() as conn:
        row = conn.execute(
            SQL("SELECT count(*), count(DISTINCT originator_id) FROM {}.{}").format(
                Identifier(schema), Identifier(table)
            )
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@contextmanager
def store(reuse: str | None, keep: bool, events: int, sims: int) -> Iterator[str]:
    if reuse:
        if not has_store(reuse):
            raise SystemExit(f"schema {reuse!r} holds no simledger store")
        yield reuse
        return
    with fresh_store("bench_verify", keep, events, sims) as schema:
        yield schema


def views_up_to_date(ledger: SimLedger, upto: int) -> int:
    """Fold the log into the read models up to its end (untimed); their position."""
    runner = ledger.views
    if runner.store.position() < upto:
        say(f"views at {runner.store.position():,} / {upto:,}: catching up (untimed)")
        with ticking("catch-up", lambda: f"views at {runner.store.position():,}"):
            runner.catch_up(until=upto)
    return runner.store.position()


# ---- the two measures --------------------------------------------------------------------
@dataclass
class Measure:
    seconds: float
    events: int
    aggregates: int
    peak_mb: float
    child_peak_mb: float = 0.0
    ok: bool = True
    problems: int = 0
    replay_seconds: float = 0.0


def run_verify(env: dict[str, str]) -> tuple[Measure, Any]:
    reset_peak()
    ledger = SimLedger(env)
    try:
        with ticking("verify"):
            started = time.perf_counter()
            report = ledger.verify_store()
            seconds = time.perf_counter() - started
    finally:
        ledger.close()
    measure = Measure(
        seconds=seconds,
        events=report.events,
        aggregates=sum(report.aggregates.values()),
        peak_mb=peak_self_mb(),
        child_peak_mb=peak_children_mb(),
        ok=report.ok,
        problems=len(report.problems),
        replay_seconds=report.replay_seconds,
    )
    return measure, report


def standard_mapper() -> Mapper[Any]:
    """eventsourcing's mapper as a plain ``Application`` builds it without settings."""
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DecimalAsStr())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder)


def run_reference(env: dict[str, str], *, gc_off: bool = False) -> Measure:
    """Read every event with the library's API and fold each aggregate the library's way."""
    reset_peak()
    ledger = SimLedger(env)  # for its recorder: the library's select_notifications
    recorder = ledger.recorder
    mapper = standard_mapper()
    aggregates: dict[Any, Any] = {}
    events = 0
    position = 0
    collector = gc_paused() if gc_off else nullcontext()
    try:
        with ticking("reference", lambda: f"{events:,} events"), collector:
            started = time.perf_counter()
            last = recorder.max_notification_id() or 0
            while position < last:
                notifications = recorder.select_notifications(
                    position, REFERENCE_PAGE, stop=last, inclusive_of_start=False
                )
                if not notifications:
                    break
                for notification in notifications:
                    event: Any = mapper.to_domain_event(notification)
                    key = event.originator_id
                    aggregates[key] = event.mutate(aggregates.get(key))
                events += len(notifications)
                position = notifications[-1].id
            seconds = time.perf_counter() - started
    finally:
        ledger.close()
    return Measure(
        seconds=seconds,
        events=events,
        aggregates=len(aggregates),
        peak_mb=peak_self_mb(),
    )


# ---- report ------------------------------------------------------------------------------
def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        epilog="Details: the module docstring (bench/bench_verify.py) and bench/README.md.",
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="generate at least this many events"
    )
    parser.add_argument(
        "--sims", type=int, default=0, help="and at least this many SIMs (default: as needed)"
    )
    parser.add_argument(
        "--reuse", metavar="SCHEMA", help="measure an existing store (its views caught up first)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated schema")
    parser.add_argument("--runs", type=int, default=1, help="runs of each (medians reported)")
    parser.add_argument(
        "--reference-gc-off",
        action="store_true",
        help="pause the cyclic garbage collector during the reference too, as the engine does",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.events < 1:
        parser.error("--runs and --events are at least 1")
    logging.basicConfig(level=logging.WARNING)

    with store(args.reuse, args.keep, args.events, args.sims) as schema:
        env = pg_env(schema, default_password=PASSWORD)
        ledger = SimLedger(env)
        try:
            upto = ledger.recorder.max_notification_id() or 0
            views_at = views_up_to_date(ledger, upto)
            say("counting the store's events and aggregates")
            events, aggregates = store_counts(ledger, schema)
        finally:
            ledger.close()
        print(
            f"store {schema}: {events:,} events, {aggregates:,} aggregates, log position "
            f"{upto:,}, views at {views_at:,}; load average {os.getloadavg()}",
            flush=True,
        )

        verifies: list[Measure] = []
        references: list[Measure] = []
        last_report: Any = None
        for run in range(args.runs):
            order = ("verify", "reference") if run % 2 == 0 else ("reference", "verify")
            for which in order:
                say(f"run {run + 1}/{args.runs}: {which} over {upto:,} events")
                if which == "verify":
                    measure, last_report = run_verify(env)
                    verifies.append(measure)
                    print(
                        f"run {run + 1} verify: {measure.seconds:.1f} s, "
                        f"{measure.events / measure.seconds:,.0f} events/s, "
                        f"ok={measure.ok} ({measure.problems} problems), replay "
                        f"{measure.replay_seconds:.1f} s, peak RSS {measure.peak_mb:,.0f} MB "
                        f"+ child {measure.child_peak_mb:,.0f} MB",
                        flush=True,
                    )
                else:
                    measure = run_reference(env, gc_off=args.reference_gc_off)
                    references.append(measure)
                    print(
                        f"run {run + 1} reference: {measure.seconds:.1f} s, "
                        f"{measure.events / measure.seconds:,.0f} events/s, "
                        f"{measure.aggregates:,} aggregates, peak RSS "
                        f"{measure.peak_mb:,.0f} MB",
                        flush=True,
                    )

    assert last_report is not None
    print(f"verify report (last run): {last_report.summary()}")
    for problem in last_report.problems[:10]:
        print(f"  problem: {problem}")
    if len(last_report.problems) > 10:
        print(f"  ... {len(last_report.problems) - 10} more problems")
    print(f"load average {os.getloadavg()} (2 cores: other work slows every figure)")

    n = verifies[0].events
    verify_s = statistics.median(m.seconds for m in verifies)
    reference_s = statistics.median(m.seconds for m in references)
    scaled = verify_s * TARGET_EVENTS / n if n else float("inf")
    ratios = [v.seconds / r.seconds for v, r in zip(verifies, references, strict=True)]
    ratio = f"{verify_s / reference_s:.2f}x"
    if len(ratios) > 1:
        ratio += f" (per run {min(ratios):.2f}-{max(ratios):.2f}x)"
    all_ok = all(m.ok for m in verifies)
    problems = max(m.problems for m in verifies)
    gc_note = ", GC paused" if args.reference_gc_off else ""
    rows = [
        (
            f"verify, {n:,} events: `SimLedger.verify_store()`, s",
            f"{spread([m.seconds for m in verifies])} ({n / verify_s:,.0f} ev/s)",
            "1M events < 60 s",
            scaled < TARGET_SECONDS,
        ),
        ("  the same, scaled to 1,000,000 events, s", f"{scaled:.1f}", "< 60 s",
         scaled < TARGET_SECONDS),
        ("  its replay alone (child process), s",
         spread([m.replay_seconds for m in verifies]), "", ""),
        ("  report", f"ok={all_ok}, {problems} problems", "ok", all_ok),
        ("  peak RSS, this process + replay child, MB",
         f"{spread([m.peak_mb for m in verifies], '{:,.0f}')} + "
         f"{spread([m.child_peak_mb for m in verifies], '{:,.0f}')}", "", ""),
        (f"reference: {REFERENCE}{gc_note}, {references[0].events:,} events, s",
         f"{spread([m.seconds for m in references])} "
         f"({references[0].events / reference_s:,.0f} ev/s)", "", ""),
        ("  peak RSS, MB", spread([m.peak_mb for m in references], "{:,.0f}"), "", ""),
        ("ratio verify / reference (medians)", ratio, "", ""),
    ]  # fmt: skip
    print()
    print(f"runs: {args.runs}; medians (min-max)")
    print("| measure | figure | target | pass |\n|---|---:|---|---|")
    for name, figure, target, ok in rows:
        verdict = "" if target == "" else ("PASS" if ok else "FAIL")
        print(f"| {name} | {figure} | {target} | {verdict} |")
    return 0 if scaled < TARGET_SECONDS and all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
