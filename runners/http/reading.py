"""Read-your-writes: a read with ``min_position=P`` waits (bounded by the settings) until
the views reflect position P; if they do not in time, 503 with ``Retry-After`` (the data is
coming: ask again), never data older than asked for. A P beyond the store's last position
was never given out by any ``serve`` on the store (a write's response carries its own,
committed, position): 422."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Query

from simledger.application.service_reads import store_position, views_position
from simledger.runners.http.auth import Caller
from simledger.runners.http.problems import Problem

MinPosition = Annotated[
    int | None,
    Query(ge=0, le=2**62, description="answer with data at least this new (a position)"),
]


def reach(caller: Caller, position: int | None) -> None:
    """Returns once the views reflect ``position`` (folding what the store already has);
    503 after the settings' wait. The ledger lock is let go between looks."""
    if position is None:
        return
    ledger = caller.service.ledger
    deadline = time.monotonic() + caller.service.settings.min_position_wait
    while True:

        def look() -> bool:
            if views_position(ledger) >= position:
                return True
            if store_position(ledger) < position:
                raise Problem(
                    422,
                    f"min_position {position} is beyond the store's last position",
                    rule="R-IN2",
                )
            ledger.catch_up_views()
            return views_position(ledger) >= position

        if caller.service.call(look):
            return
        if time.monotonic() >= deadline:
            raise Problem(
                503,
                f"the views have not reached position {position} yet",
                headers={"Retry-After": "1"},
            )
        time.sleep(0.02)
