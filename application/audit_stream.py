"""The audit's replay in bounded memory (issue 14 item 14): aggregates in id order.

Reading the log in its order, a replay must hold every aggregate until the end (the fleet).
Here the store is read a range of aggregate ids at a time (adapters/store/id_order.py: whole
histories in (id, version) order, with the range's latest snapshots): each aggregate is
folded and finished before the next range is read. The checks themselves are the caller's
(application/audit.py ``replay_store``: ``fold_notification``, ``finish_aggregate``), so
they are the same as in log order, and so is the digest (ids in order); the problems come
in id order instead of the log's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from simledger.adapters.logs import get_logger
from simledger.adapters.store.batch_load import gc_paused
from simledger.adapters.store.id_order import aggregates_in_order

log = get_logger("simledger")

T = TypeVar("T")

IDS = 2000
"""Aggregates read per range."""


def replay_in_id_order(
    app: Application[str],
    *,
    snapshot: Callable[[dict[str, T], Any], None],
    fold: Callable[[dict[str, T], Notification], None],
    finish: Callable[[str, T], None],
    ids: int | None = None,
) -> bool:
    """Per range of ``ids`` aggregates (default :data:`IDS`): ``snapshot(tracked, s)`` for
    each latest snapshot, ``fold(tracked, n)`` for each event up to the log's end now, then
    ``finish(id, tracked[id])`` for each aggregate of the range, in id order. False, with
    nothing read, when the store cannot be read in id order (in memory)."""
    last = app.recorder.max_notification_id() or 0
    chunks = aggregates_in_order(app, last, IDS if ids is None else ids)
    if chunks is None:
        return False
    events = 0
    for notifications, snapshots in chunks:
        tracked: dict[str, T] = {}
        with gc_paused():  # one object per aggregate, acyclic
            for found in snapshots:
                snapshot(tracked, found)
            for n in notifications:
                fold(tracked, n)
        for originator_id in sorted(tracked):
            finish(originator_id, tracked[originator_id])
        events += len(notifications)
        log.info("audit.progress", events=events, upto=last, replayed=events)
    return True
