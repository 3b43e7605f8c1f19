"""Work done inside a save's own transaction, after its events are inserted.

A recorder that supports it takes ``in_transaction=hook`` in ``insert_events`` and calls
``hook.after(connection, notification_ids)`` on the transaction's connection once the
events are inserted (their ids issued, in the events' order) and before the commit, so
whatever the hook writes commits with the events or not at all. Before that, once the
INSERT is sent but before its ids are read, it calls ``hook.before(connection)``: a
recorder that pipelines its statements (PostgreSQL) sends the hook's first statements
with the INSERT, and their answers come back in the same round trip. The ledger uses it
to fold its new events into the read models inline (application/queries.py).

A recorder may also take ``late=...`` (:data:`LateStored`): events decided inside the
transaction under the store's write lock, from the latest state of some aggregates read
there (a busy shared pool's draw: writers then take turns on the lock instead of colliding
on the pool's version). Only the PostgreSQL recorder does; the others refuse with
:class:`DecideAgain` before anything is written.

The hook's work is an optimisation, never a condition of the save: if the hook raises, the
transaction is rolled back and the events are inserted again without it, and the caller
learns nothing more than that the hook did not run (a read model then catches up after the
commit, as it would without the hook). A store conflict (``IntegrityError``) comes from
the insert itself, before the hook, and is raised as always.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from eventsourcing.persistence import StoredEvent

from simledger.adapters.logs import get_logger

log = get_logger("simledger")

R = TypeVar("R")


class InTransaction:
    """Work a save does inside its own transaction, on the transaction's DB-API connection
    (sqlite3 or psycopg)."""

    def before(self, connection: Any) -> None:
        """The INSERT is sent, its ids not read yet: statements sent now travel with it."""

    def after(self, connection: Any, ids: Sequence[int]) -> None:
        """The events are inserted with ``ids`` (in the events' order); before the commit."""
        raise NotImplementedError

    # A hook whose writes do not need the events' ids (``early``) lets a pipelining
    # recorder send its reads with the table lock, decide its writes before the INSERT and
    # send them with it and the COMMIT: the whole save in two round trips, and a late
    # decision's read under the lock travels with the hook's reads.
    early = False

    def early_reads(self, connection: Any) -> None:
        """The table lock is sent, the INSERT not yet: the reads the writes need."""

    def early_fold(self, connection: Any, log_end: int) -> None:
        """The reads came back (no more waiting, unless the save's events, with any decided
        late, need rows not read yet); ``log_end``: the log's last id before this save
        (under the lock). Decide the writes."""

    def early_writes(self, connection: Any, log_end_sql: str) -> None:
        """The INSERT is sent: send the writes; ``log_end_sql``, a scalar subquery, is the
        log's last id once the INSERT ran (what a tracking position is set to)."""

    def early_done(self, ids: Sequence[int]) -> None:
        """The save committed with ``ids``."""

    def hint(self, aggregates: Sequence[Any]) -> None:
        """Aggregates a late decision may write: their rows are read with the others."""


class HookFailed(Exception):
    """The in-transaction hook raised (the cause): the transaction is rolled back."""


def prepare_hook(hook: InTransaction | None, connection: Any) -> None:
    """``hook.before`` inside the transaction; a failure becomes :class:`HookFailed`."""
    if hook is None:
        return
    try:
        hook.before(connection)
    except Exception as exc:
        raise HookFailed() from exc


def hook_step(step: Callable[..., None], *args: Any) -> None:
    """One step of an early hook; its failure becomes :class:`HookFailed`."""
    try:
        step(*args)
    except Exception as exc:
        raise HookFailed() from exc


def run_hook(hook: InTransaction | None, connection: Any, ids: Sequence[int]) -> None:
    """``hook.after`` inside the transaction; its failure becomes :class:`HookFailed`, so
    the recorder rolls back and inserts again without it."""
    if hook is None or not ids:
        return
    try:
        hook.after(connection, ids)
    except Exception as exc:
        raise HookFailed() from exc


def insert_with_hook(insert: Callable[[InTransaction | None], R], hook: InTransaction | None) -> R:
    """``insert(hook)``; if the hook failed, ``insert(None)`` in a fresh transaction."""
    if hook is None:
        return insert(None)
    try:
        return insert(hook)
    except HookFailed as failed:
        log.warning("store.in_transaction.failed", error=repr(failed.__cause__))
        return insert(None)


# ---- events decided under the store's write lock -------------------------------------------

ReadNewer = Callable[[Mapping[str, int]], Sequence[StoredEvent]]
"""The stored events of some aggregates after the versions given (id -> version), read
inside the save's transaction, in (id, version) order."""

LateStored = Callable[[ReadNewer], Sequence[StoredEvent]]
"""Called by a recorder inside the save's transaction once it holds the events' write
lock, before the INSERT: the events decided there (inserted first, in that order)."""


class DecideAgain(Exception):
    """A decision under the write lock found a case it does not decide (a pool that runs
    out, a member that left): nothing is recorded, and the command decides on its usual
    path instead."""
