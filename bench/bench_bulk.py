"""Bulk operations at fleet scale on PostgreSQL: simledger against the plain SQL a user might write.

    python bench/bench_bulk.py [--fleet 1000000] [--n 10000] [--runs 5] [--keep]
                               [--views-mode embedded|external|both]

Setup (untimed, with progress on stderr): a fresh schema holding a fleet of ``--fleet`` SIMs
in the ledger's event store. ``--n`` x ``--runs`` of them (plus a few for a warm-up),
spread evenly over the fleet, are driven to ``active``: their events (received, integration
check passed, line, company, package copy, activated -- the same events the public
commands record) are built with the domain aggregates and saved with ``ledger.save`` in big
batches; every other SIM is received with ``receive_sims`` in chunks of 10,000. Beside it,
in the same schema, the plain-SQL model of the same fleet: ``plain_sims(iccid text primary
key, status text, ...)`` with the same ICCIDs and statuses, and ``plain_audit`` (bigserial
key and an index on ``iccid``, as an audit log read per SIM needs -- two indexes, like the
event table's). Both are ``ANALYZE``d.

Then each run takes a fresh set of ``--n`` active SIMs and times, from the call to the
events committed (and, with ``--views-mode embedded``, the default, the read models folded,
as an embedding program sees the call return; ``external`` leaves them to a worker; ``both``
times each mode on its own fresh SIMs in every run, against the same plain reference):

* ``pause``:   ``ledger.pause(ids)``: N ``PauseRequested`` + one ``BulkOperation.Requested``.
* ``confirm``: ``ledger.confirm_many(op, answers)``: N carrier yeses, N ``Paused`` events.
* ``resume``:  ``ledger.resume(ids)`` of the N SIMs now suspended: N ``ResumeRequested`` + 1.

The plain-SQL reference of each, in the same run on the same database, one transaction:
``UPDATE plain_sims SET status=..., in_flight=... WHERE iccid = ANY(%s)`` plus one audit row
per SIM, inserted either with ``executemany`` (psycopg 3 pipelines it) or with one multi-row
``INSERT ... SELECT unnest(%s::text[])``. Both are timed each run (in alternating order) and
the faster (by median) is the reference of that operation; the report says which.

Printed per operation: median, min and max over the runs (ms), and the ratio engine median
/ reference median. The target (issue 4): at most 2x.

Also printed, against the plain pause: the event store's own share of a pause, measured
after each run's plain round: reading the stored rows of a further ``--n`` active SIMs that
nothing has loaded (as a pause finds them; one set per run, set aside for this) with the
batch load's query, fetched but not decoded, plus writing as many event rows as the run's
last events (their size) through the recorder's statements (lock, notification ids,
``COPY``), in a transaction rolled back (so without the commit's flush). No decoding, rules
or encoding: that is the Python work, shown as this process's CPU time during each engine
pause (``time.process_time``: decoding, the rules, encoding, psycopg's share), which no
overlap with the server can hide.

PostgreSQL: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432), POSTGRES_DBNAME (test),
POSTGRES_USER (postgres), POSTGRES_PASSWORD (if set). The schema is dropped at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _common import active_sims, create_schema, keep_or_drop, pg_connect, pg_env
from _common import pg_settings as pg_settings  # re-exported: scripts use bench_bulk.pg_settings
from eventsourcing.persistence import StoredEvent

from simledger.adapters.store.batch_load import _batch_reader
from simledger.adapters.store.pg_recorder import BulkPostgresApplicationRecorder
from simledger.application.ledger import SimLedger
from simledger.domain.iccid import make_iccid
from simledger.domain.package import Package
from simledger.domain.types import SimType

RECEIVE_CHUNK = 10_000
"""SIMs per ``receive_sims`` call during setup."""

ACTIVE_CHUNK = 1_000
"""Active SIMs per ``ledger.save`` during setup (each is a SIM and its package copy)."""

WARM_UP = 100
"""SIMs of the untimed warm-up round (prepared statements, caches, imports)."""

OPERATIONS = ("pause", "confirm", "resume")
VARIANTS = ("executemany", "multirow")
TARGET = 2.0


# ---- progress -------------------------------------------------------------------------------


class Progress:
    """A one-line progress report on stderr."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def add(self, count: int) -> None:
        self.done += count
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed else 0.0
        left = (self.total - self.done) / rate if rate else 0.0
        sys.stderr.write(
            f"\r  {self.what}: {self.done:,}/{self.total:,} ({rate:,.0f}/s, ~{left:,.0f} s left)   "
        )
        sys.stderr.flush()

    def finish(self) -> None:
        elapsed = time.perf_counter() - self.started
        sys.stderr.write(f"\r  {self.what}: {self.done:,} in {elapsed:,.1f} s{' ' * 30}\n")
        sys.stderr.flush()


@contextmanager
def step(what: str) -> Iterator[None]:
    sys.stderr.write(f"  {what} ...")
    sys.stderr.flush()
    started = time.perf_counter()
    yield
    sys.stderr.write(f" {time.perf_counter() - started:,.1f} s\n")
    sys.stderr.flush()


# ---- the fleet ------------------------------------------------------------------------------


def fleet_iccids(count: int) -> list[str]:
    """``count`` distinct valid ICCIDs (R-SIM1), in ascending order."""
    return [make_iccid(f"8944{k:015d}") for k in range(count)]


def build_fleet(ledger: SimLedger, keys: list[str], active: list[str]) -> None:
    """The fleet in the ledger's store (see the module docstring)."""
    package_id = ledger.create_package("Bench 1 GB", data_mb=1024, validity_days=365)
    package: object = ledger.repository.get(str(package_id))
    assert isinstance(package, Package)
    now = ledger.clock()

    chosen = set(active)
    progress = Progress("active SIMs (7 events each, ledger.save)", len(active))
    for start in range(0, len(active), ACTIVE_CHUNK):
        chunk = active[start : start + ACTIVE_CHUNK]
        ledger.save(*active_sims(package, chunk, now))
        progress.add(len(chunk))
    progress.finish()

    others = [k for k in keys if k not in chosen]
    progress = Progress("other SIMs (receive_sims)", len(others))
    for start in range(0, len(others), RECEIVE_CHUNK):
        chunk = others[start : start + RECEIVE_CHUNK]
        ledger.receive_sims(chunk, operator="Orange", sim_type=SimType.SUBSCRIPTION)
        progress.add(len(chunk))
    progress.finish()


# ---- the plain-SQL reference ----------------------------------------------------------------

PLAIN_TABLES = (
    "CREATE TABLE plain_sims (iccid text PRIMARY KEY, operator text NOT NULL, "
    "sim_type text NOT NULL, status text NOT NULL, msisdn text, company text, "
    "in_flight uuid, updated_at timestamptz NOT NULL)",
    "CREATE TABLE plain_audit (id bigserial PRIMARY KEY, iccid text NOT NULL, "
    "action text NOT NULL, operation_id uuid, at timestamptz NOT NULL)",
    "CREATE INDEX plain_audit_iccid ON plain_audit (iccid)",
)

PLAIN_STEPS = {
    # operation: (new status, in_flight set to the operation?, audit action)
    "pause": ("pausing", True, "pause_requested"),
    "confirm": ("suspended", False, "paused"),
    "resume": ("resuming", True, "resume_requested"),
}


class Plain:
    """The same fleet in plain tables, and the one-transaction SQL of each operation."""

    def __init__(self, schema: str) -> None:
        self.conn = pg_connect(schema)

    def create(self, keys: list[str], active: set[str]) -> None:
        with self.conn.transaction():
            for statement in PLAIN_TABLES:
                self.conn.execute(statement)
        now = datetime.now(UTC).isoformat()
        progress = Progress("plain_sims rows (COPY)", len(keys))
        for start in range(0, len(keys), 100_000):
            buffer = io.StringIO()
            for key in keys[start : start + 100_000]:
                if key in active:
                    buffer.write(
                        f"{key}\tOrange\tsubscription\tactive\t+33600\tBench\t\\N\t{now}\n"
                    )
                else:
                    buffer.write(f"{key}\tOrange\tsubscription\tpending\t\\N\t\\N\t\\N\t{now}\n")
            with (
                self.conn.transaction(),
                self.conn.cursor() as cur,
                cur.copy("COPY plain_sims FROM STDIN") as copy,
            ):
                copy.write(buffer.getvalue())
            progress.add(min(100_000, len(keys) - start))
        progress.finish()

    def run(self, operation: str, variant: str, ids: list[str]) -> None:
        status, with_op, action = PLAIN_STEPS[operation]
        op = uuid.uuid4()
        now = datetime.now(UTC)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                "UPDATE plain_sims SET status = %s, in_flight = %s, updated_at = %s "
                "WHERE iccid = ANY(%s)",
                (status, op if with_op else None, now, ids),
            )
            if variant == "executemany":
                cur.executemany(
                    "INSERT INTO plain_audit (iccid, action, operation_id, at) "
                    "VALUES (%s, %s, %s, %s)",
                    [(i, action, op, now) for i in ids],
                )
            else:
                cur.execute(
                    "INSERT INTO plain_audit (iccid, action, operation_id, at) "
                    "SELECT unnest(%s::text[]), %s, %s, %s",
                    (ids, action, op, now),
                )

    def close(self) -> None:
        self.conn.close()


# ---- timing ---------------------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


@dataclass
class Figures:
    engine: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    plain: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: {(o, v): [] for o in OPERATIONS for v in VARIANTS}
    )
    floor: dict[str, list[float]] = field(default_factory=lambda: {"read": [], "write": []})
    cpu: dict[str, list[float]] = field(default_factory=dict)
    """Per mode: this process's CPU time during each engine pause."""


def store_floor(ledger: SimLedger, cold: list[str], written: list[str]) -> dict[str, float]:
    """The event store's own share of a pause (see the module docstring): the batch load's
    read of the rows of ``cold`` (active SIMs nobody has loaded, as a pause finds them),
    not decoded, and a rolled-back write of as many event rows as the engine's last ones
    for ``written``."""
    reader = _batch_reader(ledger)
    recorder = ledger.recorder
    if reader is None or not isinstance(recorder, BulkPostgresApplicationRecorder):
        raise SystemExit("the store floor needs the PostgreSQL store")
    took: dict[str, float] = {}
    fetched = 0

    def count(rows: Sequence[Any]) -> None:
        nonlocal fetched
        fetched += len(rows)

    took["read"], _ = timed(lambda: reader.read(cold, count))
    if fetched < len(cold):
        raise SystemExit(f"the floor read {fetched} rows for {len(cold)} SIMs")
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
    with recorder.datastore.get_connection() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT e.originator_id, e.originator_version + 1000000, e.topic, e.state "
            f"FROM unnest(%s::text[]) i(id) CROSS JOIN LATERAL (SELECT * FROM {table} e "
            "WHERE e.originator_id = i.id ORDER BY originator_version DESC LIMIT 1) e",
            (written,),
            binary=True,
        )
        rows = [tuple(r.values()) for r in cur.fetchall()]
        conn.rollback()

        def write() -> None:
            with conn.transaction(force_rollback=True), conn.cursor() as curs:
                curs.execute(recorder.prelude_statement)
                recorder._copy(curs, [StoredEvent(*row) for row in rows])

        took["write"], _ = timed(write)
    return took


def engine_round(ledger: SimLedger, ids: list[str]) -> dict[str, float]:
    """Pause, confirm and resume ``ids``; each checked to have done all of its work."""
    took: dict[str, float] = {}
    cpu = time.process_time()
    took["pause"], paused = timed(lambda: ledger.pause(ids))
    took["pause_cpu"] = time.process_time() - cpu
    if len(paused.accepted) != len(ids):
        raise SystemExit(f"pause accepted {len(paused.accepted)} of {len(ids)}: {paused.rejected}")
    answers = dict.fromkeys(ids, True)
    took["confirm"], confirmed = timed(lambda: ledger.confirm_many(paused.operation_id, answers))
    if len(confirmed.applied) != len(ids):
        raise SystemExit(f"confirm_many applied {len(confirmed.applied)} of {len(ids)}")
    took["resume"], resumed = timed(lambda: ledger.resume(ids))
    if len(resumed.accepted) != len(ids):
        raise SystemExit(f"resume accepted {len(resumed.accepted)} of {len(ids)}")
    return took


def plain_round(plain: Plain, ids: list[str], order: Sequence[str]) -> dict[tuple[str, str], float]:
    took: dict[tuple[str, str], float] = {}
    for variant in order:
        for operation in OPERATIONS:
            started = time.perf_counter()
            plain.run(operation, variant, ids)
            took[operation, variant] = time.perf_counter() - started
    return took


# ---- report ---------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):8.1f} {min(ms):8.1f} {max(ms):8.1f}"


def report(figures: Figures, n: int, mode: str) -> bool:
    print()
    runs = len(figures.engine[mode]["pause"])
    print(f"VIEWS_MODE={mode}: times in ms over {runs} runs of {n:,} SIMs: median min max")
    print(
        f"| {'operation':<9} | {'engine':^26} | {'plain executemany':^26} "
        f"| {'plain multi-row':^26} | {'reference':<11} | {'ratio':>6} | target |"
    )
    print(f"|{'-' * 11}|{'-' * 28}|{'-' * 28}|{'-' * 28}|{'-' * 13}|{'-' * 8}|{'-' * 8}|")
    met = True
    for operation in OPERATIONS:
        engine = figures.engine[mode][operation]
        medians = {v: statistics.median(figures.plain[operation, v]) for v in VARIANTS}
        reference = min(VARIANTS, key=lambda v: medians[v])
        ratio = statistics.median(engine) / medians[reference]
        ok = ratio <= TARGET
        met = met and ok
        print(
            f"| {operation:<9} | {_ms(engine)} | {_ms(figures.plain[operation, 'executemany'])} "
            f"| {_ms(figures.plain[operation, 'multirow'])} | {reference:<11} "
            f"| {ratio:5.2f}x | {'met' if ok else 'MISSED':<6} |"
        )
    return met


def report_shares(figures: Figures) -> None:
    """Where an engine pause goes, against the plain pause: the store's I/O alone, and
    this process's CPU (the Python work: decoding, rules, encoding)."""
    read, write = figures.floor["read"], figures.floor["write"]
    both = [r + w for r, w in zip(read, write, strict=True)]
    plain = min(statistics.median(figures.plain["pause", v]) for v in VARIANTS)

    def line(what: str, values: list[float]) -> None:
        ratio = statistics.median(values) / plain
        print(f"| {what:<47} | {_ms(values)} | {ratio:5.2f}x |")

    print()
    print("shares of a pause, ms (median min max) and as a multiple of the plain pause:")
    print(f"| {'':<47} | {'median      min      max':^26} | {'plain':>6} |")
    print(f"|{'-' * 49}|{'-' * 28}|{'-' * 8}|")
    line("store: read the SIMs' rows, not decoded", read)
    line("store: write the events (rolled back)", write)
    line("store: both", both)
    for mode, cpu in figures.cpu.items():
        line(f"engine process CPU during the pause ({mode})", cpu)


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--fleet", type=int, default=1_000_000, help="SIMs in the store")
    parser.add_argument("--n", type=int, default=10_000, help="SIMs per bulk operation")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument(
        "--views-mode",
        choices=("embedded", "external", "both"),
        default=os.environ.get("VIEWS_MODE", "embedded"),
        help="embedded (default): each command also folds the read models before it "
        "returns; external: commands only record events (a worker would fold them); "
        "both: each, on its own fresh SIMs, in every run",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.runs < 1 or args.n > 10_000:
        parser.error("n is 1 to 10,000 (R-BK1); runs at least 1")
    modes = ("external", "embedded") if args.views_mode == "both" else (args.views_mode,)
    warm = min(WARM_UP, args.n)
    # Each mode's warm-up and runs, then one fresh set per run for the store's read share.
    needed = (args.n * args.runs + warm) * len(modes) + args.n * args.runs
    if args.fleet < needed:
        parser.error(f"the fleet needs at least {needed:,} SIMs for these runs and modes")

    schema = f"bench_bulk_{uuid.uuid4().hex[:10]}"
    create_schema(schema)
    env = pg_env(schema)
    print(
        f"fleet {args.fleet:,} SIMs, {args.runs} runs of {args.n:,}, schema {schema}, "
        f"VIEWS_MODE={args.views_mode}",
        flush=True,
    )
    plain: Plain | None = None
    ledgers: dict[str, SimLedger] = {}
    try:
        sys.stderr.write("setup (untimed):\n")
        with step("ICCIDs"):
            keys = fleet_iccids(args.fleet)
            stride = args.fleet // needed
            active = keys[::stride][:needed]
        # The setup ledger leaves the read models to be folded once at the end.
        setup = SimLedger(env={**env, "VIEWS_MODE": "external"})
        try:
            build_fleet(setup, keys, active)
        finally:
            setup.close()
        plain = Plain(schema)
        plain.create(keys, set(active))
        for mode in modes:
            ledgers[mode] = SimLedger(env={**env, "VIEWS_MODE": mode})
        if "embedded" in modes:
            with step("read models folded"):
                ledgers["embedded"].catch_up_views()
        with step("ANALYZE"), pg_connect(schema) as conn:
            conn.execute("ANALYZE")
        del keys

        sys.stderr.write("warm-up (untimed) ...\n")
        sets = iter(range(len(modes) * (args.runs + 1)))

        def fresh() -> list[str]:
            k = next(sets)  # set 0..len(modes)-1: warm-up; then args.n each
            start = k * warm if k < len(modes) else len(modes) * warm + (k - len(modes)) * args.n
            return active[start : start + (warm if k < len(modes) else args.n)]

        for mode in modes:
            warm_ids = fresh()
            engine_round(ledgers[mode], warm_ids)
            plain_round(plain, warm_ids, VARIANTS)

        figures = Figures(
            engine={m: {o: [] for o in OPERATIONS} for m in modes}, cpu={m: [] for m in modes}
        )
        for run in range(args.runs):
            line = []
            for mode in modes:
                ids = fresh()
                if mode == "embedded":
                    ledgers[mode].catch_up_views()  # what other ledgers wrote: not its cost
                gc.collect()
                round_took = engine_round(ledgers[mode], ids)
                figures.cpu[mode].append(round_took.pop("pause_cpu"))
                for operation, seconds in round_took.items():
                    figures.engine[mode][operation].append(seconds)
                line.append(
                    f"{mode}: "
                    + ", ".join(
                        f"{o} {figures.engine[mode][o][-1] * 1000:,.0f}" for o in OPERATIONS
                    )
                )
            order = VARIANTS if run % 2 == 0 else VARIANTS[::-1]
            for key, plain_took in plain_round(plain, ids, order).items():
                figures.plain[key].append(plain_took)
            cold = active[len(active) - (run + 1) * args.n :][: args.n]
            for part, floor_took in store_floor(ledgers[modes[0]], cold, ids).items():
                figures.floor[part].append(floor_took)
            plain_line = ", ".join(
                f"{o} {min(figures.plain[o, v][-1] for v in VARIANTS) * 1000:,.0f}"
                for o in OPERATIONS
            )
            sys.stderr.write(
                f"  run {run + 1}/{args.runs} ms: {'; '.join(line)}; plain: {plain_line}\n"
            )
        met = all([report(figures, args.n, mode) for mode in modes])
        report_shares(figures)
        print(
            "reference: the faster plain variant by median; ratio = engine median / "
            f"reference median; target at most {TARGET:g}x: {'met' if met else 'MISSED'}"
        )
        return 0 if met else 1
    finally:
        if plain is not None:
            plain.close()
        for opened in ledgers.values():
            opened.close()
        keep_or_drop(schema, args.keep)


if __name__ == "__main__":
    sys.exit(main())
