"""A bounded cache of recently saved aggregates, for bulk commands.

A bulk command loads thousands of SIMs (a snapshot and an event or two each, read, decoded
and folded). The SIMs it touches were often just saved by this process (a pause, then its
carriers' answers, then a resume), so the ledger keeps a private copy of each SIM it saves,
and a load takes what it finds here instead of reading the store.

Whether a taken copy is still the store's latest is asked of the store or left to it, as the
caller chooses (:meth:`AggregateCache.take`'s ``checked``): checked, the store's latest
version of each SIM is read (one query per chunk) and a SIM another process (or another
ledger) changed since is dropped, to be loaded from the store as usual; unchecked, a stale
copy is caught when its new events are saved, since the store refuses an (id, version) it
already holds. Either way the cache is an optimisation only.

Each entry has one owner at a time. :meth:`AggregateCache.take` hands entries out and removes
them (a command mutates what it loads; two threads never get the same object), and a
command's save puts its own aggregates back as they are (``owned``: nobody else holds them).
An aggregate saved by an embedding program, which may keep using it, goes in as a private
copy. A command that fails after changing what it took leaves nothing behind: the entries
left with it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eventsourcing.application import Application

from simledger.adapters.store.batch_load import load_many
from simledger.adapters.store.fast_replay import fast_project
from simledger.domain.shared_group import SharedGroup

CHUNK = 1000
"""Ids per version query."""


def private_copy(aggregate: Any) -> Any:
    """A copy sharing no mutable attribute with ``aggregate`` (lists, dicts and sets are
    copied one level deep: an aggregate's are lists of strings and dicts of plain values),
    with no pending events."""
    state = {
        name: (value.copy() if type(value) in (list, dict, set) else value)
        for name, value in vars(aggregate).items()
    }
    state["_pending_events"] = []
    copy = object.__new__(type(aggregate))
    object.__setattr__(copy, "__dict__", state)
    return copy


class AggregateCache:
    """Least recently saved first out, at most ``size`` aggregates. Safe to share between
    the threads of one ledger (a lock around each read and change of the entries)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, aggregates: Iterable[Any], *, owned: bool = False) -> None:
        """Keep ``aggregates`` as saved: themselves if ``owned`` (the caller drops them),
        else private copies."""
        if self.size <= 0:
            return
        copies = list(aggregates) if owned else [private_copy(a) for a in aggregates]
        with self._lock:
            items = self._items
            for copy in copies:
                items[copy.id] = copy
                items.move_to_end(copy.id)
            while len(items) > self.size:
                items.popitem(last=False)

    def take(
        self, app: Application[str], ids: Sequence[str], *, checked: bool = True
    ) -> dict[str, Any]:
        """The cached aggregates among ``ids``, removed from the cache: the caller owns
        them. ``checked``: only those whose version is still the store's latest (asked in
        one query per chunk), stale ones dropped; else all, for a caller that lets the
        store catch a stale one (``SimLedger._on_sims``)."""
        with self._lock:
            pop = self._items.pop
            cached = {i: entry for i in ids if (entry := pop(i, None)) is not None}
        if not cached or not checked:
            return cached
        return self._at_latest(app, cached)

    @classmethod
    def still_latest(cls, app: Application[str], aggregates: Mapping[str, Any]) -> bool:
        """Whether each of ``aggregates`` is at the store's latest version."""
        return len(cls._at_latest(app, aggregates)) == len(aggregates)

    @staticmethod
    def _at_latest(app: Application[str], aggregates: Mapping[str, Any]) -> dict[str, Any]:
        """Those of ``aggregates`` whose version is the store's latest (one query per chunk)."""
        latest = latest_versions(app, list(aggregates))
        return {i: a for i, a in aggregates.items() if latest.get(i) == a.version}


class GroupCache:
    """The latest known state of the shared groups a ledger used, at most ``size``.

    A busy shared pool changes with every member's usage, and its aggregate holds every
    member's ICCID: loading it whole for each usage record costs more than the record.
    :meth:`latest` reads only the events recorded after the version known here (one query)
    and applies them to a private copy. Entries are never handed out, only copies, so a
    refused or failed command leaves them as they were.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, SharedGroup] = OrderedDict()
        self._lock = threading.Lock()

    def latest(self, app: Application[str], group_id: str) -> SharedGroup | None:
        """The group as the store holds it now (None: no such group)."""
        with self._lock:
            known = self._items.get(group_id)
        if known is None:
            loaded = load_many(app, (group_id,)).get(group_id)
            group = loaded if isinstance(loaded, SharedGroup) else None
        else:
            group = private_copy(known)
            newer = list(app.repository.event_store.get(group_id, gt=known.version))
            if newer:
                group = fast_project(group, newer)
        if group is not None:
            self._keep(private_copy(group))
        return group

    def known(self, group_id: str) -> SharedGroup | None:
        """A private copy of the group as last known here (no store read), or None."""
        with self._lock:
            known = self._items.get(group_id)
        return private_copy(known) if known is not None else None

    def saved(self, aggregates: Iterable[Any]) -> None:
        """After a save: the groups in ``aggregates`` as they now stand."""
        for aggregate in aggregates:
            if isinstance(aggregate, SharedGroup):
                self._keep(private_copy(aggregate))

    def _keep(self, group: SharedGroup) -> None:
        if self.size <= 0:
            return
        with self._lock:
            known = self._items.get(group.id)
            if known is not None and known.version > group.version:
                return  # another thread already knows a later one
            self._items[group.id] = group
            self._items.move_to_end(group.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def latest_versions(app: Application[str], ids: Sequence[str]) -> Mapping[str, int]:
    """The latest stored version of each of ``ids`` that has events: one query per chunk
    on SQLite and PostgreSQL (an index descent per id), one read per id elsewhere."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    recorder = app.recorder
    found: dict[str, int] = {}
    chunks = [list(ids[start : start + CHUNK]) for start in range(0, len(ids), CHUNK)]
    if isinstance(recorder, PostgresApplicationRecorder):
        from psycopg import sql
        from psycopg.rows import tuple_row

        statement = sql.SQL(
            "SELECT i, (SELECT MAX(originator_version) FROM {} WHERE originator_id = i) "
            "FROM unnest(%s::text[]) AS i"
        ).format(sql.Identifier(recorder.datastore.schema, recorder.events_table_name))
        for chunk in chunks:
            # One statement reads one snapshot of the store: no transaction around it.
            with (
                recorder.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row) as cursor,
            ):
                cursor.execute(statement, (chunk,), prepare=True)
                rows: list[Any] = cursor.fetchall()
            found.update((key, version) for key, version in rows if version is not None)
    elif isinstance(recorder, SQLiteApplicationRecorder):
        template = (
            "SELECT i.value, (SELECT MAX(originator_version) FROM {table} "
            "WHERE originator_id = i.value) FROM json_each(?) AS i"
        )
        text = template.format(table=recorder.events_table_name)
        for chunk in chunks:
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(text, (json.dumps(chunk),))
                rows = cursor.fetchall()
            found.update((row[0], row[1]) for row in rows if row[1] is not None)
    else:
        for aggregate_id in ids:
            stored = recorder.select_events(aggregate_id, desc=True, limit=1)
            if stored:
                found[aggregate_id] = stored[0].originator_version
    return found
