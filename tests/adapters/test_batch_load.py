"""``load_many``: one query per chunk of ids on SQLite/PostgreSQL, same aggregates as ``get``."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.utils import get_topic
from helpers import store_reads

from simledger.adapters.store import batch_load
from simledger.adapters.store.batch_load import load_many
from simledger.application.ledger import SimLedger
from simledger.domain.base import Snapshot
from simledger.domain.errors import SimAlreadyExists
from simledger.domain.iccid import make_iccid
from simledger.domain.sim import Sim

SNAPSHOT_EVERY = SimLedger.snapshotting_intervals[Sim]
SNAPSHOT_TOPIC = get_topic(Snapshot)
PAST = SNAPSHOT_EVERY // 2 + 1
"""Events past a snapshot, fewer than the interval (so no newer snapshot)."""


def _iccids(n: int, start: int = 0) -> list[str]:
    return [make_iccid(f"8931{number:015d}") for number in range(start, start + n)]


def _grow(app: SimLedger, iccid: str, to_version: int) -> None:
    """Append note events until the SIM's version is ``to_version``."""
    for n in range(app.repository.get(iccid).version, to_version):
        app.set_note(iccid, f"note {n}")


def _latest_snapshot_version(app: SimLedger, aggregate_id: str) -> int | None:
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(aggregate_id, desc=True, limit=1))
    return snapshots[0].originator_version if snapshots else None


def _replayed(app: SimLedger, aggregate_id: str) -> Any:
    """The aggregate from ALL its events, no snapshot: an oracle independent of snapshots."""
    return project_aggregate(None, app.events.get(aggregate_id))


def _assert_same(loaded: dict[str, Any], app: SimLedger, ids: list[str]) -> None:
    assert set(loaded) == set(ids)
    for aggregate_id in ids:
        expected: Any = app.repository.get(aggregate_id)
        got = loaded[aggregate_id]
        assert type(got) is type(expected), aggregate_id
        assert got.id == aggregate_id
        assert got.version == expected.version, aggregate_id
        assert vars(got) == vars(expected), aggregate_id


def _batched(store_env: dict[str, str]) -> bool:
    return store_env["PERSISTENCE_MODULE"] != "eventsourcing.popo"


@contextmanager
def _count_reads(app: SimLedger, *, batched: bool) -> Iterator[dict[str, int]]:
    """Count store transactions (batch path) or ``repository.get`` calls (fallback path).

    On the batch path ``repository.get`` must not be used at all.
    """
    counts = {"transactions": 0, "gets": 0}
    with pytest.MonkeyPatch.context() as monkeypatch:
        _spy(app, monkeypatch, counts, batched=batched)
        yield counts


def _spy(
    app: SimLedger, monkeypatch: pytest.MonkeyPatch, counts: dict[str, int], *, batched: bool
) -> None:
    if batched:
        datastore = app.recorder.datastore  # type: ignore[attr-defined]
        # PostgreSQL: connections taken (a transaction takes one; a read of one chunk is a
        # single statement without a transaction around it). SQLite: transactions.
        counted = "get_connection" if hasattr(datastore, "pool") else "transaction"
        real_transaction: Callable[..., AbstractContextManager[Any]] = getattr(datastore, counted)

        def counting_transaction(*args: Any, **kwargs: Any) -> AbstractContextManager[Any]:
            counts["transactions"] += 1
            return real_transaction(*args, **kwargs)

        def no_get(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("repository.get used on the batch path")

        monkeypatch.setattr(datastore, counted, counting_transaction)
        monkeypatch.setattr(app.repository, "get", no_get)
    else:
        real_get = app.repository.get

        def counting_get(*args: Any, **kwargs: Any) -> Any:
            counts["gets"] += 1
            return real_get(*args, **kwargs)

        monkeypatch.setattr(app.repository, "get", counting_get)


@pytest.fixture
def app(store_env: dict[str, str]) -> Iterator[SimLedger]:
    ledger = SimLedger(env=store_env)
    try:
        yield ledger
    finally:
        ledger.close()


def test_matches_repository_get_across_histories_and_snapshots(
    app: SimLedger, store_env: dict[str, str]
) -> None:
    plain = _iccids(5)
    short, at_snapshot, past_snapshot, two_snapshots = _iccids(4, start=100)
    app.receive_sims(
        [*plain, short, at_snapshot, past_snapshot, two_snapshots],
        operator="3UK",
        sim_type="prepaid",
    )
    app.set_labels(short, ["fleet", "north"])
    app.set_note(short, "spare")
    _grow(app, at_snapshot, SNAPSHOT_EVERY)  # snapshot is the latest state: no events after
    _grow(app, past_snapshot, SNAPSHOT_EVERY + PAST)
    _grow(app, two_snapshots, 2 * SNAPSHOT_EVERY + PAST)
    bulk = app.pause(plain[:2])  # a BulkOperation aggregate (UUID text id) in the same table

    assert _latest_snapshot_version(app, short) is None
    assert _latest_snapshot_version(app, at_snapshot) == SNAPSHOT_EVERY
    assert _latest_snapshot_version(app, past_snapshot) == SNAPSHOT_EVERY
    assert _latest_snapshot_version(app, two_snapshots) == 2 * SNAPSHOT_EVERY

    existing = [*plain, short, at_snapshot, past_snapshot, two_snapshots, str(bulk.operation_id)]
    missing = [_iccids(1, start=900)[0], str(uuid.uuid4()), "not-an-id"]
    requested = existing + missing + existing[:3]  # duplicates, in a shuffled order
    random.Random(7).shuffle(requested)

    with _count_reads(app, batched=_batched(store_env)) as counts:
        loaded = load_many(app, requested)
    if _batched(store_env):
        assert counts["transactions"] == 1  # one query for all ids, one connection
    else:
        assert counts["gets"] == len(set(requested))

    _assert_same(loaded, app, existing)
    assert loaded[two_snapshots].version == 2 * SNAPSHOT_EVERY + PAST
    assert loaded[two_snapshots].note == f"note {2 * SNAPSHOT_EVERY + PAST - 1}"
    assert loaded[short].labels == ["fleet", "north"]
    for aggregate_id in (at_snapshot, past_snapshot, two_snapshots):
        assert vars(loaded[aggregate_id]) == vars(_replayed(app, aggregate_id))


def test_reads_only_the_latest_snapshot_and_the_events_after_it(
    persistent_store_env: dict[str, str],
) -> None:
    """Any snapshot would give the same aggregate (the events after it are read too), so
    the query's choice of the LATEST one shows only in the rows it reads."""
    app = SimLedger(env=persistent_store_env)
    try:
        none, two = _iccids(2, start=400)
        app.receive_sims([none, two], operator="3UK", sim_type="prepaid")
        _grow(app, two, 2 * SNAPSHOT_EVERY + PAST)
        assert _latest_snapshot_version(app, two) == 2 * SNAPSHOT_EVERY
        with store_reads(app) as read:
            loaded = load_many(app, [two, none])
    finally:
        app.close()
    assert set(loaded) == {two, none}
    snapshot, event = "snapshot", "event"
    rows = [(snapshot if t == SNAPSHOT_TOPIC else event, i, v) for i, v, t in read]
    after = range(2 * SNAPSHOT_EVERY + 1, 2 * SNAPSHOT_EVERY + PAST + 1)
    assert sorted(rows) == sorted(
        [(event, none, 1), (snapshot, two, 2 * SNAPSHOT_EVERY), *((event, two, v) for v in after)]
    )


def _count_postgres_queries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count statements executed by psycopg cursors (a one-item list, updated in place)."""
    import psycopg

    executed = [0]
    real_execute = psycopg.Cursor.execute

    def counting_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        executed[0] += 1
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting_execute)
    return executed


def test_many_chunks(app: SimLedger, store_env: dict[str, str]) -> None:
    ids = _iccids(2500, start=10_000)
    app.receive_sims(ids, operator="3UK", sim_type="paygo")
    # Histories that straddle chunk boundaries, one of them past a snapshot.
    _grow(app, ids[499], 3)
    _grow(app, ids[1000], SNAPSHOT_EVERY + 5)
    app.set_note(ids[-1], "last")
    missing = _iccids(40, start=50_000)
    requested = ids + missing
    random.Random(11).shuffle(requested)

    with (
        _count_reads(app, batched=_batched(store_env)) as counts,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        queries = _count_postgres_queries(monkeypatch)
        loaded = load_many(app, requested)
    if store_env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        assert counts["transactions"] == math.ceil(len(requested) / batch_load.SQLITE_CHUNK)
    elif store_env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        # One transaction: the chunks' queries go in one pipeline.
        assert counts["transactions"] == 1
        assert queries == [math.ceil(len(requested) / batch_load.POSTGRES_CHUNK)]
    else:
        assert counts["gets"] == len(requested)
    assert math.ceil(len(requested) / batch_load.SQLITE_CHUNK) > 1
    assert math.ceil(len(requested) / batch_load.POSTGRES_CHUNK) > 1

    _assert_same(loaded, app, ids)
    assert loaded[ids[1000]].version == SNAPSHOT_EVERY + 5
    assert loaded[ids[-1]].note == "last"

    # receive_sims's existence check goes through load_many: a SIM in the last chunk is found.
    with pytest.raises(SimAlreadyExists) as refused:
        app.receive_sims([*_iccids(1, start=60_000), ids[-1]], operator="3UK", sim_type="paygo")
    assert refused.value.iccids == [ids[-1]]


def test_loaded_aggregates_can_be_changed_and_saved(app: SimLedger) -> None:
    fresh, snapshotted = _iccids(2, start=300)
    app.receive_sims([fresh, snapshotted], operator="3UK", sim_type="prepaid")
    _grow(app, snapshotted, SNAPSHOT_EVERY + 2)

    loaded = load_many(app, [fresh, snapshotted])
    for sim in loaded.values():
        sim.set_note("changed in bulk")
    app.save(*loaded.values())  # optimistic concurrency: versions must be exactly right

    assert app.repository.get(fresh).version == 2
    assert app.repository.get(snapshotted).version == SNAPSHOT_EVERY + 3
    assert {app.repository.get(i).note for i in (fresh, snapshotted)} == {"changed in bulk"}


def test_nothing_requested_or_nothing_found(app: SimLedger, store_env: dict[str, str]) -> None:
    with _count_reads(app, batched=_batched(store_env)) as counts:
        assert load_many(app, []) == {}
    assert counts == {"transactions": 0, "gets": 0}
    assert load_many(app, _iccids(3)) == {}


def test_compressed_store(persistent_store_env: dict[str, str]) -> None:
    """Rows are decoded by the application's mapper, so compression (or a cipher) works."""
    env = {**persistent_store_env, "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}
    app = SimLedger(env=env)
    try:
        ids = _iccids(3, start=700)
        app.receive_sims(ids, operator="3UK", sim_type="subscription")
        _grow(app, ids[0], SNAPSHOT_EVERY + 1)
        assert _latest_snapshot_version(app, ids[0]) == SNAPSHOT_EVERY
        _assert_same(load_many(app, ids), app, ids)
    finally:
        app.close()


def test_projection_refuses_objects_that_are_not_mutating_events() -> None:
    with pytest.raises(TypeError, match="not a mutating domain event"):
        batch_load.fast_project(None, [object()])  # type: ignore[list-item]
