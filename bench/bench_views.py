"""Read-model benchmark on PostgreSQL: catch-up, rebuild and ``sims()`` latency.

    python bench/bench_views.py [--events 1000000] [--reuse SCHEMA] [--keep]
                                [--es-events 100000] [--pages 200] [--runs 1]

All in one run, on one store:

1. **Store.** A new schema filled with a realistic mix (or ``--reuse SCHEMA``, a store an
   earlier ``--keep`` run left): per chunk of 10,000 SIMs, ``receive_sims`` of the chunk
   (one event each), then 400 of them integration-checked and given a line, 200 of those
   assigned to a company, given a package copy and activated, 100 drawing usage, labels
   on 100, notes on 50 (saved together, as the commands do, through the domain methods);
   every 10th chunk a bulk pause of 200 active SIMs with 180 carrier answers
   (``confirm_many``), every 25th chunk a shared group of 20 SIMs. SIMs are added until the
   store holds at least ``--events`` events; 1,000,000 gives 1,000,000 SIMs
   and about 1.2 million events.
2. **Catch-up.** The views are reset to empty and :class:`ViewRunner` folds the whole log
   in batches (``bulk_from=0``: no switch to a rebuild), then eventsourcing's
   ``ProjectionRunner`` runs a minimal projection (one upserted row per SIM event, and its
   tracking record, in one transaction per event, as eventsourcing's documentation shows)
   over the first ``--es-events`` events; the ViewRunner is timed over that same prefix
   too. Ratio = ViewRunner events/s over the whole log / ProjectionRunner events/s.
3. **Rebuild.** ``SimLedger.rebuild_views()`` over the whole log (every view, fresh tables
   swapped in), wall time; then ``verify_views()`` reports no difference.
4. **Latency.** ``SimLedger.sims()`` over all SIMs: ``--pages`` pages of 100 rows, each
   with a filter (status or operator), a sort (a different column each sequence, both
   directions) and the cursor of the page before (10 pages per sequence).

Targets (issue 3): catch-up at least 10x the ProjectionRunner, a 1,000,000-event rebuild
under 20 s (scaled: the log's events per second must reach 50,000), p95 under 5 ms.

PostgreSQL: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432), POSTGRES_DBNAME (test),
POSTGRES_USER (postgres), POSTGRES_PASSWORD (default ``x``, for a trust-auth server). The
new schema is dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import singledispatchmethod
from typing import Any

from _common import create_schema, drop_schema, pg_connect, pg_env
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier

from simledger.adapters.store.batch_load import load_many
from simledger.application.ledger import SimLedger
from simledger.application.projection_runner import BULK_FROM, ViewRunner
from simledger.domain.iccid import make_iccid
from simledger.domain.package import Package
from simledger.domain.sim import Sim
from simledger.domain.types import SimStatus, SimType

CHUNK = 10_000
OPERATORS = ("3UK", "Orange", "A1", "3Ireland")
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli")
LABELS = ("fleet", "north", "south", "spare", "vip")
PAGE = 100
PAGES_PER_SEQUENCE = 10


PASSWORD = "x"
"""eventsourcing's factory insists on a password; a trust-auth server ignores it."""


def env_for(schema: str, mode: str = "external") -> dict[str, str]:
    return {
        **pg_env(schema, default_password=PASSWORD),
        "VIEWS_MODE": mode,
        "VIEWS_BULK_FROM": "0",
    }


def say(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


# ---- 1. the store ------------------------------------------------------------------------
def received_so_far(ledger: SimLedger, schema: str) -> int:
    with pg_connect() as conn:
        found = conn.execute(
            SQL("SELECT count(*) FROM {}.{} WHERE topic = %s").format(
                Identifier(schema),
                Identifier(ledger.recorder.events_table_name),  # type: ignore[attr-defined]
            ),
            (f"{Sim.__module__}:{Sim.Received.__qualname__}",),
        ).fetchone()
    return int(found[0]) if found else 0


def generate(ledger: SimLedger, schema: str, events: int, sims: int) -> None:
    """Add chunks of SIMs (and their mix of events) until the store holds at least
    ``events`` events and ``sims`` SIMs; a store generated before is extended."""
    chunk = -(-received_so_far(ledger, schema) // CHUNK)
    rnd = random.Random(7 + chunk)
    package = Package.create(
        str(uuid.uuid4()),
        name="Fleet 1 GB",
        data_mb=Decimal(1024),
        validity_days=30,
        auto_renew=False,
        price=None,
    )
    pool_package = Package.create(
        str(uuid.uuid4()),
        name="Pool 50 GB",
        data_mb=Decimal(51200),
        validity_days=30,
        auto_renew=False,
        price=None,
    )
    ledger.save(package, pool_package)
    started = time.monotonic()
    first = chunk
    while chunk * CHUNK < sims or (ledger.recorder.max_notification_id() or 0) < events:
        base = chunk * CHUNK
        keys = [make_iccid(f"8944{i:015d}") for i in range(base, base + CHUNK)]
        ledger.receive_sims(
            keys,
            operator=rnd.choice(OPERATORS),
            sim_type=rnd.choice(list(SimType)),
            esim=chunk % 20 == 0,
        )
        now = datetime.now(UTC)
        loaded: dict[str, Sim] = load_many(ledger, keys[:400])
        changed: list[Any] = []
        for n, key in enumerate(keys[:400]):
            sim = loaded[key]
            sim.complete_integration_check(ok=True, reason=None)
            sim.assign_line(f"+447700{(base + n) % 1_000_000:06d}")
            if n < 200:
                sim.assign_to_company(rnd.choice(COMPANIES))
                copy = package.copy_for(str(uuid.uuid4()), key, starts_at=now)
                sim.assign_package(package.id, copy.id, package.name)
                sim.activate()
                if n < 100:
                    amount = Decimal(rnd.randint(1, 900))
                    copy.draw(key, amount, now)
                    sim.record_usage(amount, now, None)
                changed.append(copy)
            if 200 <= n < 300:
                sim.set_labels(rnd.sample(LABELS, rnd.randint(1, 2)))
            if 300 <= n < 350:
                sim.set_note(f"bench note {base + n}")
            changed.append(sim)
        ledger.save(*changed)
        if chunk % 10 == 5:
            result = ledger.pause(keys[:200])
            ledger.confirm_many(result.operation_id, {k: True for k in keys[:180]})
        if chunk % 25 == 3:
            ledger.create_shared_group(f"pool {chunk}", keys[360:380], pool_package.id)
        chunk += 1
        if chunk % 10 == 0:
            done = ledger.recorder.max_notification_id() or 0
            elapsed = time.monotonic() - started
            rate = (chunk - first) * CHUNK / elapsed
            say(f"  generated {chunk * CHUNK:,} SIMs, {done:,} events ({rate:,.0f} SIMs/s)")
    done = ledger.recorder.max_notification_id() or 0
    say(f"  store: {chunk * CHUNK:,} SIMs, {done:,} events in {time.monotonic() - started:.0f} s")


# ---- 2. catch-up -------------------------------------------------------------------------
def reset_views(runner: ViewRunner, schema: str) -> None:
    """Empty views at position 0 (the store drops and recreates outdated tables)."""
    with pg_connect() as conn:
        conn.execute(SQL("UPDATE {}.view_tracking SET version = -1").format(Identifier(schema)))
    runner.store._ensure_schema()  # type: ignore[attr-defined]
    assert runner.store.position() == 0


def catch_up_rate(ledger: SimLedger, schema: str, upto: int, *, bulk: bool = False) -> float:
    """Events/s of ``catch_up`` from empty views; ``bulk``: with the default switch to a
    rebuild when far behind (``BULK_FROM``), else batch by batch all the way."""
    runner = ledger.views
    reset_views(runner, schema)
    runner.bulk_from = BULK_FROM if bulk else 0
    progress = threading.Event()

    def report() -> None:
        while not progress.wait(10):
            say(f"  catch-up at {runner.store.position():,} / {upto:,}")

    threading.Thread(target=report, daemon=True).start()
    started = time.perf_counter()
    try:
        folded = runner.catch_up(until=upto)
    finally:
        progress.set()
    elapsed = time.perf_counter() - started
    # Notification ids may have gaps (a rolled-back insert keeps its sequence value), so the
    # events folded can be fewer than the position reached.
    assert runner.store.position() >= upto and folded > 0, (folded, upto)
    return runner.store.position() / elapsed


class EsSimView(PostgresTrackingRecorder):
    """eventsourcing's way to a materialised view: a tracking recorder with a table of its
    own, each row written in the same transaction as the event's tracking record."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.table = Identifier(datastore.schema), Identifier("es_bench_sims")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (iccid text PRIMARY KEY, "
                "last_event text NOT NULL, version bigint NOT NULL)"
            ).format(*self.table)
        )
        self.upsert = SQL(
            "INSERT INTO {}.{} VALUES (%s, %s, %s) ON CONFLICT (iccid) DO UPDATE "
            "SET last_event = excluded.last_event, version = excluded.version"
        ).format(*self.table)

    def record_sim(self, iccid: str, event: str, version: int, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.upsert, (iccid, event, version), prepare=True)
            self._insert_tracking(curs, tracking)


class EsSimProjection(Projection[EsSimView]):
    name = "es_bench"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, Sim.Event):
            self.view.record_sim(
                str(domain_event.originator_id),
                type(domain_event).__name__,
                domain_event.originator_version,
                tracking,
            )
        else:
            self.view.insert_tracking(tracking)


def es_rate(schema: str, upto: int) -> float:
    with pg_connect() as conn:
        for table in ("es_bench_sims", "es_bench_tracking", "notification_tracking"):
            conn.execute(
                SQL("DROP TABLE IF EXISTS {}.{}").format(Identifier(schema), Identifier(table))
            )
    env = env_for(schema)
    started = time.perf_counter()
    runner: ProjectionRunner[SimLedger, EsSimView] = ProjectionRunner(
        application_class=SimLedger,
        projection_class=EsSimProjection,
        view_class=EsSimView,
        env=env,
    )
    try:
        name = runner.app.name
        last_report = time.monotonic()
        while True:
            position = runner.view.max_tracking_id(name) or 0
            if position >= upto:
                break
            if runner.is_interrupted.is_set():
                runner.run_forever(0)  # re-raises the projection's error
                raise RuntimeError("ProjectionRunner stopped")
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                say(f"  ProjectionRunner at {position:,} / {upto:,}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        runner.stop()
    return upto / elapsed


# ---- 4. latency --------------------------------------------------------------------------
def sequences() -> Iterator[dict[str, Any]]:
    sorts = (
        "iccid", "status", "operator", "company", "plan", "data_left_mb", "days_left",
        "this_month_mb", "labels", "note", "end_user", "sim_type", "esim", "group_id",
    )  # fmt: skip
    filters: list[dict[str, Any]] = [
        {"status": SimStatus.PENDING.value},
        {"status": SimStatus.ACTIVE.value},
        {"operator": "Orange"},
        {"operator": "A1"},
        {"status": SimStatus.BLANK.value},
    ]
    k = 0
    while True:
        for sort in sorts:
            yield {**filters[k % len(filters)], "sort": sort, "descending": k % 2 == 1}
            k += 1


def latencies(
    ledger: SimLedger, pages: int, by_sort: dict[str, list[float]] | None = None
) -> tuple[list[float], int]:
    times: list[float] = []
    total = 0
    for spec in sequences():
        cursor: str | None = None
        for _ in range(PAGES_PER_SEQUENCE):
            started = time.perf_counter()
            page = ledger.sims(limit=PAGE, cursor=cursor, **spec)
            times.append((time.perf_counter() - started) * 1000)
            if by_sort is not None:
                by_sort.setdefault(spec["sort"], []).append(times[-1])
            if not page.items:  # a small store may lack the filter's value
                break
            total = max(total, page.total)
            cursor = page.next_cursor
            if len(times) >= pages or cursor is None:
                break
        if len(times) >= pages:
            return times, total
    raise AssertionError("unreachable")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


# ---- main --------------------------------------------------------------------------------
@contextmanager
def store(reuse: str | None, keep: bool, events: int, sims: int) -> Iterator[str]:
    if reuse:
        writer = SimLedger(env_for(reuse))
        if (
            received_so_far(writer, reuse) < sims
            or (writer.recorder.max_notification_id() or 0) < events
        ):
            say(f"extending schema {reuse} to {events:,}+ events and {sims:,}+ SIMs")
            generate(writer, reuse, events, sims)
        writer.close()
        yield reuse
        return
    with fresh_store("bench_views", keep, events, sims) as schema:
        yield schema


@contextmanager
def fresh_store(prefix: str, keep: bool, events: int, sims: int) -> Iterator[str]:
    """A new schema ``<prefix>_<random>`` generated with ``events``+ events and ``sims``+
    SIMs; dropped afterwards unless ``keep``."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_schema(schema)
    try:
        say(f"generating {events:,}+ events and {sims:,}+ SIMs into schema {schema}")
        writer = SimLedger(env_for(schema))
        try:
            generate(writer, schema, events, sims)
        finally:
            writer.close()
        yield schema
    finally:
        if keep:
            say(f"kept schema {schema} (reuse with --reuse {schema})")
        else:
            drop_schema(schema)
            say(f"dropped schema {schema}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="at least this many")
    parser.add_argument("--sims", type=int, help="at least this many SIMs (default: --events)")
    parser.add_argument("--reuse", metavar="SCHEMA", help="measure an existing store")
    parser.add_argument("--keep", action="store_true", help="keep the generated schema")
    parser.add_argument("--es-events", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1, help="rebuilds (median reported)")
    parser.add_argument(
        "--generate-only", action="store_true", help="generate a store, keep it and stop"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sims = args.sims if args.sims is not None else args.events
    with store(args.reuse, args.keep or args.generate_only, args.events, sims) as schema:
        if args.generate_only:
            return 0
        ledger = SimLedger(env_for(schema, "embedded"))
        upto = ledger.recorder.max_notification_id() or 0
        es_upto = min(args.es_events, upto)
        say(f"store {schema}: {upto:,} events; load average {os.getloadavg()}")

        say(f"catch-up: ViewRunner over all {upto:,} events, from empty views")
        ours_all = catch_up_rate(ledger, schema, upto)
        say(f"  {ours_all:,.0f} events/s")
        say(f"catch-up: default catch_up() over all {upto:,} events (bulk: a rebuild)")
        ours_bulk = catch_up_rate(ledger, schema, upto, bulk=True)
        say(f"  {ours_bulk:,.0f} events/s")
        say(f"catch-up: ViewRunner over the first {es_upto:,} events, from empty views")
        ours_prefix = catch_up_rate(ledger, schema, es_upto)
        say(f"  {ours_prefix:,.0f} events/s")
        say(f"catch-up: eventsourcing ProjectionRunner over the first {es_upto:,} events")
        theirs = es_rate(schema, es_upto)
        say(f"  {theirs:,.0f} events/s")

        rebuilds: list[float] = []
        for run in range(args.runs):
            say(f"rebuild {run + 1}/{args.runs}: every view over {upto:,} events")
            started = time.perf_counter()
            ledger.rebuild_views()
            rebuilds.append(time.perf_counter() - started)
            say(f"  {rebuilds[-1]:.1f} s")
        rebuild_s = statistics.median(rebuilds)
        say("verify: rebuild into scratch and compare with the live views")
        diffs = ledger.verify_views()
        differing = sum(len(rows) for rows in diffs.values())
        say(f"  {differing} rows differ")

        say(f"latency: {args.pages} pages of sims()")
        latencies(ledger, 20)  # warm-up: connections, plans, caches
        by_sort: dict[str, list[float]] = {}
        times, _ = latencies(ledger, args.pages, by_sort)
        for sort, values in sorted(by_sort.items(), key=lambda item: -max(item[1])):
            say(
                f"  sort {sort:14s} median {statistics.median(values):7.2f} ms, "
                f"max {max(values):7.2f} ms"
            )
        sims_total = ledger.sims(limit=1).total
        median, high = statistics.median(times), p95(times)
        ledger.close()

    say(f"load average {os.getloadavg()} (2 cores: other work slows every figure)")
    rebuild_rate = upto / rebuild_s
    rows = [
        ("catch-up, all events (ViewRunner)", f"{ours_all:,.0f} ev/s", "", ""),
        (f"catch-up, first {es_upto:,} (ViewRunner)", f"{ours_prefix:,.0f} ev/s", "", ""),
        (f"catch-up, first {es_upto:,} (ProjectionRunner)", f"{theirs:,.0f} ev/s", "", ""),
        ("catch-up, all events, default (bulk = rebuild)", f"{ours_bulk:,.0f} ev/s", "", ""),
        ("catch-up ratio (all events, batches / ProjectionRunner)", f"{ours_all / theirs:.1f}x",
         ">= 10x", ours_all / theirs >= 10),
        ("catch-up ratio (all events, default / ProjectionRunner)", f"{ours_bulk / theirs:.1f}x",
         ">= 10x", ours_bulk / theirs >= 10),
        (f"rebuild, {upto:,} events", f"{rebuild_s:.1f} s ({rebuild_rate:,.0f} ev/s)",
         "1M events < 20 s", rebuild_rate * 20 >= 1_000_000),
        ("  the same, scaled to 1,000,000 events", f"{1_000_000 / rebuild_rate:.1f} s", "", ""),
        ("verify after rebuild", f"{differing} rows differ", "0", differing == 0),
        (f"sims() median, {len(times)} pages over {sims_total:,} SIMs", f"{median:.2f} ms",
         "", ""),
        ("sims() p95", f"{high:.2f} ms", "< 5 ms", high < 5),
        ("SIMs in the view", f"{sims_total:,}", ">= 1,000,000", sims_total >= 1_000_000),
    ]  # fmt: skip
    print()
    print("| measure | result | target | pass |\n|---|---:|---|---|")
    for name, result, target, ok in rows:
        verdict = "" if target == "" else ("PASS" if ok else "FAIL")
        print(f"| {name} | {result} | {target} | {verdict} |")
    return 0 if all(ok for _, _, target, ok in rows if target) else 1


if __name__ == "__main__":
    sys.exit(main())
