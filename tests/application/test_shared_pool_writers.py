"""A shared pool drawn by several writer processes at once (R-SG1, R-SIM6).

Every member's usage draws the one pool, so writers collide on the group's version; a
collision re-runs the usage on fresh state (the group read as the events after the
version the ledger knows). The caller never sees a ``ConcurrencyConflict``; no MB is lost
or counted twice (the pool's draws add up to the members' usage, up to the pool's size);
the pool's depletion pauses every active member exactly once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from decimal import Decimal

import pytest
from helpers import FakeClock, lined_sims, make_package

from simledger import SimLedger, SimStatus

RECORDS_PER_WRITER = 60
POOL_MB = 100  # 2 writers x 60 records x 1 MB = 120 MB: the pool runs out on the way

_WRITER = """
import sys
from simledger import ConcurrencyConflict, SimLedger
ledger = SimLedger()
keys = sys.argv[1].split(",")
for n in range(int(sys.argv[2])):
    try:
        ledger.record_usage(keys[n % len(keys)], 1)
    except ConcurrencyConflict as conflict:
        print("conflict", conflict, file=sys.stderr)
        sys.exit(3)
ledger.close()
"""


def _events(ledger: SimLedger, aggregate_id: str, name: str) -> list[object]:
    return [e for e in ledger.events.get(aggregate_id) if type(e).__name__ == name]


def test_two_processes_drawing_one_pool_count_every_mb_once(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(persistent_store_env, clock=FakeClock())
    keys = lined_sims(ledger, 6)
    group = ledger.create_shared_group("busy", keys, make_package(ledger, data_mb=POOL_MB))
    for key in keys:
        ledger.activate(key)
    halves = [keys[:3], keys[3:]]
    env = {**os.environ, **persistent_store_env}
    writers = [
        subprocess.Popen(
            [sys.executable, "-P", "-c", _WRITER, ",".join(half), str(RECORDS_PER_WRITER)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for half in halves
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err.decode()

    # Every record is on its SIM; the pool drew exactly what it had.
    recorded = sum(
        (e.mb for k in keys for e in _events(ledger, k, "UsageRecorded")),  # type: ignore[attr-defined]
        Decimal(0),
    )
    assert recorded == 2 * RECORDS_PER_WRITER
    drawn = _events(ledger, str(group), "UsageDrawn")
    assert sum((e.mb for e in drawn), Decimal(0)) == POOL_MB  # type: ignore[attr-defined]
    assert len(_events(ledger, str(group), "Depleted")) == 1
    # Each member paused by the system once, for the empty pool.
    for key in keys:
        pauses = _events(ledger, key, "SuspendedBySystem")
        assert [p.cause for p in pauses] == ["depleted"], key  # type: ignore[attr-defined]
        assert ledger.sim(key).status is SimStatus.SUSPENDED
    assert ledger.shared_group(group).data_left_mb == 0
    assert {i.data_left_mb for i in ledger.sims().items} == {0}
    assert ledger.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}
    ledger.close()


def test_draws_on_postgres_are_decided_under_the_lock_and_never_collide(
    postgres_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL a member's draw is decided inside the save, under the events' table
    lock: two ledgers drawing one pool from two threads take turns, none re-runs."""
    caplog.set_level(logging.INFO, logger="simledger")
    first = SimLedger(postgres_env, clock=FakeClock())
    second = SimLedger(postgres_env, clock=FakeClock())
    keys = lined_sims(first, 4)
    group = first.create_shared_group("busy", keys, make_package(first, data_mb=10_000))
    for key in keys:
        first.activate(key)
    errors: list[BaseException] = []

    def draw(ledger: SimLedger, mine: list[str]) -> None:
        try:
            for n in range(40):
                ledger.record_usage(mine[n % 2], 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=draw, args=(first, keys[:2])),
        threading.Thread(target=draw, args=(second, keys[2:])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert not [r for r in caplog.records if "command.conflict" in r.getMessage()]
    assert first.shared_group(group).data_left_mb == 10_000 - 80
    drawn = _events(first, str(group), "UsageDrawn")
    assert len(drawn) == 80
    assert sum((e.mb for e in drawn), Decimal(0)) == 80  # type: ignore[attr-defined]
    assert first.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}
    first.close()
    second.close()
