"""The PostgreSQL application recorder simledger runs with: eventsourcing's, with a bulk insert.

eventsourcing's ``PostgresApplicationRecorder.insert_events`` sends, in one psycopg pipeline,
``SET LOCAL lock_timeout``, ``LOCK TABLE ... IN EXCLUSIVE MODE``, ``NOTIFY`` and one
``INSERT ... SELECT FROM unnest(%s::stored_event_text[]) RETURNING notification_id``. Two
problems at fleet scale:

* The array of composite values is dumped in text format by psycopg, in Python, with a
  regular expression per value: a large share of a bulk command's time.
* A pipeline whose big statement follows other statements hangs for good once the statement
  is large (a few MB: ``receive_sims`` of 40,000 SIMs, or a save of 35,000 events): psycopg
  waits for results while the server still waits for the rest of the message (server state
  ``ClientRead``). Reproduced with psycopg 3.3.9 and PostgreSQL 15.

:class:`BulkPostgresApplicationRecorder` keeps everything that matters of the original and
changes only how the rows travel: in one transaction, the same lock statements (the table
lock in EXCLUSIVE mode, so that notification ids are issued in commit order and gapless for
readers) and the same ``NOTIFY`` are sent as one simple query, then one ``INSERT ... SELECT
FROM unnest(ids, versions, topics, states) RETURNING notification_id`` with four plain arrays
bound in binary format, then ``COMMIT``. No pipeline. Notification ids come back in the
events' order, as before; a duplicate (originator id, version) raises ``IntegrityError`` and
records nothing, as before. With ``POSTGRES_ENABLE_DB_FUNCTIONS`` the original path is used.

A save of at least :data:`COPY_FROM` events (a bulk command) goes faster still: under the same
lock, its notification ids are drawn from the table's own sequence (``nextval``, as the
column default would), then the rows, ids included, travel with ``COPY ... FROM STDIN`` in
binary format, which the server takes without parsing a statement per row (bench/README.md). The
ids are increasing in the events' order and, the table being locked, gapless. Such a save
is encoded while it is written (``encodes_on_demand``; adapters/store/event_store.py): the
events reach :meth:`insert_events` unencoded and each is encoded as its row is sent, so the
server inserts the rows already sent meanwhile. The table lock is held for that encoding
too, which the overlap more than pays for.

:func:`recorder_topic` is what :mod:`simledger.adapters.store.persistence` puts in
``APPLICATION_RECORDER_TOPIC`` for the PostgreSQL store (unless the caller names another).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic, retry
from psycopg.sql import SQL, Identifier

from simledger.adapters.store.in_transaction import (
    DecideAgain,
    HookFailed,
    InTransaction,
    LateStored,
    hook_step,
    insert_with_hook,
    prepare_hook,
    run_hook,
)

COPY_FROM = 200
"""Saves of at least this many events are written with ``COPY`` (ids drawn first)."""

PIPELINE_BYTES = 64 * 1024
"""Saves of at most this many bytes of event state go out as one pipeline; bigger ones
would risk the pipeline hang described above."""


def _conflict_or_lost(error: psycopg.Error) -> bool:
    """Whether the INSERT collided with another writer's events (the command's to re-run),
    or the connection failed (the commit may or may not have happened)."""
    return isinstance(
        error, psycopg.IntegrityError | psycopg.OperationalError | psycopg.InterfaceError
    )


def _state_bytes(stored_events: Sequence[StoredEvent]) -> int:
    return sum(len(e.state) for e in stored_events)


class BulkPostgresApplicationRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` inserting through four binary arrays, without a
    pipeline (see the module docstring)."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.notify_statement = SQL("NOTIFY {0}").format(Identifier(self.channel_name))
        self.prelude_statement = SQL("; ").join(
            [*self.lock_table_statements, self.notify_statement]
        )
        self.bulk_insert_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            id_type=SQL(self.datastore.originator_id_type),
        )
        self._sequence: str | None = None  # the notification ids' sequence, looked up once
        self.copy_statement = SQL(
            "COPY {schema}.{table} (notification_id, originator_id, originator_version, topic, "
            "state) FROM STDIN (FORMAT BINARY)"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        self.copy_types = ["int8", self.datastore.originator_id_type, "int8", "text", "bytea"]
        self.newer_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%s::text[], %s::bigint[]) AS k(id, version) "
            "JOIN {schema}.{table} e ON e.originator_id = k.id "
            "AND e.originator_version > k.version "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        log_end = SQL("(SELECT COALESCE(max(notification_id), 0) FROM {schema}.{table})").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        self.log_end_sql = log_end.as_string(None)
        """The log's last id, as a scalar subquery (an early hook's tracking position)."""
        self.log_end_statement = SQL("SELECT {0} AS last").format(log_end)

    @staticmethod
    def encodes_on_demand(count: int) -> bool:
        """Whether a save of ``count`` events may reach :meth:`insert_events` encoded on
        demand (``COPY`` encodes each as its row is written)."""
        return count >= COPY_FROM

    decides_late = True
    """Takes ``late`` in :meth:`insert_events` (adapters/store/in_transaction.py)."""

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        in_transaction: InTransaction | None = None,
        late: LateStored | None = None,
        late_is_big: bool = False,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Insert the events in one transaction; ``late`` (if given) decides more under the
        table lock, inserted first (``late_is_big``: many, written as a big save);
        ``in_transaction`` (if given) runs in it after the insert
        (adapters/store/in_transaction.py)."""
        if self.datastore.enable_db_functions:
            if late is not None:
                raise DecideAgain("the database functions' insert decides nothing late")
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        if late is not None and late_is_big:
            return insert_with_hook(
                lambda hook: self._insert_big(stored_events, hook, kwargs, late), in_transaction
            )
        return insert_with_hook(
            lambda hook: self._insert_in_transaction(stored_events, hook, late, kwargs),
            in_transaction,
        )

    def insert_event_chunks(
        self, chunks: Iterable[tuple[Sequence[StoredEvent], InTransaction | None]]
    ) -> tuple[int, int]:
        """Insert every chunk in ONE transaction (all or none of them), under the table
        lock taken once, each chunk written with ``COPY`` (encoded as it is sent, when it
        is an ``EncodedOnDemand``), followed by its in-transaction hook (if any), and
        dropped: a save bounded in memory by a chunk (the CSV import). A hook's failure
        (``HookFailed``) rolls back everything. Returns (events inserted, the last
        notification id; 0 when none). Not retried here: ``chunks`` is read once (the
        caller runs the whole save again)."""
        count = last = 0
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(self.prelude_statement)
            for chunk, hook in chunks:
                if not chunk:
                    continue
                ids = self._copy(curs, chunk)
                run_hook(hook, conn, ids)
                count, last = count + len(ids), ids[-1]
        return count, last

    def _read_newer(self, conn: Any, versions: Mapping[str, int]) -> list[StoredEvent]:
        """The events of ``versions``' aggregates after those versions, on ``conn``."""
        ids = list(versions)
        with conn.cursor() as curs:
            curs.execute(self.newer_statement, (ids, [versions[i] for i in ids]), prepare=True)
            return [
                StoredEvent(
                    row["originator_id"],
                    row["originator_version"],
                    row["topic"],
                    bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def _insert_in_transaction(
        self,
        stored_events: Sequence[StoredEvent],
        hook: InTransaction | None,
        late: LateStored | None,
        kwargs: dict[str, Any],
    ) -> list[int] | None:
        if not stored_events and late is None:
            return None
        if len(stored_events) >= COPY_FROM or _state_bytes(stored_events) > PIPELINE_BYTES:
            if late is not None:
                raise DecideAgain("a big save decides nothing late")
            return self._insert_big(stored_events, hook, kwargs)
        if hook is not None and hook.early:
            return self._insert_early(stored_events, hook, late, kwargs)
        # A small save (a single command) is one pipeline: BEGIN, the locks, NOTIFY, the
        # INSERT and the hook's first statements go out together (one round trip to read
        # the ids), then the hook's writes and COMMIT (one more, the pipeline's closing
        # sync). Without a hook, COMMIT leaves with the INSERT: one round trip in all.
        notification_ids: list[int] | None = None
        with self.datastore.get_connection() as conn:
            # Statements are prepared on the fly (psycopg's threshold): parsing and
            # planning the view's upsert every time cost the server as much as running it.
            # After a failure in the pipeline the server skips what follows, a PREPARE
            # included, while psycopg remembers it as prepared ("prepared statement …
            # does not exist" next time): so a connection that failed here is closed (the
            # pool replaces it) rather than reused.
            try:
                with conn.cursor() as curs:
                    with conn.pipeline():
                        self._send_prelude(curs, stored_events, kwargs)
                        if late is not None:
                            # Under the table lock: what is read now is the latest.
                            decided = late(lambda versions: self._read_newer(conn, versions))
                            stored_events = [*decided, *stored_events]
                        self._send_insert(curs, stored_events)
                        if hook is None:
                            # COMMIT leaves with the rest; the ids are read once the
                            # pipeline's closing sync has brought every answer back.
                            conn.execute("COMMIT")
                        else:
                            prepare_hook(hook, conn)
                            notification_ids = self._ids(curs, stored_events)
                            run_hook(hook, conn, notification_ids)
                            conn.execute("COMMIT")
                    if notification_ids is None:
                        notification_ids = self._ids(curs, stored_events)
            except BaseException as error:
                conn.close()
                if (
                    hook is not None
                    and isinstance(error, psycopg.Error)
                    and not _conflict_or_lost(error)
                ):
                    # A statement of the hook's failed (it shows at a sync of the
                    # pipeline, maybe while the INSERT's ids are read): insert again
                    # without it. An INSERT that failed otherwise fails again.
                    raise HookFailed() from error
                raise
        return notification_ids

    def _insert_early(
        self,
        stored_events: Sequence[StoredEvent],
        hook: InTransaction,
        late: LateStored | None,
        kwargs: dict[str, Any],
    ) -> list[int]:
        """A small save whose hook decides its writes before the INSERT (``hook.early``):
        BEGIN, the locks, NOTIFY, the log's last id, the hook's reads (and a late
        decision's read) leave together; once they are back (one round trip) the late
        decision and the hook's fold are made, and the INSERT, the hook's writes and
        COMMIT leave together (the second). The table lock is held for those two."""
        with self.datastore.get_connection() as conn:
            try:
                with conn.cursor() as curs, conn.cursor() as log_end:
                    with conn.pipeline():
                        self._send_prelude(curs, stored_events, kwargs)
                        log_end.execute(self.log_end_statement, prepare=True)
                        hook_step(hook.early_reads, conn)
                        if late is not None:
                            decided = late(lambda versions: self._read_newer(conn, versions))
                            stored_events = [*decided, *stored_events]
                        if not stored_events:
                            conn.execute("ROLLBACK")
                            return []
                        last = log_end.fetchone()
                        assert last is not None
                        hook_step(hook.early_fold, conn, int(last["last"]))
                        self._send_insert(curs, stored_events)
                        hook_step(hook.early_writes, conn, self.log_end_sql)
                        conn.execute("COMMIT")
                    notification_ids = self._ids(curs, stored_events)
            except BaseException as error:
                conn.close()  # see _insert_in_transaction: never reused after a failure
                if isinstance(error, psycopg.Error) and not self._collided_or_lost(error):
                    # A statement of the hook's failed (the writes travel with the INSERT,
                    # so it shows at the same sync): insert again without it.
                    raise HookFailed() from error
                raise
        hook.early_done(notification_ids)
        return notification_ids

    def _send_prelude(
        self, curs: Any, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> None:
        """BEGIN, the table lock (with eventsourcing's lock timeout) and NOTIFY, into the
        pipeline: the start of every small save."""
        curs.execute("BEGIN")
        self._insert_events(curs, stored_events, **kwargs)
        for statement in self.lock_table_statements:
            curs.execute(statement)
        curs.execute(self.notify_statement)

    def _collided_or_lost(self, error: psycopg.Error) -> bool:
        """:func:`_conflict_or_lost`, an integrity error counted only when it is the
        events table's (another writer's events): one of a view's is the hook's failure."""
        if isinstance(error, psycopg.IntegrityError):
            table = error.diag.table_name
            return table is None or table == self.events_table_name
        return _conflict_or_lost(error)

    def _insert_big(
        self,
        stored_events: Sequence[StoredEvent],
        hook: InTransaction | None,
        kwargs: dict[str, Any],
        late: LateStored | None = None,
    ) -> list[int]:
        """A big save, without a pipeline (see the module docstring)."""
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
                # The original's _lock_table and _notify_channel, in one round trip.
                curs.execute(self.prelude_statement)
                if late is not None:
                    decided = late(lambda versions: self._read_newer(conn, versions))
                    stored_events = decided if not stored_events else [*decided, *stored_events]
                if len(stored_events) >= COPY_FROM:
                    notification_ids = self._copy(curs, stored_events)
                else:
                    self._send_insert(curs, stored_events)
                    notification_ids = [row["notification_id"] for row in curs.fetchall()]
            self._check_ids(notification_ids, stored_events)
            run_hook(hook, conn, notification_ids)
        return notification_ids

    def _send_insert(self, curs: Any, stored_events: Sequence[StoredEvent]) -> None:
        """The INSERT of the events as four binary arrays, ``RETURNING`` their ids."""
        curs.execute(
            self.bulk_insert_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
            binary=True,
        )

    def _ids(self, curs: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        ids = [row["notification_id"] for row in curs.fetchall()]
        self._check_ids(ids, stored_events)
        return ids

    @staticmethod
    def _check_ids(ids: Sequence[int], stored_events: Sequence[StoredEvent]) -> None:
        if len(ids) != len(stored_events):
            msg = (
                f"Couldn't get all notification IDs (got {len(ids)}, expected {len(stored_events)})"
            )
            raise ProgrammingError(msg)

    def _copy(self, curs: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Draw the events' notification ids, then COPY the rows in (table locked)."""
        if self._sequence is None:
            quoted = Identifier(self.datastore.schema, self.events_table_name).as_string(curs)
            curs.execute("SELECT pg_get_serial_sequence(%s, 'notification_id') AS name", (quoted,))
            self._sequence = curs.fetchone()["name"]
        curs.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
            (self._sequence, len(stored_events)),
            prepare=True,
        )
        ids = sorted(row["nextval"] for row in curs.fetchall())
        with curs.copy(self.copy_statement) as copy:
            copy.set_types(self.copy_types)
            write = copy.write_row
            for notification_id, e in zip(ids, stored_events, strict=True):
                write((notification_id, e.originator_id, e.originator_version, e.topic, e.state))
        return ids


def recorder_topic() -> str:
    return get_topic(BulkPostgresApplicationRecorder)
