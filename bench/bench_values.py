"""The cost of the domain of values (issue 14 item 11): the argument checks alone, against
the bulk command they guard.

    python bench/bench_values.py [--sims 10000] [--repeat 20]

Timed (best of ``--repeat``): the checks ``pause`` runs on its list of ``--sims`` ICCIDs
(``collection`` + ``distinct``, before any per-ICCID work, which is ``normalise_iccid`` as
before); ``values.iccids`` (``receive_sims``' list: the same ``normalise_iccid`` per item);
one name, one MB amount, one time. Then, as the reference, one in-memory ``pause`` of the
same ``--sims`` received SIMs (each refused in ``pending``, so every one runs the whole
request path). Prints each in microseconds and the list check as a share of the pause.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from simledger.application.ledger import SimLedger
from simledger.domain import values
from simledger.domain.iccid import make_iccid, normalise_iccid


def best(call: Callable[[], object], repeat: int, number: int = 1) -> float:
    """The best of ``repeat`` runs of ``number`` calls, in seconds per call."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            call()
        runs.append((time.perf_counter() - started) / number)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sims", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    keys = [make_iccid(f"8944{n:015d}") for n in range(args.sims)]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    figures = {
        "pause list check": best(
            lambda: values.distinct(values.collection(keys, "ICCIDs"), "ICCIDs"), args.repeat
        ),
        "dict.fromkeys alone (before)": best(lambda: list(dict.fromkeys(keys)), args.repeat),
        "values.iccids": best(lambda: values.iccids(keys), args.repeat),
        "normalise_iccid per item (before)": best(
            lambda: [normalise_iccid(k) for k in keys], args.repeat
        ),
        "one name": best(lambda: values.text("Acme", "company", rule="R-SIM5"), 5, 10_000),
        "one MB amount (text)": best(lambda: values.mb("12.5", rule="R-PK2"), 5, 10_000),
        "one time": best(lambda: values.event_time(now, now), 5, 10_000),
    }
    ledger = SimLedger()
    ledger.receive_sims(keys, operator="3UK", sim_type="prepaid")
    pause = best(lambda: ledger.pause(keys), 3)
    for name, seconds in figures.items():
        print(f"{name:36} {seconds * 1e6:12.1f} us")
    print(f"{'pause (memory, all refused)':36} {pause * 1e6:12.1f} us")
    share = figures["pause list check"] / pause
    print(f"the list check is {share:.2%} of the pause")


if __name__ == "__main__":
    main()
