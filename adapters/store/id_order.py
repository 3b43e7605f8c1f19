"""The log read aggregate by aggregate, in id order (the audit's bounded replay, issue 14
item 14).

:func:`aggregates_in_order` yields the stored events of a range of aggregate ids at a time
(whole histories, in (id, version) order) with the latest snapshots of the same range, so
that a reader holds one range, never the fleet. One query for the range's end, one for its
events, one for its snapshots; on SQLite and PostgreSQL only (None for another store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from simledger.adapters.store.batch_load import _decoder

Chunk = tuple[list[Notification], list[Any]]
"""(the events of a range of aggregates, up to the log position asked for, in (id,
version) order; the latest snapshot, decoded, of each aggregate of the range that has one)."""

_BOUND = (
    "SELECT originator_id FROM (SELECT DISTINCT originator_id FROM {events} {after} "
    "ORDER BY originator_id LIMIT {limit}) ids ORDER BY originator_id DESC LIMIT 1"
)
_EVENTS = (
    "SELECT {nid}, originator_id, originator_version, topic, state FROM {events} "
    "WHERE {range} AND {nid} <= {p} ORDER BY originator_id, originator_version"
)
_SNAPSHOTS = (
    "SELECT s.originator_id, s.originator_version, s.topic, s.state FROM {snapshots} s "
    "JOIN (SELECT originator_id, MAX(originator_version) AS version FROM {snapshots} "
    "WHERE {range} GROUP BY originator_id) latest ON s.originator_id = latest.originator_id "
    "AND s.originator_version = latest.version ORDER BY s.originator_id"
)

Run = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def aggregates_in_order(app: Application[str], last: int, ids: int) -> Iterator[Chunk] | None:
    """Chunks of ``ids`` aggregates (events up to notification ``last``), ending with the
    snapshots of ids after the last event's (an aggregate whose events are all gone)."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    recorder = app.recorder
    snapshot_store = app.repository.snapshot_store
    if isinstance(recorder, SQLiteApplicationRecorder):
        prefix, nid, p, cast = "", "rowid", "?", "?"

        def run(statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, params)
                return [tuple(row) for row in cursor.fetchall()]

    elif isinstance(recorder, PostgresApplicationRecorder):
        datastore = recorder.datastore
        prefix = f'"{datastore.schema}".'
        nid, p, cast = "notification_id", "%s", f"%s::{datastore.originator_id_type}"

        def run(statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            from psycopg.rows import tuple_row

            with (
                datastore.transaction(commit=False) as dict_cursor,
                dict_cursor.connection.cursor(row_factory=tuple_row) as cursor,
            ):
                cursor.execute(statement.encode(), params)
                return list(cursor.fetchall())

    else:
        return None
    events = f'{prefix}"{recorder.events_table_name}"'
    snapshots: str | None = None
    if snapshot_store is not None:
        table = getattr(snapshot_store.recorder, "events_table_name", None)
        if table is None:
            return None
        snapshots = f'{prefix}"{table}"'
    decode = _decoder(snapshot_store.mapper) if snapshot_store is not None else None
    return _chunks(run, events, snapshots, nid, p, cast, last, ids, decode)


def _chunks(
    run: Run,
    events: str,
    snapshots: str | None,
    nid: str,
    p: str,
    cast: str,
    last: int,
    ids: int,
    decode: Callable[..., Any] | None,
) -> Iterator[Chunk]:
    low: Any = None
    while True:
        after = "" if low is None else f"WHERE originator_id > {cast}"
        bound = run(_BOUND.format(events=events, after=after, limit=int(ids)), _opt(low))
        high = bound[0][0] if bound else None
        if high is None:
            ranged = "originator_id IS NOT NULL" if low is None else f"originator_id > {cast}"
        elif low is None:
            ranged = f"originator_id <= {cast}"
        else:
            ranged = f"originator_id > {cast} AND originator_id <= {cast}"
        params = (*_opt(low), *_opt(high))
        rows: list[Notification] = []
        if high is not None:
            statement = _EVENTS.format(events=events, nid=nid, range=ranged, p=p)
            rows = [
                Notification(
                    id=row[0],
                    originator_id=row[1],
                    originator_version=row[2],
                    topic=row[3],
                    state=bytes(row[4]),
                )
                for row in run(statement, (*params, last))
            ]
        found: list[Any] = []
        if snapshots is not None and decode is not None:
            statement = _SNAPSHOTS.format(snapshots=snapshots, range=ranged)
            found = [decode(r[0], r[1], r[2], r[3]) for r in run(statement, params)]
        if rows or found:
            yield rows, found
        if high is None:
            return
        low = high


def _opt(value: Any) -> tuple[Any, ...]:
    return () if value is None else (value,)
