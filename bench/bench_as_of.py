"""Time travel benchmark: ``sim_as_of`` of one SIM with a long history, on PostgreSQL.

    python bench/bench_as_of.py [--events 1000] [--version 500] [--calls 200]

Setup (untimed): a fresh schema, one SIM received and then given ``--events`` - 1 notes
(``set_note``), so it has ``--events`` events and a snapshot every
``SimLedger.snapshotting_intervals`` events. Timed, each call on its own after 20 untimed
warm-up calls: ``sim_as_of(iccid, version=--version)``, ``--calls`` times; then
``sim_as_of(iccid, at=the time of that version)``, ``--calls`` times; and, as the
reference, eventsourcing's replay of that version from the first event. Prints p50 and
p95 in milliseconds and the ratio to the reference. The schema is dropped at the end.

PostgreSQL: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432), POSTGRES_DBNAME (test),
POSTGRES_USER (postgres), POSTGRES_PASSWORD (if set).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from _common import create_schema, drop_schema, pg_env
from eventsourcing.application import project_aggregate

from simledger.application.ledger import SimLedger
from simledger.domain.iccid import make_iccid

WARM_UP = 20


def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """p50 and p95 of ``calls`` calls, in milliseconds."""
    for _ in range(WARM_UP):
        call()
    times: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(times, n=100)
    return statistics.median(times), cuts[94]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--version", type=int, default=500)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    schema = f"bench_as_of_{uuid.uuid4().hex[:12]}"
    create_schema(schema)
    try:
        ledger = SimLedger(pg_env(schema, default_password="postgres"))
        try:
            [key] = ledger.receive_sims(
                [make_iccid("894412345678901234")], operator="Orange", sim_type="prepaid"
            )
            for n in range(2, args.events + 1):
                ledger.set_note(key, f"note {n}")
            version = args.version
            moment = ledger.sim_as_of(key, version=version).updated_at
            by_version = timed(lambda: ledger.sim_as_of(key, version=version), args.calls)
            by_time = timed(lambda: ledger.sim_as_of(key, at=moment), args.calls)
            # The reference: eventsourcing's own way to a past version, every stored
            # event of the SIM up to it read and folded from the first.
            replay = timed(
                lambda: project_aggregate(None, ledger.events.get(key, lte=version)), args.calls
            )
        finally:
            ledger.close()
    finally:
        drop_schema(schema)
    print(f"SIM of {args.events} events, {args.calls} calls each (ms)")
    print(f"sim_as_of(version={version}): p50 {by_version[0]:.2f}  p95 {by_version[1]:.2f}")
    print(f"sim_as_of(at=time of v{version}): p50 {by_time[0]:.2f}  p95 {by_time[1]:.2f}")
    print(
        f"reference, eventsourcing's replay of v{version} from the first event: "
        f"p50 {replay[0]:.2f}  p95 {replay[1]:.2f}"
    )
    print(
        f"ratio by version / reference (p50): {by_version[0] / replay[0]:.2f}x; "
        f"target p95 < 2 ms: {'met' if by_version[1] < 2 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
