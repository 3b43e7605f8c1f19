"""What rules, prices and refills cost a usage batch (issue 17), in memory, in one process:

    python -P bench/bench_rules.py [subscription|paygo|prepaid] [prices] [rules]

200 active SIMs with one big package; four batches of 5,000 records; prints the best.
``prices``: an operator price list (each PAYGO record is charged); ``rules``: a data cap and
an alert on every SIM (through their company). Compare with the same run on main.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from simledger import SimLedger
from simledger.domain.iccid import make_iccid


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else "subscription"
    extra = argv[1:]
    ledger = SimLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    keys = ledger.receive_sims(
        [make_iccid(f"8944{n:015d}") for n in range(200)], operator="3UK", sim_type=kind
    )
    package = ledger.create_package("big", data_mb=10**9, validity_days=3000)
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, "+447700900123")
        ledger.assign_to_company(key, "Acme")
        ledger.assign_package(key, package)
        ledger.activate(key)
    if "prices" in extra:
        start = datetime(2020, 1, 1, tzinfo=UTC)
        ledger.set_prices(
            "3UK", default_per_mb="0.01", per_country={"FR": "0.02"}, effective_from=start
        )
    if "rules" in extra:
        ledger.attach_rule("cap", kind="data_cap", limit=10**8, company="Acme")
        ledger.attach_rule("alert", kind="alert", percent=90, of="data_cap", company="Acme")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    times = []
    for rep in range(4):
        records = [
            {
                "record_id": f"{rep}-{n}",
                "iccid": keys[n % 200],
                "mb": 1,
                "at": t0 + timedelta(seconds=rep * 10_000 + n),
                "country": "FR",
            }
            for n in range(5000)
        ]
        started = time.perf_counter()
        result = ledger.record_usage_batch(records)
        times.append(time.perf_counter() - started)
        assert result.applied == 5000, result
    best = min(times)
    print(
        f"{kind} {' '.join(extra)}: best of 4 batches of 5,000: {best * 1000:.0f} ms "
        f"({5000 / best:.0f} records/s)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
