"""The ledger's cache of the SIMs it saved (adapters/store/aggregate_cache.py): bulk commands read
from it only what the store says is still the latest, and it never shares state.

Observed through public paths only: what the ledger reads from its store (the mapper's
``decode_row``, :func:`helpers.store_reads`), what its commands decide and record, and, with a
snapshot at every save, the state of the very object a command saved (the cache keeps a copy
of it), compared with a replay of the stored events."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
from eventsourcing.application import project_aggregate
from helpers import FakeClock, active_sim_aggregate, event_count, iccids, ready_sim, store_reads

from simledger import SimLedger, SimStatus
from simledger.adapters.store.aggregate_cache import AggregateCache, latest_versions, private_copy
from simledger.domain.base import Snapshot
from simledger.domain.sim import Sim


def state(aggregate: Any) -> dict[str, Any]:
    """Every attribute of ``aggregate`` but its pending events."""
    return {"id": aggregate.id, "version": aggregate.version, **Snapshot.take(aggregate).state}


def snapshot_every_save(ledger: SimLedger) -> SimLedger:
    """From now on each save also writes a snapshot of the object saved."""
    cast(Any, ledger).snapshotting_intervals = {Sim: 1}  # the instance only
    return ledger


def saved(ledger: SimLedger, key: str) -> dict[str, Any]:
    """The state of the object the ledger saved last for ``key`` (its latest snapshot)."""
    assert ledger.snapshots is not None
    [snapshot] = ledger.snapshots.get(key, desc=True, limit=1)
    return state(cast(Snapshot, snapshot).mutate(None))


def replayed(ledger: SimLedger, key: str) -> Any:
    """The SIM from every stored event, no snapshot."""
    return project_aggregate(None, ledger.events.get(key))


@contextlib.contextmanager
def loads(ledger: SimLedger, keys: list[str]) -> Iterator[set[str]]:
    """Which of ``keys`` the ledger loads from its store meanwhile (filled in at the end): it
    decodes a stored event or snapshot of theirs it had before. (New events it decodes are
    its views folding what it has just written.)"""
    before = {
        k: e.originator_version for k in keys for e in ledger.events.get(k, desc=True, limit=1)
    }
    loaded: set[str] = set()
    with store_reads(ledger) as read:
        yield loaded
    loaded.update(i for i, version, _ in read if i in before and version <= before[i])


def assert_versions_unbroken(ledger: SimLedger, key: str) -> None:
    versions = [e.originator_version for e in ledger.events.get(key)]
    assert versions == list(range(1, len(versions) + 1))


def fail_saves(monkeypatch: pytest.MonkeyPatch, ledger: SimLedger) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(ledger.recorder, "insert_events", fail)


def test_a_bulk_command_reads_the_sims_it_just_saved_from_the_cache(
    store_env: dict[str, str],
) -> None:
    ledger = snapshot_every_save(SimLedger(store_env, clock=FakeClock()))
    keys = [ready_sim(ledger, n) for n in range(1, 5)]
    paused = ledger.pause(keys)
    with loads(ledger, keys) as loaded:
        confirmed = ledger.confirm_many(paused.operation_id, dict.fromkeys(keys, True))
    assert sorted(confirmed.applied) == sorted(keys)
    assert not loaded  # every SIM came from the cache
    for key in keys:
        from_store = replayed(ledger, key)
        assert from_store.status is SimStatus.SUSPENDED
        assert saved(ledger, key) == state(from_store)
    ledger.close()


def test_a_sim_changed_by_another_ledger_is_loaded_from_the_store(
    persistent_store_env: dict[str, str],
) -> None:
    """Two writers: the cache of the first never hides the second's events (R-BK6 is
    decided on the SIM as stored)."""
    first = SimLedger(persistent_store_env, clock=FakeClock())
    second = SimLedger(persistent_store_env, clock=FakeClock())
    key = ready_sim(first, 1)
    first.set_note(key, "saved by the first ledger")
    with loads(first, [key]) as loaded:
        assert "R-SIM4" in first.resume([key]).rejected[key]  # active: nothing to resume
    assert not loaded  # cached after its own save
    assert second.pause([key]).accepted == [key]  # the other ledger puts a pause in flight
    count = event_count(first)
    with loads(first, [key]) as loaded:
        answer = first.pause([key])
    assert loaded == {key}  # stale: read again from the store
    assert answer.accepted == [] and "R-BK6" in answer.rejected[key]
    assert event_count(first) == count + 1  # only the refused request itself
    first.close()
    second.close()


def test_a_sim_a_failed_command_took_and_changed_is_read_again_from_the_store(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command owns the SIMs it takes from the cache: one that changed them and failed to
    save gives nothing back, and the next command reads them from the store."""
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1)
    ledger.set_labels(key, ["north"])
    paused = ledger.pause([key])
    fail_saves(monkeypatch, ledger)
    with pytest.raises(RuntimeError):
        ledger.confirm_many(paused.operation_id, {key: True})  # took it, confirmed it, lost it
    monkeypatch.undo()
    with loads(ledger, [key]) as loaded:
        answer = ledger.resume([key])
    assert loaded == {key}  # taken: gone until saved again
    assert answer.accepted == [] and "R-BK6" in answer.rejected[key]  # the pause is in flight
    assert ledger.confirm_many(paused.operation_id, {key: True}).applied == [key]
    sim = ledger.sim(key)
    assert sim.status is SimStatus.SUSPENDED and sim.labels == ["north"]
    assert_versions_unbroken(ledger, key)
    ledger.close()


def test_a_failed_save_leaves_nothing_in_the_cache(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1)
    mine: Any = ledger.repository.get(key)
    mine.set_note("lost")
    fail_saves(monkeypatch, ledger)
    with pytest.raises(RuntimeError):
        ledger.save(mine)
    monkeypatch.undo()
    # A copy of ``mine`` in the cache would be taken by the pause (version one too high: a
    # gap in the SIM's versions) and its note would be saved with the pause.
    assert ledger.pause([key]).accepted == [key]
    assert_versions_unbroken(ledger, key)
    sim = ledger.sim(key)
    assert sim.note is None and sim.operation_in_flight is not None
    ledger.close()


def test_the_cache_keeps_the_latest_saved_and_no_more_than_its_size() -> None:
    sims = [active_sim_aggregate(n) for n in range(5)]
    sims[4].set_labels(["north"])
    sims[4].collect_events()
    cache = AggregateCache(3)
    cache.put(sims)
    assert len(cache) == 3
    taken = cache.take(cast(Any, None), [sim.id for sim in sims], checked=False)  # no store
    assert list(taken) == [sim.id for sim in sims[2:]]
    assert len(cache) == 0  # taken: the caller owns them
    copy = private_copy(sims[4])
    assert copy is not sims[4] and copy.labels == ["north"] and copy.labels is not sims[4].labels
    nothing = AggregateCache(0)
    nothing.put(sims)
    assert len(nothing) == 0


def test_latest_versions_answers_for_many_ids_at_once(store_env: dict[str, str]) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    keys = ledger.receive_sims(iccids(1500), operator="3UK", sim_type="paygo")
    ledger.set_note(keys[7], "one more event")
    missing = "89440000000000999999"
    found = latest_versions(ledger, [*keys, missing])
    assert missing not in found
    assert found[keys[7]] == 2
    assert {found[k] for k in keys if k != keys[7]} == {1}
    ledger.close()


def test_threads_of_one_ledger_share_the_cache_safely(store_env: dict[str, str]) -> None:
    """Saves evict while bulk commands take and give back (a cache of 2 for 6 SIMs): no
    thread sees an error, and what the next command works from equals the stored SIM."""
    import threading

    ledger = SimLedger({**store_env, "SIM_CACHE_SIZE": "2"}, clock=FakeClock())
    keys = [ready_sim(ledger, n) for n in range(1, 7)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(40):
                key = keys[(n + offset) % len(keys)]
                if n % 2:
                    ledger.set_note(key, f"{offset}-{n}")
                refused = ledger.resume(keys)  # active SIMs: all taken, refused, given back
                assert refused.accepted == [] and set(refused.rejected) == set(keys)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    snapshot_every_save(ledger)
    assert sorted(ledger.pause(keys).accepted) == sorted(keys)
    for key in keys:
        assert saved(ledger, key) == state(replayed(ledger, key))
    ledger.close()


def test_an_entry_is_handed_to_one_taker_and_a_refused_sim_comes_back(
    store_env: dict[str, str],
) -> None:
    ledger = snapshot_every_save(SimLedger(store_env, clock=FakeClock()))
    keys = [ready_sim(ledger, n) for n in range(1, 3)]
    earlier = ledger.pause(keys[:1])
    first = ledger.pause(keys)
    assert first.accepted == [keys[1]] and "R-BK6" in first.rejected[keys[0]]
    # the refused SIM went back unchanged; the accepted one was saved and kept
    with loads(ledger, keys) as loaded:
        again = ledger.pause(keys)
        confirmed = ledger.confirm_many(earlier.operation_id, {keys[0]: True})
    assert not loaded
    assert again.accepted == [] and all("R-BK6" in again.rejected[k] for k in keys)
    assert confirmed.applied == [keys[0]]
    for key in keys:
        assert saved(ledger, key) == state(replayed(ledger, key))
    ledger.close()


def test_an_aggregate_saved_by_the_caller_is_cached_as_a_copy(store_env: dict[str, str]) -> None:
    ledger = snapshot_every_save(SimLedger(store_env, clock=FakeClock()))
    key = ready_sim(ledger, 1)
    mine: Any = ledger.repository.get(key)
    mine.set_labels(["east"])
    ledger.save(mine)
    mine.labels.append("changed after the save")
    mine.set_note("never saved")
    with loads(ledger, [key]) as loaded:
        assert ledger.pause([key]).accepted == [key]
    assert not loaded  # the pause worked from the cached copy...
    worked_from = saved(ledger, key)
    assert worked_from["labels"] == ["east"] and worked_from["note"] is None  # ...not ``mine``
    assert worked_from == state(replayed(ledger, key))
    assert_versions_unbroken(ledger, key)
    ledger.close()


def test_a_refusal_resting_on_a_stale_cached_sim_is_decided_again_from_the_store(
    persistent_store_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The first ledger's copy says a pause is in flight; meanwhile the second ledger had
    it confirmed: a resume must be accepted, not refused for R-BK6."""
    first = SimLedger(persistent_store_env, clock=FakeClock())
    second = SimLedger(persistent_store_env, clock=FakeClock())
    key = ready_sim(first, 1)
    paused = first.pause([key])  # the first ledger keeps its copy, with the pause in flight
    second.confirm(paused.operation_id, key)
    count = event_count(first)
    with caplog.at_level(logging.INFO, logger="simledger"), loads(first, [key]) as loaded:
        answer = first.resume([key])
    assert "bulk.cache_stale" in caplog.text  # refused on the cached copy: found stale
    assert loaded == {key}  # and decided again on the SIM as stored
    assert answer.accepted == [key] and answer.rejected == {}
    assert event_count(first) == count + 2  # ResumeRequested + the operation
    stored: Any = first.repository.get(key)
    assert stored.in_flight is not None and stored.in_flight["kind"] == "resume"
    first.close()
    second.close()


def test_a_stale_cached_sim_that_was_changed_fails_the_save_and_is_read_again(
    persistent_store_env: dict[str, str],
) -> None:
    first = SimLedger(persistent_store_env, clock=FakeClock())
    second = SimLedger(persistent_store_env, clock=FakeClock())
    keys = [ready_sim(first, n) for n in range(1, 4)]
    first.set_labels(keys[0], ["cached"])  # every SIM is in the first ledger's cache now
    second.set_note(keys[1], "written by the second ledger")
    count = event_count(first)
    answer = first.pause(keys)
    assert sorted(answer.accepted) == sorted(keys)
    assert event_count(first) == count + 4  # three requests + the operation, nothing twice
    for key in keys:
        stored: Any = first.repository.get(key)
        assert stored.in_flight is not None
    noted: Any = first.repository.get(keys[1])
    assert noted.note == "written by the second ledger"
    first.close()
    second.close()
