"""The SQLite application recorder simledger runs with: eventsourcing's, with the
in-transaction hook (adapters/store/in_transaction.py).

Its ``insert_events`` is eventsourcing's — one transaction, one ``INSERT`` per event, the
rowids as notification ids — and then, before the commit, calls ``in_transaction`` (if
given) with the transaction's ``sqlite3.Connection``: the read models of the same file are
folded inline, under the file's write lock the insert already holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic

from simledger.adapters.store.in_transaction import InTransaction, insert_with_hook, run_hook


class LedgerSqliteApplicationRecorder(SQLiteApplicationRecorder):
    """``SQLiteApplicationRecorder`` calling an in-transaction hook before its commit."""

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        in_transaction: InTransaction | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        def insert(hook: InTransaction | None) -> Sequence[int] | None:
            with self.datastore.transaction(commit=True) as c:
                ids = self._insert_events(c, stored_events, **kwargs)
                if ids:
                    run_hook(hook, c.sqlite_cursor.connection, ids)
                return ids

        return insert_with_hook(insert, in_transaction)

    def insert_event_chunks(
        self, chunks: Iterable[tuple[Sequence[StoredEvent], InTransaction | None]]
    ) -> tuple[int, int]:
        """Insert every chunk in ONE transaction (all or none of them), each followed by
        its in-transaction hook (if any) and dropped: a save bounded in memory by a chunk
        (the CSV import). A hook's failure (``HookFailed``) rolls back everything. Returns
        (events inserted, the last notification id; 0 when none)."""
        count = last = 0
        with self.datastore.transaction(commit=True) as c:
            for chunk, hook in chunks:
                ids = self._insert_events(c, chunk)
                if ids:
                    run_hook(hook, c.sqlite_cursor.connection, ids)
                    count, last = count + len(ids), ids[-1]
        return count, last


def recorder_topic() -> str:
    return get_topic(LedgerSqliteApplicationRecorder)
