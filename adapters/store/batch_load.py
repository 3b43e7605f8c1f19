"""Load many aggregates at once (bulk operations over thousands of SIMs).

``Repository.get`` costs one query per aggregate (two with snapshots). On the SQLite and
PostgreSQL stores :func:`load_many` instead reads a whole chunk of ids with ONE query: the
latest snapshot of each id plus only the events recorded after it. Rows are decoded with
the application's own mapper (so cipher and compression settings keep working) and each
aggregate is projected exactly as the repository would: snapshot first, then events
(:func:`~simledger.adapters.store.fast_replay.fast_project`, ``project_aggregate``'s fold
with what is the same for every event of a class done once per class).

Any other store (the in-memory one, a custom recorder, UUID-typed ids) falls back to
``repository.get`` per id. The aggregate cache, if the application enables one, is not
consulted: the batch path always reads the stored events, which is what the cache would
be fast-forwarded to anyway.

On PostgreSQL the chunks' queries go in one pipeline (psycopg's pipeline mode, one
connection, one read-only transaction): the query of the next chunk is sent as soon as the
rows of the current one have arrived, so the server runs it while this process decodes
the current rows. The server's share of a bulk load (its index lookups) then overlaps the
decoding instead of adding to it (bench/README.md).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    AggregateRecorder,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import retry

from simledger.adapters.store.fast_replay import fast_project
from simledger.adapters.store.mapper import LedgerMapper

SQLITE_CHUNK = 500
"""Ids per SQLite query: one bound parameter each, under SQLite's historic limit of 999."""

POSTGRES_CHUNK = 1000
"""Ids per PostgreSQL query (bound as one text array)."""

_SNAPSHOT, _EVENT = 0, 1
"""The ``kind`` column of the batch queries: a snapshot sorts before the events after it."""

Row = Sequence[Any]
"""A result row: kind, originator_id, originator_version, topic, state, by position (a tuple
on PostgreSQL, a ``sqlite3.Row`` on SQLite)."""


T = TypeVar("T")

Take = Callable[[Sequence[Row]], None]
"""What a reader hands each chunk's rows to."""


@dataclass(frozen=True)
class _BatchReader:
    read: Callable[[list[str], Take], None]
    """Read the rows of all the ids, chunk by chunk, handing each chunk's rows to ``take``
    as it arrives. May be retried whole: ``take`` must tolerate rows it has seen."""


def load_many(app: Application[str], ids: Iterable[str]) -> dict[str, Any]:
    """The aggregates found for ``ids`` (snapshots used), keyed by id; missing ids omitted.

    Input order and duplicates do not matter. Each aggregate equals what
    ``app.repository.get(id)`` returns.
    """
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    reader = _batch_reader(app) if all(isinstance(i, str) for i in wanted) else None
    if reader is None:
        return _one_by_one(app, wanted)
    found: dict[str, Any] = {}

    def take(rows: Sequence[Row]) -> None:
        found.update(_project(app, rows))  # a retried read overwrites with equal aggregates

    with gc_paused():
        reader.read(wanted, take)
    return found


def chunked(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``values`` in consecutive slices of at most ``size``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a bulk decode, and back on as it was after.

    Decoding tens of thousands of events allocates hundreds of thousands of young objects
    that all stay alive (rows, dicts, events, aggregates: no reference cycles), so every
    collection during it is wasted work, and the older generations' collections walk all
    of them again. Reference counting still frees everything.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _one_by_one(app: Application[str], ids: Iterable[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for aggregate_id in ids:
        try:
            found[aggregate_id] = app.repository.get(aggregate_id, projector_func=fast_project)
        except AggregateNotFoundError:
            continue
    return found


def _project(app: Application[str], rows: Iterable[Row]) -> Iterator[tuple[str, Any]]:
    """Decode ``rows`` (ordered by id, kind, version) and project one aggregate per id."""
    events_mapper = app.repository.event_store.mapper
    snapshot_store = app.repository.snapshot_store
    snapshots_mapper = snapshot_store.mapper if snapshot_store is not None else events_mapper
    decode_event = _decoder(events_mapper)
    decode_snapshot = _decoder(snapshots_mapper)
    streams: dict[str, list[DomainEventProtocol[Any]]] = {}
    for kind, originator_id, version, topic, state in rows:
        decode = decode_snapshot if kind == _SNAPSHOT else decode_event
        event = decode(originator_id, version, topic, state)
        stream = streams.get(originator_id)
        if stream is None:
            streams[originator_id] = [event]
        else:
            stream.append(event)
    for aggregate_id, events in streams.items():
        aggregate = fast_project(None, events)
        if aggregate is not None:
            yield aggregate_id, aggregate


Decoder = Callable[[str, int, str, bytes], DomainEventProtocol[Any]]


def _decoder(mapper: Mapper[Any]) -> Decoder:
    """Decode one row: the ledger's :meth:`LedgerMapper.decode_row` (no ``StoredEvent`` per
    row, the event class looked up once per topic), else ``mapper.to_domain_event``."""
    if isinstance(mapper, LedgerMapper):
        return mapper.decode_row

    def via_mapper(originator_id: str, version: int, topic: str, state: bytes) -> Any:
        return mapper.to_domain_event(StoredEvent(originator_id, version, topic, bytes(state)))

    return via_mapper


_READERS: weakref.WeakKeyDictionary[Any, _BatchReader | None] = weakref.WeakKeyDictionary()
"""Each application's reader, made once (its statement composed once)."""


def _batch_reader(app: Application[str]) -> _BatchReader | None:
    """A one-query-per-chunk reader for the application's store, if it has one."""
    try:
        return _READERS[app]
    except KeyError:
        reader = _READERS[app] = _make_reader(app)
        return reader


def _make_reader(app: Application[str]) -> _BatchReader | None:
    events = app.repository.event_store.recorder
    snapshot_store = app.repository.snapshot_store
    snapshots = snapshot_store.recorder if snapshot_store is not None else None
    for make in (_sqlite_reader, _postgres_reader):
        reader = make(events, snapshots)
        if reader is not None:
            return reader
    return None


# ---- SQLite ---------------------------------------------------------------------------------


def _sqlite_reader(
    events: AggregateRecorder, snapshots: AggregateRecorder | None
) -> _BatchReader | None:
    from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder

    if not isinstance(events, SQLiteApplicationRecorder):
        return None
    datastore = events.datastore
    if datastore.originator_id_type != "text":
        return None
    if snapshots is not None and not (
        isinstance(snapshots, SQLiteAggregateRecorder) and snapshots.datastore is datastore
    ):
        return None
    # Table names are used unquoted, as eventsourcing's own statements use them.
    events_table = events.events_table_name
    snapshots_table = snapshots.events_table_name if snapshots is not None else None

    template = _batch_template(with_snapshots=snapshots_table is not None)

    def read(ids: list[str], take: Take) -> None:
        for chunk in chunked(ids, SQLITE_CHUNK):
            values = ",".join("(?)" for _ in chunk)
            statement = template.format(
                ids=f"ids(originator_id) AS (VALUES {values})",
                events=events_table,
                snapshots=snapshots_table,
            )
            with datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, chunk)
                rows: Sequence[Row] = cursor.fetchall()
            take(rows)

    return _BatchReader(read)


# ---- PostgreSQL -----------------------------------------------------------------------------


def _postgres_reader(
    events: AggregateRecorder, snapshots: AggregateRecorder | None
) -> _BatchReader | None:
    try:
        from eventsourcing.postgres import (
            PostgresAggregateRecorder,
            PostgresApplicationRecorder,
        )
        from psycopg import sql
        from psycopg.rows import tuple_row
    except ImportError:  # pragma: no cover - psycopg not installed
        return None

    if not isinstance(events, PostgresApplicationRecorder):
        return None
    datastore = events.datastore
    if datastore.originator_id_type != "text":
        return None
    if snapshots is not None and not (
        isinstance(snapshots, PostgresAggregateRecorder) and snapshots.datastore is datastore
    ):
        return None

    # Qualified as the recorders' own statements qualify them: "<schema>"."<table>".
    template = (
        _postgres_template() if snapshots is not None else _batch_template(with_snapshots=False)
    )
    statement = sql.SQL(template).format(
        ids=sql.SQL("ids AS (SELECT unnest(%s::text[]) AS originator_id)"),
        events=sql.Identifier(datastore.schema, events.events_table_name),
        snapshots=(
            sql.Identifier(datastore.schema, snapshots.events_table_name)
            if snapshots is not None
            else sql.SQL("")
        ),
    )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def read(ids: list[str], take: Take) -> None:
        if not ids:
            return
        if len(ids) <= POSTGRES_CHUNK:
            # One statement reads one snapshot of the store by itself: no transaction
            # around it, so one round trip (a command loading its SIM, or its SIM and
            # package copy).
            with (
                datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row, binary=True) as cursor,
            ):
                take(cursor.execute(statement, (ids,), prepare=True).fetchall())
            return
        first, *rest = chunked(ids, POSTGRES_CHUNK)
        with (
            datastore.transaction(commit=False) as dict_cursor,
            # Tuples, not the pool's dict rows: cheaper for tens of thousands of rows.
            # Binary results: the stored state arrives as bytes, not as hex to decode.
            dict_cursor.connection.cursor(row_factory=tuple_row, binary=True) as cursor,
            dict_cursor.connection.pipeline(),
        ):
            cursor.execute(statement, (first,), prepare=True)
            for following in [*rest, None]:
                rows: Sequence[Row] = cursor.fetchall()  # waits for this chunk only
                if following is not None:  # sent at once: the server runs it during take()
                    cursor.execute(statement, (following,), prepare=True)
                take(rows)

    return _BatchReader(read)


# ---- the query ------------------------------------------------------------------------------


def _batch_template(*, with_snapshots: bool) -> str:
    """Latest snapshot of each id (kind 0) and the events after it (kind 1), in replay order.

    Placeholders: ``{ids}`` a CTE defining ``ids(originator_id)``, ``{events}`` and
    ``{snapshots}`` the tables. Valid SQL on SQLite and PostgreSQL. Versions are never
    negative, so ``-1`` stands for "no snapshot: every event".
    """
    order = "ORDER BY originator_id, kind, originator_version"
    if not with_snapshots:
        return (
            "WITH {ids} "
            f"SELECT {_EVENT} AS kind, e.originator_id, e.originator_version, e.topic, e.state "
            "FROM ids JOIN {events} e ON e.originator_id = ids.originator_id "
            f"{order}"
        )
    return (
        "WITH {ids}, "
        "latest AS ("
        "SELECT ids.originator_id, ("
        "SELECT MAX(s.originator_version) FROM {snapshots} s "
        "WHERE s.originator_id = ids.originator_id"
        ") AS version FROM ids) "
        f"SELECT {_SNAPSHOT} AS kind, s.originator_id AS originator_id, "
        "s.originator_version AS originator_version, s.topic AS topic, s.state AS state "
        "FROM latest JOIN {snapshots} s "
        "ON s.originator_id = latest.originator_id AND s.originator_version = latest.version "
        "UNION ALL "
        f"SELECT {_EVENT}, e.originator_id, e.originator_version, e.topic, e.state "
        "FROM latest JOIN {events} e ON e.originator_id = latest.originator_id "
        "AND e.originator_version > COALESCE(latest.version, -1) "
        f"{order}"
    )


def _postgres_template() -> str:
    """:func:`_batch_template` with snapshots, as PostgreSQL runs it best: each id's latest
    snapshot row is found by ONE backward scan of the snapshots' primary key (a lateral
    ``ORDER BY version DESC LIMIT 1``), not by a ``MAX`` lookup and then a second lookup
    of the row it names (bench/README.md)."""
    return (
        "WITH {ids}, "
        "latest AS ("
        "SELECT ids.originator_id, s.originator_version, s.topic, s.state FROM ids "
        "LEFT JOIN LATERAL (SELECT s.originator_version, s.topic, s.state FROM {snapshots} s "
        "WHERE s.originator_id = ids.originator_id "
        "ORDER BY s.originator_version DESC LIMIT 1) s ON true) "
        f"SELECT {_SNAPSHOT} AS kind, originator_id, originator_version, topic, state "
        "FROM latest WHERE originator_version IS NOT NULL "
        "UNION ALL "
        f"SELECT {_EVENT}, e.originator_id, e.originator_version, e.topic, e.state "
        "FROM latest JOIN {events} e ON e.originator_id = latest.originator_id "
        "AND e.originator_version > COALESCE(latest.originator_version, -1) "
        "ORDER BY originator_id, kind, originator_version"
    )


# ---- every aggregate's latest snapshot (audits) ---------------------------------------------

LATEST_SNAPSHOTS = (
    "SELECT s.originator_id, s.originator_version, s.topic, s.state FROM {snapshots} s "
    "JOIN (SELECT originator_id, MAX(originator_version) AS version FROM {snapshots} "
    "GROUP BY originator_id) latest ON s.originator_id = latest.originator_id "
    "AND s.originator_version = latest.version"
)


def latest_snapshots(app: Application[str]) -> Iterator[Any]:
    """The latest snapshot of every snapshotted aggregate, decoded, in no particular order:
    one query on SQLite and PostgreSQL (streamed), a walk of the in-memory store."""
    snapshot_store = app.repository.snapshot_store
    if snapshot_store is None:
        return
    recorder = snapshot_store.recorder
    decode = _decoder(snapshot_store.mapper)
    from eventsourcing.popo import POPOAggregateRecorder
    from eventsourcing.sqlite import SQLiteAggregateRecorder

    if isinstance(recorder, POPOAggregateRecorder):
        latest: dict[str, StoredEvent] = {}
        for stored in list(recorder._stored_events):  # no public listing
            key = str(stored.originator_id)
            if key not in latest or latest[key].originator_version < stored.originator_version:
                latest[key] = stored
        for stored in latest.values():
            yield snapshot_store.mapper.to_domain_event(stored)
        return
    if isinstance(recorder, SQLiteAggregateRecorder):
        statement = LATEST_SNAPSHOTS.format(snapshots=recorder.events_table_name)
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement)
            rows = cursor.fetchall()
        for row in rows:
            yield decode(row[0], row[1], row[2], row[3])
        return
    from eventsourcing.postgres import PostgresAggregateRecorder
    from psycopg import sql
    from psycopg.rows import tuple_row

    if not isinstance(recorder, PostgresAggregateRecorder):
        raise TypeError(f"cannot list the snapshots of a {type(recorder).__name__}")
    table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    query = sql.SQL(LATEST_SNAPSHOTS).format(snapshots=table)
    with (
        recorder.datastore.transaction(commit=False) as dict_cursor,
        dict_cursor.connection.cursor("latest_snapshots", row_factory=tuple_row) as cursor,
    ):
        cursor.execute(query, binary=True)
        while batch := cursor.fetchmany(5000):
            for row in batch:
                yield decode(row[0], row[1], row[2], row[3])
