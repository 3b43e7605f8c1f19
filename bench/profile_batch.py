"""One process's ``record_usage_batch`` taken apart (issue 13): wall time per batch of the
same batches ``bench_service.py --phases batch`` sends, optionally under cProfile, and the
floor: a raw COPY of as many event rows into a copy of the events table.

    python bench/profile_batch.py [--sims 20000] [--batches 20] [--procs 1] [--profile FILE]
                                  [--keep]

With ``--procs 2`` another process sends batches meanwhile (untimed), as in
``bench_service.py``: the timed one's collisions show.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import pstats
import random
import sys
import time
import uuid

from _common import create_schema, drop_schema, pg_connect, pg_env
from _service_setup import build_engine
from _service_work import usage_batches

from simledger.application.ledger import SimLedger


def floor(schema: str, rows: int, batches: int) -> float:
    """Seconds per COPY of ``rows`` event rows (a 200-byte state each) into a table shaped
    as the store's, in its own transaction."""
    payload = b"x" * 200
    with pg_connect(schema) as conn:
        conn.execute(
            "CREATE TABLE floor_events (originator_id uuid, originator_version bigint, "
            "topic text, state bytea, notification_id bigserial, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        took = 0.0
        for _ in range(batches):
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("LOCK TABLE floor_events IN EXCLUSIVE MODE")
                with conn.cursor().copy(
                    "COPY floor_events (originator_id, originator_version, topic, state) FROM STDIN"
                ) as copy:
                    for _ in range(rows):
                        copy.write_row((uuid.uuid4(), 1, "simledger.x:Y", payload))
            took += time.perf_counter() - started
    return took / batches


PHASES: dict[str, float] = {}
CALLS: dict[str, int] = {}


def timed(owner: object, name: str, label: str) -> None:
    """Wrap ``owner.name`` to add its wall time to ``PHASES[label]``."""
    original = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            PHASES[label] = PHASES.get(label, 0.0) + time.perf_counter() - started
            CALLS[label] = CALLS.get(label, 0) + 1

    setattr(owner, name, wrapper)


def instrument() -> None:
    """The phases of a batch: receipts looked up, SIMs and pools loaded, the save (of which
    the transaction under the table lock, and in it the inline view fold), snapshots."""
    from simledger.adapters.store import pg_recorder
    from simledger.adapters.views import postgres
    from simledger.application import projection_runner, unit_of_work
    from simledger.application.commands import usage, usage_late

    uow = unit_of_work.UnitOfWork
    timed(usage.UsageCommands, "_apply", "fold and save (runs)")
    timed(usage.UsageCommands, "_apply_late", "  after a collision, under the lock")
    timed(usage_late.UsageLate, "decide", "      records folded under the lock")
    timed(usage_late.UsageReceipt, "issue", "        receipts issued")
    timed(uow, "existing", "receipt lookup")
    timed(uow, "sims", "SIMs loaded")
    timed(usage.UsageCommands, "_pools", "copies loaded")
    timed(uow, "record", "save (all)")
    timed(pg_recorder.BulkPostgresApplicationRecorder, "_insert_big", "  transaction (locked)")
    timed(pg_recorder, "run_hook", "    inline view fold (pg)")
    timed(projection_runner, "fold", "      fold of the rows")
    timed(postgres.PostgresViewStore, "write_changes", "      rows written")
    timed(postgres.PostgresViewStore, "_copy_sims", "        SIM rows copied")
    timed(uow, "take_snapshots", "  snapshots")


def others(env: dict[str, str], keys: list[str], seed: int) -> None:
    ledger = SimLedger(env={**env, "VIEWS_MODE": "embedded"})
    for batch in usage_batches(random.Random(seed + 100), keys):
        ledger.record_usage_batch(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--profile", help="write cProfile's top functions to this file")
    parser.add_argument("--procs", type=int, default=1, help="writers in all (one timed)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    schema = f"prof_{uuid.uuid4().hex[:8]}"
    create_schema(schema)
    try:
        env = pg_env(schema)
        setup = SimLedger(env={**env, "VIEWS_MODE": "embedded"})
        fleet = build_engine(setup, args.sims, 10, 0)
        # The others send batches meanwhile, as bench_service's writers (not timed).
        writers = [
            multiprocessing.Process(target=others, args=(env, fleet.own, seed), daemon=True)
            for seed in range(1, args.procs)
        ]
        for writer in writers:
            writer.start()
        ledger = SimLedger(env={**env, "VIEWS_MODE": "embedded"})
        source = usage_batches(random.Random(7), fleet.own)
        for _ in range(2):  # warm-up, as bench_service's
            ledger.record_usage_batch(next(source))
        profiler = cProfile.Profile() if args.profile else None
        instrument()
        PHASES.clear()
        times = []
        for _ in range(args.batches):
            batch = next(source)
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            ledger.record_usage_batch(batch)
            if profiler:
                profiler.disable()
            times.append(time.perf_counter() - started)
        for writer in writers:
            writer.terminate()
            writer.join()
        times.sort()
        print(
            f"record_usage_batch: median {times[len(times) // 2] * 1000:.0f} ms, "
            f"min {times[0] * 1000:.0f} ms per 1,000 records"
        )
        for label, took in PHASES.items():
            calls = CALLS[label] / args.batches
            print(f"  {label}: {took / args.batches * 1000:.0f} ms, {calls:.2f} calls per batch")
        print(f"floor, COPY of 3,000 event rows: {floor(schema, 3000, 10) * 1000:.0f} ms")
        if profiler and args.profile:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
            stats.print_stats(80)
            stats.sort_stats("tottime").print_stats(40)
            with open(args.profile, "w") as f:
                f.write(out.getvalue())
    finally:
        if not args.keep:
            drop_schema(schema)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
