"""The second process of a parallel PostgreSQL rebuild (``ViewRunner._fold_in_two``).

``python -m simledger.runners.rebuild_part`` reads its request as JSON on stdin (the
ledger's settings, the last notification id to fold, the name of the table to stage its
SIM rows in), folds part 1 of 2 of the SIMs (and every event that is not a SIM's) up to
that id, stages its SIM rows, and writes its counts and operation rows, pickled, on stdout.
"""

from __future__ import annotations

import json
import pickle
import sys

from simledger.adapters.parent_watch import die_with_parent
from simledger.adapters.store.batch_load import gc_paused
from simledger.adapters.views.memory import MemoryViewStore
from simledger.adapters.views.postgres import PostgresViewStore


def main() -> int:
    from simledger.application.ledger import SimLedger

    die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)  # our parent's pid
    request = json.loads(sys.stdin.buffer.read())
    ledger = SimLedger(env={**request["env"], "VIEWS_MODE": "external"})
    try:
        runner = ledger.views
        store = runner.store
        if not isinstance(store, PostgresViewStore):
            raise SystemExit(f"a parallel rebuild needs PostgreSQL, not {store.kind}")
        runner.partition = (1, 2)
        built = MemoryViewStore()
        with gc_paused():
            runner._apply_range(built.tx(), 0, int(request["upto"]), label="rebuild.part")
        store.stage_sims(str(request["staged"]), built.all_sims.values())
        answer = {"counts": dict(built.all_counts), "operations": dict(built.all_operations)}
    finally:
        ledger.close()
    sys.stdout.buffer.write(pickle.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
