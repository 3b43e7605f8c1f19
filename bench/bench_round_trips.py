"""Round trips to PostgreSQL per single command, against plain SQL doing the same bookkeeping.

    python bench/bench_round_trips.py [--calls 50]

A round trip is a wait of this process for the server's answer (counted in psycopg's
connection loop: each time it waits to read). On one machine a round trip costs little
time, but each is a wake-up of both processes, and under load it is what single commands
queue on; unlike milliseconds, the count does not depend on what else the machine runs.

Setup (untimed): a fresh schema, 30 active SIMs with their own package, and 30 members of
one shared group. Counted, ``--calls`` calls each, views embedded and external:
``set_labels``, ``record_usage`` on SIMs with their own package, ``record_usage`` on
members of the shared group. Reference: plain SQL doing the same bookkeeping, an UPDATE
and an INSERT of an audit row in one transaction (BEGIN, UPDATE, INSERT, COMMIT, each
waited for, as a plain psycopg program does it). Prints round trips per call and the
ratio to the reference. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable, Generator
from typing import Any

import psycopg
from _common import create_schema, drop_schema, pg_connect, pg_env
from psycopg import waiting

from simledger.application.ledger import SimLedger
from simledger.domain.iccid import make_iccid

_count = [0]


def _counted(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    try:
        value = next(gen)
        while True:
            if value == waiting.Wait.R:
                _count[0] += 1
            value = gen.send((yield value))
    except StopIteration as stop:
        return stop.value


def count_round_trips() -> None:
    """Count, from now on, every wait to read in psycopg's connection loop."""
    original = psycopg.Connection.wait

    def wait(self: psycopg.Connection[Any], gen: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, _counted(gen), *args, **kwargs)

    psycopg.Connection.wait = wait  # type: ignore[method-assign]


def per_call(call: Callable[[int], object], calls: int) -> float:
    _count[0] = 0
    for n in range(calls):
        call(n)
    return _count[0] / calls


def fleet(ledger: SimLedger, start: int) -> tuple[list[str], list[str]]:
    """30 active SIMs with their own package and 30 active members of one shared group."""
    bodies = [f"8944{start:02d}{n:012d}" for n in range(60)]
    keys = ledger.receive_sims(
        [make_iccid(b) for b in bodies], operator="Orange", sim_type="subscription"
    )
    own_package = ledger.create_package("1 TB", data_mb=10**6, validity_days=365)
    pool = ledger.create_package("pool", data_mb=10**6, validity_days=365)
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, "+447700900123")
        ledger.assign_to_company(key, "Acme")
    own, members = keys[:30], keys[30:]
    for key in own:
        ledger.assign_package(key, own_package)
    ledger.create_shared_group("pool", members, pool)
    for key in keys:
        ledger.activate(key)
    return own, members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    schema = f"bench_rt_{uuid.uuid4().hex[:12]}"
    create_schema(schema)
    try:
        with pg_connect(schema) as conn:
            conn.execute("CREATE TABLE plain_sims (iccid text PRIMARY KEY, labels text)")
            conn.execute("CREATE TABLE plain_audit (iccid text, what text, at timestamptz)")
            conn.execute("INSERT INTO plain_sims SELECT g::text, '' FROM generate_series(1, 30) g")
            conn.commit()
        ledgers = {
            mode: SimLedger({**pg_env(schema, default_password="postgres"), "VIEWS_MODE": mode})
            for mode in ("embedded", "external")
        }
        sims = {mode: fleet(ledger, n) for n, (mode, ledger) in enumerate(ledgers.items())}
        count_round_trips()
        with pg_connect(schema) as plain:

            def plain_call(n: int) -> None:
                key = str(n % 30 + 1)
                plain.execute("UPDATE plain_sims SET labels = %s WHERE iccid = %s", (f"x{n}", key))
                plain.execute("INSERT INTO plain_audit VALUES (%s, 'labels', now())", (key,))
                plain.commit()

            reference = per_call(plain_call, args.calls)
        print(f"plain SQL (UPDATE + audit INSERT, one transaction): {reference:.1f} round trips")
        print(f"{'command':<34}{'embedded':>10}{'external':>10}   ratio to plain (embedded)")
        commands: dict[str, Callable[[SimLedger, list[str], list[str]], Callable[[int], object]]]
        commands = {
            "set_labels": lambda led, own, _: lambda n: led.set_labels(own[n % 30], [f"l{n}"]),
            "record_usage, own package": lambda led, own, _: (
                lambda n: led.record_usage(own[n % 30], 1)
            ),
            "record_usage, shared group": lambda led, _, members: (
                lambda n: led.record_usage(members[n % 30], 1)
            ),
        }
        for name, make in commands.items():
            counts = {
                mode: per_call(make(ledger, *sims[mode]), args.calls)
                for mode, ledger in ledgers.items()
            }
            print(
                f"{name:<34}{counts['embedded']:>10.1f}{counts['external']:>10.1f}"
                f"   {counts['embedded'] / reference:.2f}x"
            )
        for ledger in ledgers.values():
            ledger.close()
    finally:
        drop_schema(schema)


if __name__ == "__main__":
    main()
