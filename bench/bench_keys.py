"""What keys and actors cost (issue 15): ``keys.authenticate`` (every HTTP request calls
it) on PostgreSQL, and one single command with and without an actor.

    python bench/bench_keys.py [--keys 2000] [--calls 2000] [--rounds 40]

``authenticate``: a live key among ``--keys`` in a fresh PostgreSQL schema, ``--calls``
checks, p50 and p99 in microseconds (also an unknown secret). The single command:
``set_note`` on SQLite and in memory, two ledgers in one process (one naming nobody, one
naming an actor), ``--rounds`` interleaved rounds of 50 calls on a fresh SIM each, the
median per call of each, so that load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _common import create_schema, drop_schema, pg_env

from simledger.application.ledger import SimLedger
from simledger.domain.actor import Actor
from simledger.domain.iccid import make_iccid


def percentiles(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """p50 and p99 of ``calls`` calls, in microseconds."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def authenticate(keys: int, calls: int) -> None:
    schema = f"bench_keys_{uuid.uuid4().hex[:8]}"
    create_schema(schema)
    ledger = SimLedger(pg_env(schema, "unused"))
    try:
        for n in range(keys):
            ledger.keys.create(name=f"key {n}", company="Acme", scopes=["bulk"])
        _, secret = ledger.keys.create(name="timed", company="Acme", scopes=["bulk"])
        percentiles(lambda: ledger.keys.authenticate(secret), 200)  # warm: pool, prepared
        live = percentiles(lambda: ledger.keys.authenticate(secret), calls)
        unknown = percentiles(lambda: ledger.keys.authenticate("slk_" + "x" * 43), calls)
    finally:
        ledger.close()
        drop_schema(schema)
    print(
        f"authenticate, PostgreSQL, {keys + 1} keys: live p50 {live[0]:.0f} us, p99 "
        f"{live[1]:.0f} us; unknown p50 {unknown[0]:.0f} us, p99 {unknown[1]:.0f} us"
    )


def ready(ledger: SimLedger, n: int) -> str:
    [key] = ledger.receive_sims([make_iccid(f"8944{n:015d}")], operator="3UK", sim_type="prepaid")
    return key


def single_command(store: str, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp())

    def env(name: str) -> dict[str, str] | None:
        if store == "memory":
            return None
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(folder / name)}

    ledgers = {
        "nobody": SimLedger(env("a.db")),
        "actor": SimLedger(env("b.db"), actor=Actor("key_0123456789ab", "bench")),
    }
    sims = {name: [ready(ledger, n) for n in range(rounds)] for name, ledger in ledgers.items()}
    times: dict[str, list[float]] = {name: [] for name in ledgers}
    for r in range(rounds):
        order = list(ledgers.items())
        for name, ledger in order if r % 2 else reversed(order):
            key = sims[name][r]
            started = time.perf_counter()
            for i in range(50):
                ledger.set_note(key, f"note {i}")
            times[name].append((time.perf_counter() - started) / 50 * 1e6)
    for ledger in ledgers.values():
        ledger.close()
    nobody, actor = (statistics.median(times[name]) for name in ("nobody", "actor"))
    change = (actor / nobody - 1) * 100
    print(
        f"set_note, {store}: nobody named {nobody:.0f} us, "
        f"an actor {actor:.0f} us ({change:+.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    authenticate(args.keys, args.calls)
    for store in ("memory", "sqlite"):
        single_command(store, args.rounds)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
