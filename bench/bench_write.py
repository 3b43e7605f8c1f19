"""Write-side benchmark: simledger against plain SQL doing the equivalent work.

    python bench/bench_write.py [--stores memory,sqlite,postgres] [--n 10000] [--runs 5]

Per store, after one small untimed warm-up run, over ``--runs`` runs (a fresh store
each run), three figures:

* ``receive``: ``ledger.receive_sims`` of N new ICCIDs in one call (N ``Received`` events
  in one transaction, after checking none exists yet).
  Reference: one ``executemany`` INSERT of N rows into a plain ``sims`` table, one
  transaction.
* ``pause``: ``ledger.pause`` of N active SIMs, from the call to the events committed
  (N ``PauseRequested`` + one ``BulkOperation.Requested``, one transaction).
  Reference: ``UPDATE sims SET status='suspended' WHERE iccid IN (...)`` (PostgreSQL:
  ``= ANY(%s)``) plus one audit row per SIM, one transaction.
* ``confirm``: N carrier answers in one ``ledger.confirm_many(op, answers)`` (N ``Paused``
  events, one transaction).
  Reference: the same UPDATE of the N rows plus one audit row per SIM, one transaction.

The reference runs in the same run, on the same database (the same SQLite file, the same
PostgreSQL schema); for the in-memory store it is a plain ``dict``. The ratio printed is
engine median / reference median. The N active SIMs of ``pause`` are prepared untimed by
saving ready-made aggregates (5 events each, plus a package copy) in chunks.

``--views-mode`` (default: the ``VIEWS_MODE`` environment variable, else ``embedded``):
with ``embedded`` each save also folds the new events into the read models before the
command returns, as an embedding program sees it; with ``external`` a save only records
the events (a worker process would fold them), which isolates the write path.

PostgreSQL: the server at POSTGRES_HOST:POSTGRES_PORT (default 127.0.0.1:5432), database
POSTGRES_DBNAME (default ``test``), user POSTGRES_USER (default ``postgres``),
POSTGRES_PASSWORD if set; a fresh schema per run, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from _common import active_sims, create_schema, drop_schema, pg_connect, pg_env

from simledger.application.ledger import SimLedger
from simledger.domain.iccid import make_iccid
from simledger.domain.package import Package
from simledger.domain.types import SimType

STORES = ("memory", "sqlite", "postgres")
SETUP_CHUNK = 1000


# ---- stores ---------------------------------------------------------------------------------


class Store:
    """A fresh event store for one run, and a plain-SQL (or dict) reference beside it."""

    name: str

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def plain(self) -> Plain:
        raise NotImplementedError

    def close(self) -> None:
        """Drop whatever the run created."""


class MemoryStore(Store):
    name = "memory"

    def env(self) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}

    def plain(self) -> Plain:
        return DictPlain()


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="simledger-bench-")
        self.path = Path(self.dir.name) / "bench.db"

    def env(self) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(self.path)}

    def plain(self) -> Plain:
        return SqlitePlain(self.path)

    def close(self) -> None:
        self.dir.cleanup()


class PostgresStore(Store):
    name = "postgres"

    def __init__(self) -> None:
        self.schema = f"bench_{uuid.uuid4().hex[:12]}"
        create_schema(self.schema)

    def env(self) -> dict[str, str]:
        return pg_env(self.schema)

    def plain(self) -> Plain:
        return PostgresPlain(self.schema)

    def close(self) -> None:
        drop_schema(self.schema)


def make_store(name: str) -> Store:
    return {"memory": MemoryStore, "sqlite": SqliteStore, "postgres": PostgresStore}[name]()


# ---- the plain references -----------------------------------------------------------------


class Plain:
    """The same work without event sourcing: a ``sims`` table and an audit table."""

    def insert(self, iccids: list[str]) -> None:
        raise NotImplementedError

    def pause(self, iccids: list[str]) -> None:
        raise NotImplementedError

    def confirm(self, iccids: list[str]) -> None:
        """The carriers' answers for ``iccids`` applied in one go (status + audit rows)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _row(iccid: str) -> tuple[str, str, str, str]:
    return (iccid, "Orange", "subscription", "pending")


class DictPlain(Plain):
    def __init__(self) -> None:
        self.sims: dict[str, dict[str, str]] = {}
        self.audit: list[tuple[str, str, datetime]] = []

    def insert(self, iccids: list[str]) -> None:
        self.sims.update(
            (i, {"iccid": i, "operator": "Orange", "sim_type": "subscription", "status": "pending"})
            for i in iccids
        )

    def pause(self, iccids: list[str]) -> None:
        now = datetime.now(UTC)
        for iccid in iccids:
            self.sims[iccid]["status"] = "suspended"
            self.audit.append((iccid, "pause", now))

    def confirm(self, iccids: list[str]) -> None:
        now = datetime.now(UTC)
        for iccid in iccids:
            self.sims[iccid]["status"] = "suspended"
            self.audit.append((iccid, "paused", now))


_SQLITE_TABLES = (
    "CREATE TABLE plain_sims (iccid TEXT PRIMARY KEY, operator TEXT NOT NULL, "
    "sim_type TEXT NOT NULL, status TEXT NOT NULL)",
    "CREATE TABLE plain_audit (id INTEGER PRIMARY KEY, iccid TEXT NOT NULL, "
    "action TEXT NOT NULL, at TEXT NOT NULL)",
)


class SqlitePlain(Plain):
    """Tables beside the event store's, in the same file (so the same WAL journal)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for statement in _SQLITE_TABLES:
            self.conn.execute(statement)

    def insert(self, iccids: list[str]) -> None:
        c = self.conn
        c.execute("BEGIN")
        c.executemany("INSERT INTO plain_sims VALUES (?,?,?,?)", [_row(i) for i in iccids])
        c.execute("COMMIT")

    def pause(self, iccids: list[str], action: str = "pause") -> None:
        c = self.conn
        now = datetime.now(UTC).isoformat()
        c.execute("BEGIN")
        for start in range(0, len(iccids), 30_000):  # under SQLite's 32,766 bound parameters
            chunk = iccids[start : start + 30_000]
            marks = ",".join("?" * len(chunk))
            c.execute(f"UPDATE plain_sims SET status='suspended' WHERE iccid IN ({marks})", chunk)
        c.executemany(
            "INSERT INTO plain_audit (iccid, action, at) VALUES (?, ?, ?)",
            [(i, action, now) for i in iccids],
        )
        c.execute("COMMIT")

    def confirm(self, iccids: list[str]) -> None:
        self.pause(iccids, action="paused")

    def close(self) -> None:
        self.conn.close()


class PostgresPlain(Plain):
    """Tables in the run's schema, through psycopg."""

    def __init__(self, schema: str) -> None:
        self.conn = pg_connect(schema)
        with self.conn.transaction():
            self.conn.execute(
                "CREATE TABLE plain_sims (iccid text PRIMARY KEY, operator text NOT NULL, "
                "sim_type text NOT NULL, status text NOT NULL)"
            )
            self.conn.execute(
                "CREATE TABLE plain_audit (id bigserial PRIMARY KEY, iccid text NOT NULL, "
                "action text NOT NULL, at timestamptz NOT NULL)"
            )

    def insert(self, iccids: list[str]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO plain_sims VALUES (%s, %s, %s, %s)", [_row(i) for i in iccids]
            )

    def pause(self, iccids: list[str], action: str = "pause") -> None:
        now = datetime.now(UTC)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("UPDATE plain_sims SET status='suspended' WHERE iccid = ANY(%s)", (iccids,))
            cur.executemany(
                "INSERT INTO plain_audit (iccid, action, at) VALUES (%s, %s, %s)",
                [(i, action, now) for i in iccids],
            )

    def confirm(self, iccids: list[str]) -> None:
        self.pause(iccids, action="paused")

    def close(self) -> None:
        self.conn.close()


# ---- one run ----------------------------------------------------------------------------------


def iccids(n: int, batch: int) -> list[str]:
    """N valid ICCIDs (R-SIM1), distinct per ``batch``."""
    return [make_iccid(f"8933{batch:04d}{k:011d}") for k in range(n)]


VIEWS_MODE = {"mode": "embedded"}
"""``VIEWS_MODE`` passed to every ledger (``--views-mode``)."""


@contextmanager
def opened(store: Store) -> Iterator[tuple[SimLedger, Plain]]:
    ledger = SimLedger(env={**store.env(), "VIEWS_MODE": VIEWS_MODE["mode"]})
    plain = store.plain()
    try:
        yield ledger, plain
    finally:
        plain.close()
        ledger.close()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def prepare_active(ledger: SimLedger, keys: list[str]) -> None:
    """Save N active SIMs as ready-made aggregates (untimed setup), in chunks."""
    now = datetime.now(UTC)
    package = Package.create(
        str(uuid.uuid4()),
        name="Bench 1 GB",
        data_mb=Decimal(1024),
        validity_days=30,
        auto_renew=False,
        price=None,
    )
    ledger.save(package)
    for start in range(0, len(keys), SETUP_CHUNK):
        ledger.save(*active_sims(package, keys[start : start + SETUP_CHUNK], now))


@dataclass
class Figures:
    engine: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    events: int = 0


def run_once(store_name: str, n: int, results: dict[str, Figures]) -> None:
    # (a) receive N new SIMs, fresh store
    store = make_store(store_name)
    try:
        with opened(store) as (ledger, plain):
            keys = iccids(n, 1)
            results["receive"].engine.append(
                timed(
                    lambda: ledger.receive_sims(
                        keys, operator="Orange", sim_type=SimType.SUBSCRIPTION
                    )
                )
            )
            results["receive"].events = n
            assert ledger.sim(keys[-1]).status.value == "pending"
            results["receive"].plain.append(timed(lambda: plain.insert(iccids(n, 2))))
    finally:
        store.close()

    # (b) pause N active SIMs, then (c) confirm N carrier answers, fresh store
    store = make_store(store_name)
    try:
        with opened(store) as (ledger, plain):
            keys = iccids(n, 3)
            prepare_active(ledger, keys)
            answer: list[Any] = []
            results["pause"].engine.append(timed(lambda: answer.append(ledger.pause(keys))))
            result = answer[0]
            if len(result.accepted) != n:
                raise SystemExit(f"pause accepted {len(result.accepted)} of {n}: bench is wrong")
            results["pause"].events = n + 1

            def confirm_all() -> None:
                answers = {key: True for key in result.accepted}
                done = ledger.confirm_many(result.operation_id, answers)
                assert len(done.applied) == n, done.skipped

            results["confirm"].engine.append(timed(confirm_all))
            results["confirm"].events = n
            assert ledger.sim(keys[0]).status.value == "suspended"

            ref = iccids(n, 4)
            plain.insert(ref)  # untimed setup
            results["pause"].plain.append(timed(lambda: plain.pause(ref)))
            results["confirm"].plain.append(timed(lambda: plain.confirm(ref)))
    finally:
        store.close()


# ---- report ----------------------------------------------------------------------------------

REFERENCES = {
    ("memory", "receive"): "dict.update of N rows",
    ("memory", "pause"): "N dict updates + audit list",
    ("memory", "confirm"): "N dict updates + audit list",
    ("sqlite", "receive"): "executemany INSERT, 1 tx",
    ("sqlite", "pause"): "UPDATE .. IN (..) + N audit rows, 1 tx",
    ("sqlite", "confirm"): "UPDATE .. IN (..) + N audit rows, 1 tx",
    ("postgres", "receive"): "executemany INSERT, 1 tx",
    ("postgres", "pause"): "UPDATE .. = ANY(%s) + N audit rows, 1 tx",
    ("postgres", "confirm"): "UPDATE .. = ANY(%s) + N audit rows, 1 tx",
}


def _spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})"


def report(store: str, results: dict[str, Figures]) -> None:
    for bench, fig in results.items():
        engine = statistics.median(fig.engine)
        plain = statistics.median(fig.plain)
        print(
            f"| {store:<8} | {bench:<7} | {_spread(fig.engine):>24} | {fig.events / engine:>9,.0f} "
            f"| {_spread(fig.plain):>24} | {engine / plain:>7.1f} | {REFERENCES[(store, bench)]} |",
            flush=True,
        )


def _figures() -> dict[str, Figures]:
    return {b: Figures() for b in ("receive", "pause", "confirm")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--views-mode",
        choices=("embedded", "external"),
        default=os.environ.get("VIEWS_MODE", "embedded"),
        help="embedded (the default): each save also folds the read models before the "
        "command returns; external: saves only record events (a worker would fold them)",
    )
    args = parser.parse_args(argv)
    VIEWS_MODE["mode"] = args.views_mode
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown or args.n < 1 or args.runs < 1:
        parser.error(f"stores are {', '.join(STORES)}; n and runs at least 1")
    print(
        f"N={args.n:,} SIMs, {args.runs} runs per store, a fresh store each run, "
        f"VIEWS_MODE={args.views_mode}"
    )
    print("times in ms: median (min-max); ratio = engine median / plain median")
    print(
        f"| {'store':<8} | {'bench':<7} | {'engine ms':>24} | {'events/s':>9} "
        f"| {'plain ms':>24} | {'ratio':>7} | plain reference |"
    )
    print(f"|{'-' * 10}|{'-' * 9}|{'-' * 26}|{'-' * 11}|{'-' * 26}|{'-' * 9}|{'-' * 17}|")
    for store in stores:
        run_once(store, min(args.n, 50), _figures())  # warm-up (imports, caches): not counted
        results = _figures()
        for _ in range(args.runs):
            run_once(store, args.n, results)
        report(store, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
