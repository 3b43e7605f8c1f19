"""The read models folded inside a save's own transaction (embedded views, as Marten's
inline projections): the hook a ledger hands its recorder (adapters/store/in_transaction.py)
and the folds it runs, after the INSERT (``fold_inline``: SQLite, big saves) or before it
(``fold_early``: a pipelining PostgreSQL save, two round trips; ARCHITECTURE.md)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from eventsourcing.persistence import ApplicationRecorder, Notification

from simledger.adapters.store.in_transaction import InTransaction
from simledger.adapters.views.base import BatchTx, EarlyOpening, EarlyViews, Opening, ViewStore
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.projections.batch import Keys, fold, keys_of
from simledger.projections.batch_state import Touched


class Runner(Protocol):
    """What the folds use of the ledger's view runner (application/projection_runner.py)."""

    store: ViewStore
    recorder: ApplicationRecorder
    batch_size: int

    def _fold_batch(self, tx: BatchTx, notifications: Sequence[Notification]) -> None: ...


class InlineFold(InTransaction):
    """A save's events folded into the views inside its transaction: the tracking lock and
    the rows are asked for as the INSERT leaves (``before``), the fold written once the
    ids are known (``after``)."""

    def __init__(
        self, runner: Runner, events: Sequence[Any], done: threading.local, early: bool
    ) -> None:
        self.runner = runner
        self.events = events
        """The save's events: the list the save itself holds, so that events it decides
        in the transaction (a late decision, put first) are folded too."""
        self.done = done
        self.opening: Opening | None = None
        self.keys: Keys | None = None
        self.early = early
        self.early_opening: EarlyOpening | None = None
        self.send: Callable[[str], None] | None = None
        self.hinted: list[Any] = []

    def before(self, connection: Any) -> None:
        self.keys = keys_of(self.events)
        self.opening = self.runner.store.inline_send(connection, self.keys)

    def after(self, connection: Any, ids: Sequence[int]) -> None:
        if fold_inline(self.runner, connection, self.events, ids, self.keys, self.opening):
            # Read by ``saved`` on this thread after the commit: nothing left to fold.
            self.done.upto = ids[-1]

    # ---- the two-round-trip save of a pipelining store (in_transaction.py) ----
    def early_reads(self, connection: Any) -> None:
        keys = keys_of(self.events)
        for aggregate in self.hinted:  # rows a late decision will write: read them now
            if isinstance(aggregate, Sim):
                keys.iccids.add(aggregate.id)
            elif isinstance(aggregate, SharedGroup):
                keys.group_ids.add(aggregate.id)
        self.keys = keys
        # ``early`` was set from the store's kind once per ledger (ViewQueries.inline_fold):
        # no runtime-protocol check per save here.
        store = cast(EarlyViews, self.runner.store)
        self.early_opening = store.early_send(connection, keys)

    def early_fold(self, connection: Any, log_end: int) -> None:
        assert self.keys is not None and self.early_opening is not None
        self.send = fold_early(self.runner, self.events, self.keys, self.early_opening, log_end)

    def early_writes(self, connection: Any, log_end_sql: str) -> None:
        if self.send is not None:
            self.send(log_end_sql)

    def early_done(self, ids: Sequence[int]) -> None:
        if self.send is not None and ids:
            self.done.upto = ids[-1]

    def hint(self, aggregates: Sequence[Any]) -> None:
        self.hinted = list(aggregates)


def fold_inline(
    runner: Runner,
    connection: object,
    events: Sequence[Any],
    ids: Sequence[int],
    keys: Keys | None = None,
    opening: Opening | None = None,
) -> bool:
    """Fold a save's ``events`` (given ``ids``, in order) into the views inside the
    event store's transaction on ``connection``, from the objects in memory: no
    read-back, no second transaction, the position written with the rows. Events
    recorded before these and not folded yet (a worker behind, a writer that does not
    fold) are read and folded first when there are at most ``batch_size`` of them;
    beyond that nothing is folded here and False says so (the catch-up after the
    commit folds them all). True when the views now stand at ``ids[-1]``. ``keys`` and
    ``opening``: the events' keys, and the batch already asked for (``store.inline_send``)."""
    keys = keys_of(events) if keys is None else keys
    opened = opening() if opening is not None else runner.store.inline(connection, keys)
    if opened is None:
        return False
    tx, rows = opened
    touched = _fold_unfolded(runner, tx, rows, keys, ids[0] - 1)
    if touched is None:
        return False
    tx.write(fold(events, touched), ids[-1])
    return True


def fold_early(
    runner: Runner,
    events: Sequence[Any],
    keys: Keys,
    opening: EarlyOpening,
    log_end: int,
) -> Callable[[str], None] | None:
    """:meth:`fold_inline` for a save whose INSERT is not sent yet (a pipelining
    store's two-round-trip save): ``opening`` brings the rows of ``keys`` and the
    views' position, ``log_end`` is the log's last id under the table lock. Folds
    ``events`` (rows they need beyond ``keys`` are read now) and returns what sends
    the writes, the position given as the SQL of the log's last id once the INSERT
    ran; None when the views are too far behind to fold here."""
    opened = opening()
    if opened is None:
        return None
    tx, rows = opened
    touched = _fold_unfolded(runner, tx, rows, keys, log_end)
    if touched is None:
        return None
    extra = _beyond(keys_of(events), keys)
    if extra is not None:  # a late decision wrote rows it did not name beforehand
        more = tx.load(extra)
        touched = Touched(
            sims={**touched.sims, **more.sims},
            groups={**touched.groups, **more.groups},
            operations={**touched.operations, **more.operations},
        )
    changes = fold(events, touched)
    return lambda position_sql: tx.write_at(changes, position_sql)


def _fold_unfolded(
    runner: Runner, tx: BatchTx, touched: Touched, keys: Keys, last: int
) -> Touched | None:
    """Fold the events recorded up to ``last`` (the id before the save's own) that the
    views have not folded yet (a worker behind, a writer that does not fold), when there
    are at most a batch of them; the rows of ``keys`` as they left them. None when the
    views are further behind: the catch-up after the commit folds them in batches.
    (Ahead cannot happen: the save's ids are not committed yet.)"""
    gap = last - tx.position
    if gap < 0 or gap > runner.batch_size:
        return None
    if gap:
        # Fewer than ``gap`` when ids were skipped (a rolled-back insert drew them).
        missing = runner.store.notifications(runner.recorder, tx.position + 1, gap, last)
        if missing:
            runner._fold_batch(tx, missing)
            return tx.load(keys)
    return touched


def _beyond(needed: Keys, known: Keys) -> Keys | None:
    """The keys of ``needed`` that ``known`` lacks; None when there are none."""
    extra = Keys(
        iccids=needed.iccids - known.iccids,
        copy_ids=needed.copy_ids - known.copy_ids,
        group_ids=needed.group_ids - known.group_ids,
        operation_ids=needed.operation_ids - known.operation_ids,
    )
    if extra.iccids or extra.copy_ids or extra.group_ids or extra.operation_ids:
        return extra
    return None
