"""The audit's replay in bounded memory (issue 14 item 14): aggregates in id order.

``replay_store`` of application/audit.py reads the log in its order, so it must hold every
aggregate until the end (the fleet). Here the store is read a range of aggregate ids at a
time (adapters/store/id_order.py: whole histories in (id, version) order, with the range's
latest snapshots): each aggregate is folded, checked and finished (pools' balance, snapshot
anchor, digest) before the next range is read. Every check is the same
(``fold_notification``, ``finish_aggregate``) and so is the digest (ids in order); the
problems come in id order instead of the log's.
"""

from __future__ import annotations

import hashlib
import time

from eventsourcing.application import Application

from simledger.adapters.logs import get_logger
from simledger.adapters.store.batch_load import gc_paused
from simledger.adapters.store.id_order import aggregates_in_order
from simledger.application.audit import (
    VerifyReport,
    _state_decoder,
    _Tracked,
    finish_aggregate,
    fold_notification,
)

log = get_logger("simledger")

IDS = 2000
"""Aggregates read per range."""


def replay_in_id_order(app: Application[str], *, ids: int = IDS) -> VerifyReport | None:
    """Every check of ``replay_store``, a range of aggregates at a time; None when the store
    cannot be read in id order (in memory)."""
    started = time.monotonic()
    last = app.recorder.max_notification_id() or 0
    chunks = aggregates_in_order(app, last, ids)
    if chunks is None:
        return None
    report = VerifyReport()
    state_of = _state_decoder(app)
    heads = hashlib.sha256()
    for notifications, snapshots in chunks:
        tracked: dict[str, _Tracked] = {}
        with gc_paused():
            for snapshot in snapshots:
                one = tracked[str(snapshot.originator_id)] = _Tracked()
                one.snapshot, one.snapshot_at = snapshot, snapshot.originator_version
            for n in notifications:
                fold_notification(report, tracked, n, state_of)
        report.chains_checked += len(tracked)
        for originator_id in sorted(tracked):
            finish_aggregate(report, heads, originator_id, tracked[originator_id])
        log.info("audit.progress", events=report.events, upto=last, replayed=report.events)
    report.digest = heads.hexdigest()
    report.seconds = report.replay_seconds = time.monotonic() - started
    log.info("audit.replayed", events=report.events, aggregates=report.chains_checked)
    return report
