"""The second process of a parallel audit (``StoreAudit.verify_store``).

``python -m simledger.runners.verify_part`` reads its request as JSON on stdin (the
ledger's settings, the page size), replays the whole store on a ledger of its own
(``replay_store``: every check but the views') and writes the report, pickled, on stdout.
"""

from __future__ import annotations

import json
import pickle
import sys

from simledger.adapters.parent_watch import die_with_parent
from simledger.application.audit import replay_store
from simledger.application.ledger import SimLedger


def main() -> int:
    die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)  # our parent's pid
    request = json.loads(sys.stdin.buffer.read())
    ledger = SimLedger(env=request["env"])
    try:
        report = replay_store(ledger, page=int(request["page"]))
    finally:
        ledger.close()
    sys.stdout.buffer.write(pickle.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
