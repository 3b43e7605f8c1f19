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

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic, retry
from psycopg.sql import SQL, Identifier

COPY_FROM = 200
"""Saves of at least this many events are written with ``COPY`` (ids drawn first)."""


class BulkPostgresApplicationRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` inserting through four binary arrays, without a
    pipeline (see the module docstring)."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.prelude_statement = SQL("; ").join(
            [*self.lock_table_statements, SQL("NOTIFY {0}").format(Identifier(self.channel_name))]
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

    @staticmethod
    def encodes_on_demand(count: int) -> bool:
        """Whether a save of ``count`` events may reach :meth:`insert_events` encoded on
        demand (``COPY`` encodes each as its row is written)."""
        return count >= COPY_FROM

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if self.datastore.enable_db_functions:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        notification_ids: list[int] | None = None
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
            if stored_events:
                with conn.cursor() as curs:
                    # The original's _lock_table and _notify_channel, in one round trip.
                    curs.execute(self.prelude_statement)
                    if len(stored_events) >= COPY_FROM:
                        return self._copy(curs, stored_events)
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
                    notification_ids = [row["notification_id"] for row in curs.fetchall()]
                if len(notification_ids) != len(stored_events):
                    msg = (
                        f"Couldn't get all notification IDs (got {len(notification_ids)}, "
                        f"expected {len(stored_events)})"
                    )
                    raise ProgrammingError(msg)
        return notification_ids

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
