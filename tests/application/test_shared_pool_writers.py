"""A shared pool drawn by several writer processes at once (R-SG1, R-SIM6).

Every member's usage draws the one pool, so writers collide on the group's version; a
collision re-runs the usage on fresh state (the group read as the events after the
version the ledger knows). The caller never sees a ``ConcurrencyConflict``; no MB is lost
or counted twice (the pool's draws add up to the members' usage, up to the pool's size);
the pool's depletion pauses every active member exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

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
