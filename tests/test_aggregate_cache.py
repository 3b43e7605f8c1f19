"""The ledger's cache of the SIMs it saved (adapters/store/aggregate_cache.py): bulk commands read
from it only what the store says is still the latest, and it never shares state."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import FakeClock, event_count, iccids, ready_sim

from simledger import SimLedger, SimStatus
from simledger.adapters.store.aggregate_cache import AggregateCache, latest_versions, private_copy
from simledger.adapters.store.batch_load import load_many


def state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def test_a_bulk_command_reads_the_sims_it_just_saved_from_the_cache(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    keys = [ready_sim(ledger, n) for n in range(1, 5)]
    paused = ledger.pause(keys)
    loaded: list[list[str]] = []
    real = load_many

    def spy(app: Any, ids: Any) -> Any:
        loaded.append(list(ids))
        return real(app, ids)

    monkeypatch.setattr("simledger.application.unit_of_work.load_many", spy)
    confirmed = ledger.confirm_many(paused.operation_id, dict.fromkeys(keys, True))
    assert sorted(confirmed.applied) == sorted(keys)
    assert loaded == []  # every SIM came from the cache
    for key in keys:
        from_store: Any = ledger.repository.get(key)
        assert from_store.status is SimStatus.SUSPENDED
        assert state(ledger.unit_of_work.sims([key])[key]) == state(from_store)
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
    assert key in first.unit_of_work.cache._items  # cached after its own save
    assert second.pause([key]).accepted == [key]  # the other ledger puts a pause in flight
    assert first.unit_of_work.cache.take(first, [key]) == {}  # stale: dropped
    assert key not in first.unit_of_work.cache._items
    count = event_count(first)
    answer = first.pause([key])
    assert answer.accepted == [] and "R-BK6" in answer.rejected[key]
    assert event_count(first) == count + 1  # only the refused request itself
    first.close()
    second.close()


def test_copies_share_no_state_with_the_cache_or_the_saved_object(
    store_env: dict[str, str],
) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1)
    ledger.set_labels(key, ["north"])
    [taken] = ledger.unit_of_work.sims([key]).values()
    taken.labels.append("changed in place")
    taken.set_note("pending, never saved")
    [again] = ledger.unit_of_work.sims([key]).values()
    assert again.labels == ["north"] and again.note is None
    assert again._pending_events == []
    stored: Any = ledger.repository.get(key)
    assert state(again) == state(stored)
    ledger.close()


def test_a_failed_save_leaves_nothing_in_the_cache(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1)
    before = state(ledger.unit_of_work.sims([key])[key])
    [sim] = ledger.unit_of_work.sims([key]).values()
    sim.set_note("lost")

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(ledger, "_record", fail)
    with pytest.raises(RuntimeError):
        ledger.save(sim)
    monkeypatch.undo()
    assert state(ledger.unit_of_work.sims([key])[key]) == before
    ledger.close()


def test_the_cache_keeps_the_latest_saved_and_no_more_than_its_size() -> None:
    class Thing:
        def __init__(self, n: int) -> None:
            self.id, self.version, self.items = f"id{n}", n, [n]
            self._pending_events: list[Any] = []

    cache = AggregateCache(3)
    things = [Thing(n) for n in range(5)]
    cache.put(things)
    assert len(cache) == 3
    assert list(cache._items) == ["id2", "id3", "id4"]
    copy = private_copy(things[4])
    assert copy is not things[4] and copy.items == [4] and copy.items is not things[4].items
    nothing = AggregateCache(0)
    nothing.put(things)
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
    """Saves evict while loads read (a cache of 2 for 6 SIMs): no thread sees an error, and
    every load still equals the stored SIM."""
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
                ledger.unit_of_work.sims(keys)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key, sim in ledger.unit_of_work.sims(keys).items():
        assert state(sim) == state(ledger.repository.get(key))
    ledger.close()


def test_an_entry_is_handed_to_one_taker_and_a_refused_sim_comes_back(
    store_env: dict[str, str],
) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    keys = [ready_sim(ledger, n) for n in range(1, 3)]
    ledger.pause(keys[:1])
    assert list(ledger.unit_of_work.cache.take(ledger, keys[:1])) == keys[:1]
    assert ledger.unit_of_work.cache.take(ledger, keys[:1]) == {}  # taken: gone until saved again
    first = ledger.pause(keys)  # both loaded from the store
    assert first.accepted == [keys[1]] and "R-BK6" in first.rejected[keys[0]]
    # the refused SIM went back unchanged; the accepted one was saved and kept
    assert set(ledger.unit_of_work.cache._items) >= set(keys)
    for key, sim in ledger.unit_of_work.cache.take(ledger, keys).items():
        assert state(sim) == state(ledger.repository.get(key))
    ledger.close()


def test_an_aggregate_saved_by_the_caller_is_cached_as_a_copy(store_env: dict[str, str]) -> None:
    ledger = SimLedger(store_env, clock=FakeClock())
    key = ready_sim(ledger, 1)
    mine: Any = ledger.repository.get(key)
    mine.set_labels(["east"])
    ledger.save(mine)
    mine.labels.append("changed after the save")
    mine.set_note("never saved")
    [cached] = ledger.unit_of_work.cache.take(ledger, [key]).values()
    assert cached is not mine
    assert cached.labels == ["east"] and cached.note is None
    assert state(cached) == state(ledger.repository.get(key))
    ledger.close()


def test_a_refusal_resting_on_a_stale_cached_sim_is_decided_again_from_the_store(
    persistent_store_env: dict[str, str],
) -> None:
    """The first ledger's copy says a pause is in flight; meanwhile the second ledger had
    it confirmed: a resume must be accepted, not refused for R-BK6."""
    first = SimLedger(persistent_store_env, clock=FakeClock())
    second = SimLedger(persistent_store_env, clock=FakeClock())
    key = ready_sim(first, 1)
    paused = first.pause([key])
    assert key in first.unit_of_work.cache._items  # the copy with the pause in flight
    second.confirm(paused.operation_id, key)
    count = event_count(first)
    answer = first.resume([key])
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
