"""Keep the read models current: batched catch-up, rebuild and verify.

:class:`ViewRunner` reads the ledger's notification log from the views' tracking position,
``batch_size`` events per transaction: decode with the ledger's mapper, load the rows the
batch touches (:func:`~simledger.projections.batch.keys_of`), fold, write rows and the new
position together (:meth:`~simledger.adapters.views.base.ViewStore.exclusive`). Used by the
embedded ledger after every save (read your writes) and by the worker process.

``rebuild`` folds every event into a fresh in-memory store, writes it into scratch tables
and swaps them in; ``verify`` folds into fresh in-memory stores up to the live views'
position, one range of SIMs at a time, and lists every row that differs. Both log
progress every ``progress_every`` events.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from simledger.adapters.logs import get_logger
from simledger.adapters.store.batch_load import gc_paused
from simledger.adapters.views.base import (
    BatchTx,
    IccidRange,
    Partition,
    ViewStore,
    check_views,
)
from simledger.adapters.views.memory import MemoryViewStore
from simledger.adapters.views.wiring import store_for
from simledger.application.views_compare import RangedCompare
from simledger.domain.errors import TamperedEvent
from simledger.projections.batch import Changes, fold, keys_of
from simledger.projections.models import RowDiff

log = get_logger("simledger.views")

BATCH_SIZE = 2000
PROGRESS_EVERY = 100_000
ANALYZE_AFTER = 20_000
"""A catch-up folding this many events refreshes the planner's statistics: a fresh table
filled by one long catch-up has none until autovacuum comes by, and plans go wrong."""
PARALLEL_FROM = 200_000
VERIFY_RANGE = 100_000
"""SIMs a views check rebuilds in memory at once (~0.85 KB each): the check of a bigger
fleet goes range by range, in memory that does not grow with the fleet."""
"""A PostgreSQL rebuild over this many events folds in two processes (each half the SIMs)."""
__all__ = ["BATCH_SIZE", "BULK_FROM", "ViewRunner", "store_for"]

BULK_FROM = 100_000
"""A catch-up this far behind, with most of the log unfolded, rebuilds instead (SQL stores):
one bulk load and one index build per index beat maintaining every index row by row."""


class ViewRunner:
    def __init__(
        self,
        store: ViewStore,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        *,
        batch_size: int = BATCH_SIZE,
        progress_every: int = PROGRESS_EVERY,
        bulk_from: int = BULK_FROM,
    ) -> None:
        self.store = store
        self.bulk_from = bulk_from
        self.recorder = recorder
        self.decode = mapper.to_domain_event
        self.batch_size = batch_size
        self.progress_every = progress_every
        self.on_batch_written: Any = None
        """Test hook: called with (first id, last id) after a batch's writes, before commit."""
        self.on_bad_event: Callable[[TamperedEvent], None] | None = None
        """Called with each stored event that does not decode or fold, which is then left
        out (``verify`` lists them); None: such an event raises :class:`TamperedEvent`."""
        self.partition: Partition | None = None
        """Read only the SIM events of this part of the SIMs (a parallel rebuild's fold)."""
        self.child_env: Mapping[str, str] | None = None
        """The ledger's settings, for a rebuild's second process (set by the ledger)."""
        self.verify_range = VERIFY_RANGE
        """SIMs per range of a views check (:meth:`verify`)."""
        self.parallel_from = PARALLEL_FROM if (os.cpu_count() or 1) >= 2 else sys.maxsize
        """A PostgreSQL rebuild over this many events folds in two processes (one CPU: never)."""
        self.checks = 0
        """How many :meth:`catch_up` calls found the views already caught up..."""
        self.seen = 0
        """...and the views' position the latest of them read: a read made after it is at
        least this new (the HTTP service's position header, without asking again)."""

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0

    # ---- catch-up -----------------------------------------------------------------------
    def _read(self, start: int, stop: int | None = None) -> _Batch:
        notifications = self.store.notifications(
            self.recorder, start, self.batch_size, stop, self.partition
        )
        return notifications, self._decode_all(notifications)

    def _decode_all(self, notifications: Sequence[Notification]) -> list[Any]:
        """The events of ``notifications``; one that does not decode is a
        :class:`TamperedEvent` naming it (skipped after ``on_bad_event`` if one is set)."""
        decode = self.decode
        try:
            return [decode(n) for n in notifications]
        except Exception:  # find which, once, off the fast path
            pass
        events = []
        for n in notifications:
            try:
                events.append(decode(n))
            except Exception as error:
                self._bad_event(n, error, "does not decode")
        return events

    def _bad_event(self, n: Notification, error: Exception, what: str) -> None:
        """Raise (or, with ``on_bad_event``, hand over) the :class:`TamperedEvent` for
        notification ``n`` that failed with ``error``."""
        if isinstance(error, TamperedEvent):
            reason = error.reason
        else:
            reason = f"{what} ({type(error).__name__}: {error})"
        bad = TamperedEvent(
            str(n.originator_id), n.originator_version, reason, topic=n.topic, notification_id=n.id
        )
        if self.on_bad_event is None:
            raise bad from error
        self.on_bad_event(bad)

    def _fold_decoded(
        self, tx: BatchTx, notifications: Sequence[Notification], events: Sequence[Any]
    ) -> None:
        changes = _fold_or_none(tx, events)
        if changes is None:  # folding works on copies: again, knowing which event fails
            changes = self._fold_naming(tx, notifications, events)
        tx.write(changes, notifications[-1].id)
        if self.on_batch_written is not None:
            self.on_batch_written(notifications[0].id, notifications[-1].id)

    def _fold_naming(
        self, tx: BatchTx, notifications: Sequence[Notification], events: Sequence[Any]
    ) -> Changes:
        """Fold ``events`` knowing which one fails: a :class:`TamperedEvent` naming it (or,
        with ``on_bad_event``, the batch folded without it)."""
        watched = _Watched(events)
        while True:
            watched.at = -1
            try:
                keys = keys_of(watched)
                failed = None
            except Exception as error:
                failed = error
            if failed is None:
                touched = tx.load(keys)  # the database's errors are not the events'
                watched.at = -1
                try:
                    return fold(watched, touched)
                except Exception as error:
                    failed = error
            if watched.at < 0:  # before any event: not an event's fault
                raise failed
            event = watched[watched.at]
            n = next(
                (
                    x
                    for x in notifications
                    if x.originator_id == event.originator_id
                    and x.originator_version == event.originator_version
                ),
                None,
            )
            if n is None:  # not a stored event's fault: the code's
                raise failed
            self._bad_event(n, failed, "does not apply to its views")
            watched = _Watched(watched[: watched.at] + watched[watched.at + 1 :])

    def _fold_batch(self, tx: BatchTx, notifications: Sequence[Notification]) -> None:
        self._fold_decoded(tx, notifications, self._decode_all(notifications))

    def catch_up(self, until: int | None = None) -> int:
        """Fold the events after the views' position, up to at least ``until`` (default:
        the last event recorded now), one transaction per batch. Returns how many events
        were folded."""
        if until is None:
            until, position = self.store.head_and_position(self.recorder)
        else:
            position = self.store.position()
        if position >= until:
            self.checks += 1
            self.seen = max(self.seen, position)
            return 0
        behind = until - position
        if (
            self.bulk_from > 0
            and behind >= self.bulk_from
            and 2 * behind >= until
            and self.store.kind != MemoryViewStore.kind
        ):
            log.info("views.catch_up.bulk", position=position, upto=until)
            return self.rebuild() - position
        folded = 0
        with _ReadAhead(self) as reads:
            while True:
                with self.store.exclusive() as tx:
                    start = tx.position
                    if start >= until:
                        break
                    notifications, events = reads.get(start + 1)
                    if not notifications:
                        break
                    if len(notifications) == self.batch_size and notifications[-1].id < until:
                        reads.ahead(notifications[-1].id + 1)
                    self._fold_decoded(tx, notifications, events)
                folded += len(notifications)
        if folded:
            log.debug("views.caught_up", events=folded, position=self.store.position())
        if folded >= ANALYZE_AFTER:
            self.store.analyze()  # now: the next read follows a big catch-up
        elif folded:
            self.store.settle()
        return folded

    def apply_notifications(self, notifications: Sequence[Notification]) -> int:
        """Fold notifications delivered by a subscription; those at or before the views'
        position (already folded by another projector) are skipped."""
        if not notifications:
            return 0
        with self.store.exclusive() as tx:
            fresh = [n for n in notifications if n.id > tx.position]
            if fresh and fresh[0].id > tx.position + 1:
                # Events this subscription did not deliver (it started later): read them.
                missing = list(
                    self.store.notifications(
                        self.recorder,
                        tx.position + 1,
                        fresh[0].id - tx.position,
                        fresh[0].id - 1,
                    )
                )
                fresh = missing + fresh
            for start in range(0, len(fresh), self.batch_size):
                self._fold_batch(tx, fresh[start : start + self.batch_size])
        return len(fresh)

    def _apply_range(
        self,
        tx: BatchTx,
        after: int,
        upto: int,
        label: str = "catch_up",
    ) -> None:
        """Fold the events with ids in ``(after, upto]`` into the tables behind ``tx``, the
        next batch read (and decoded) in a thread meanwhile where the store allows it."""
        position = after
        started = time.monotonic()
        done = reported = 0
        with _ReadAhead(self) as reads:
            while position < upto:
                notifications, events = reads.get(position + 1, upto)
                if not notifications:
                    break
                position = notifications[-1].id
                if position < upto:
                    reads.ahead(position + 1, upto)
                self._fold_decoded(tx, notifications, events)
                done += len(notifications)
                if done - reported >= self.progress_every:
                    reported = done
                    elapsed = time.monotonic() - started
                    log.info(
                        f"views.{label}.progress",
                        events=done,
                        position=position,
                        upto=upto,
                        events_per_s=round(done / elapsed) if elapsed else None,
                    )

    # ---- rebuild and verify -------------------------------------------------------------
    def rebuild(self, views: Sequence[str] | str | None = None) -> int:
        """Replay every event into fresh tables and swap ``views`` in; returns the position."""
        chosen = check_views(views)
        started = time.monotonic()
        upto = self.max_notification_id()
        log.info("views.rebuild.start", views=list(chosen), upto=upto)
        built, _ = self._fold_in_two(upto) if self._parallel(upto) else (None, None)
        if built is None:
            built = MemoryViewStore()
            with gc_paused():
                self._apply_range(built.tx(), 0, upto, label="rebuild")
        folded = time.monotonic()
        position = self.store.install(
            built, chosen, lambda tx, a, b: self._apply_range(tx, a, b, label="rebuild")
        )
        log.info(
            "views.rebuild.done",
            views=list(chosen),
            position=position,
            sims=len(built.all_sims),
            fold_s=round(folded - started, 3),
            install_s=round(time.monotonic() - folded, 3),
        )
        return position

    def drop_staged(self) -> None:
        """Drop the tables a parallel rebuild staged and did not install (its process was
        killed); PostgreSQL stores only. Called when a worker starts."""
        from simledger.adapters.views.postgres import PostgresViewStore

        if isinstance(self.store, PostgresViewStore):
            self.store.drop_staged()

    def _parallel(self, upto: int) -> bool:
        return (
            self.store.kind == "postgres"
            and self.child_env is not None
            and upto >= self.parallel_from
        )

    def _fold_in_two(self, upto: int) -> tuple[MemoryViewStore | None, str | None]:
        """Fold the log in two processes, each for half of the SIMs (and every event that
        is not a SIM's): this one keeps its rows in memory, the other stages its SIM rows in
        a table and sends its counts and operation answers back. Returns this half's views
        with the other's counts and answers added (naming the staged table), and that table;
        (None, None) when the second process failed (logged; the caller folds everything
        here)."""
        from simledger.adapters.views.postgres import STAGED_PREFIX

        store: Any = self.store  # a PostgresViewStore (``_parallel``)
        store.drop_staged()
        staged = f"{STAGED_PREFIX}{secrets.token_hex(4)}"
        request = {"env": dict(self.child_env or {}), "upto": upto, "staged": staged}
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", "simledger.runners.rebuild_part", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        built = MemoryViewStore()
        with ThreadPoolExecutor(1) as talk:
            answer = talk.submit(child.communicate, json.dumps(request).encode())
            self.partition = (0, 2)
            try:
                with gc_paused():
                    self._apply_range(built.tx(), 0, upto, label="rebuild")
            finally:
                self.partition = None
                out, err = answer.result()
        if child.returncode != 0:
            log.warning(
                "views.rebuild.part_failed", code=child.returncode, stderr=err.decode()[-2000:]
            )
            store.drop_staged(staged)
            return None, None
        theirs = pickle.loads(out)  # our own child's answer
        built.add_partition(theirs["counts"], theirs["operations"])
        # Together the two halves hold every event up to ``upto``; this half's last event
        # may be older (the log's last ones can be SIM events of the other half), and a
        # position short of ``upto`` would have those folded a second time afterwards.
        built.tx().write(Changes(), upto)
        built.staged_sims = staged
        return built, staged

    def verify(
        self,
        views: Sequence[str] | str | None = None,
        *,
        bad_events: list[TamperedEvent] | None = None,
    ) -> dict[str, list[RowDiff]]:
        """Rebuild at the live position and list every row that differs, one range of
        about ``verify_range`` SIMs at a time (:mod:`~simledger.application.views_compare`:
        memory bounded by the range, not the fleet). A stored event that does not decode or
        fold raises :class:`TamperedEvent`; with a ``bad_events`` list it is added there
        (once, however many ranges fold it) and left out, and the rest is verified."""
        chosen = check_views(views)
        with self.store.snapshot() as snap:
            bounds = self.store.sim_bounds(self.recorder, self.verify_range) or []
            log.info(
                "views.verify.start", views=list(chosen), upto=snap.position, ranges=len(bounds) + 1
            )
            check = RangedCompare(snap, chosen)
            seen: set[int | None] = set()

            def bad(event: TamperedEvent) -> None:
                if bad_events is not None and event.notification_id not in seen:
                    seen.add(event.notification_id)
                    bad_events.append(event)

            self.on_bad_event = None if bad_events is None else bad
            try:
                for low, high in zip([None, *bounds], [*bounds, None], strict=True):
                    part = IccidRange(low, high)
                    built = MemoryViewStore()
                    self.partition = part if bounds else None
                    with gc_paused():
                        self._apply_range(built.tx(), 0, snap.position, label="verify")
                    check.add(built, part)
                    del built  # before the next range is folded
            finally:
                self.on_bad_event = None
                self.partition = None
            diffs = check.finish()
        log.info(
            "views.verify.done",
            position=snap.position,
            differences={view: len(rows) for view, rows in diffs.items()},
        )
        return diffs


_Batch = tuple[Sequence[Notification], list[Any]]


def _fold_or_none(tx: BatchTx, events: Sequence[Any]) -> Changes | None:
    """The batch's changes, or None when an event does not fold (or name its rows)."""
    try:
        keys = keys_of(events)
    except Exception:
        return None
    touched = tx.load(keys)
    try:
        return fold(events, touched)
    except Exception:
        return None


class _Watched(list[Any]):
    """A batch's events that remember the index of the last one iterated: the one a
    failing fold was at."""

    at = 0

    def __iter__(self) -> Iterator[Any]:
        for self.at, event in enumerate(super().__iter__()):
            yield event


class _ReadAhead:
    """Reads and decodes the next batch in a thread while the current one is folded and
    written (when the store allows reads beside its writes): the database works on one
    batch while Python decodes the next."""

    def __init__(self, runner: ViewRunner, *, enabled: bool = True) -> None:
        self._runner = runner
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="simledger-views-read")
            if enabled and runner.store.concurrent_reads
            else None
        )
        self._pending: tuple[int, int | None, Future[_Batch]] | None = None

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def ahead(self, start: int, stop: int | None = None) -> None:
        if self._pool is not None:
            self._pending = (start, stop, self._pool.submit(self._runner._read, start, stop))

    def get(self, start: int, stop: int | None = None) -> _Batch:
        pending, self._pending = self._pending, None
        if pending is not None and pending[:2] == (start, stop):
            return pending[2].result()
        return self._runner._read(start, stop)
