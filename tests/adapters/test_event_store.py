"""The ledger's event store (adapters/store/event_store.py): bulk saves encoded as written."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import EventStore, StoredEvent
from helpers import event_count, iccids
from hypothesis import given
from hypothesis import strategies as st

from simledger import SimLedger
from simledger.adapters.store.event_store import EncodedOnDemand, LedgerEventStore
from simledger.adapters.store.pg_recorder import COPY_FROM
from simledger.domain.sim import Sim
from simledger.domain.types import SimType

Access = tuple[str, Any]
_accesses = st.lists(
    st.one_of(
        st.tuples(st.just("index"), st.integers(-12, 11)),
        st.tuples(st.just("slice"), st.tuples(st.integers(-12, 12), st.integers(-12, 12))),
        st.tuples(st.just("iterate"), st.integers(0, 12)),
        st.tuples(st.just("len"), st.none()),
    ),
    max_size=8,
)


@given(count=st.integers(0, 10), accesses=_accesses)
def test_encoded_on_demand_reads_as_the_list_and_encodes_each_event_once_in_order(
    count: int, accesses: list[Access]
) -> None:
    events = [f"event-{n}" for n in range(count)]
    encoded_order: list[str] = []

    def encode(event: str) -> StoredEvent:
        encoded_order.append(event)
        return StoredEvent(event, 1, "topic", event.encode())

    eager = [StoredEvent(e, 1, "topic", e.encode()) for e in events]
    lazy = EncodedOnDemand(events, encode)  # type: ignore[arg-type]
    for what, argument in accesses:
        if what == "index":
            if -count <= argument < count:
                assert lazy[argument] == eager[argument]
            else:
                with pytest.raises(IndexError):
                    lazy[argument]
        elif what == "slice":
            assert list(lazy[argument[0] : argument[1]]) == eager[argument[0] : argument[1]]
        elif what == "iterate":  # a partial walk, then a full one
            walked = [item for _, item in zip(range(argument), lazy, strict=False)]
            assert walked == eager[:argument]
        else:
            assert len(lazy) == count
    assert list(lazy) == eager
    assert encoded_order == events  # each once, in order


def test_the_ledger_uses_its_event_store(persistent_store_env: dict[str, str]) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        assert type(ledger.events) is LedgerEventStore
    finally:
        ledger.close()


def test_a_bulk_save_records_and_reports_what_eventsourcing_would(
    persistent_store_env: dict[str, str],
) -> None:
    """The same rows, notification ids and recordings as ``EventStore.put``, whether the
    recorder takes the events encoded on demand (PostgreSQL) or not (SQLite)."""
    ledger = SimLedger(env=persistent_store_env)
    try:
        count = COPY_FROM + 50
        sims = [
            Sim.start(
                Sim.Received,
                id=key,
                operator="Orange",
                sim_type=SimType.SUBSCRIPTION.value,
                esim=False,
                activation_code=None,
                status="pending",
                order_id=None,
                service=None,
            )
            for key in iccids(count, start=7_000)
        ]
        events = [sim.collect_events()[0] for sim in sims]
        before = ledger.recorder.max_notification_id() or 0
        recordings = ledger.events.put(events)
        ids = [r.notification.id for r in recordings]
        assert ids == list(range(before + 1, before + 1 + count))
        expected = [ledger.mapper.to_stored_event(e) for e in events]
        stored = ledger.recorder.select_notifications(start=before + 1, limit=count + 10)
        assert [(n.originator_id, n.originator_version, n.topic) for n in stored] == [
            (s.originator_id, s.originator_version, s.topic) for s in expected
        ]
        assert [ledger.mapper.to_domain_event(n) for n in stored] == events
        assert [r.notification for r in recordings] == stored
        assert [r.domain_event for r in recordings] == events
    finally:
        ledger.close()


def test_an_event_that_cannot_be_encoded_fails_the_bulk_save_whole(
    persistent_store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SimLedger(env=persistent_store_env)
    try:
        keys = iccids(COPY_FROM + 10, start=9_000)
        before = event_count(ledger)
        real = ledger.mapper.to_stored_event
        seen = [0]

        def failing_late(event: Any) -> StoredEvent:
            seen[0] += 1
            if seen[0] == COPY_FROM:  # well into the rows already sent
                raise ValueError("cannot encode this one")
            return real(event)

        monkeypatch.setattr(ledger.mapper, "to_stored_event", failing_late)
        with pytest.raises(ValueError, match="cannot encode"):
            ledger.receive_sims(keys, operator="Orange", sim_type=SimType.SUBSCRIPTION)
        monkeypatch.undo()
        assert event_count(ledger) == before
        # and the store still works: the same SIMs can be received afterwards
        ledger.receive_sims(keys, operator="Orange", sim_type=SimType.SUBSCRIPTION)
        assert event_count(ledger) == before + len(keys)
    finally:
        ledger.close()


def test_small_saves_and_other_recorders_take_eventsourcings_path() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.got: list[object] = []

        def insert_events(self, stored_events: Any, **_: Any) -> None:
            self.got.append(stored_events)

    class Mapper:
        def to_stored_event(self, event: str) -> StoredEvent:
            return StoredEvent(event, 1, "topic", b"{}")

    recorder = Recorder()
    store = LedgerEventStore(mapper=Mapper(), recorder=recorder)  # type: ignore[arg-type]
    assert store.put(["a", "b"]) == []  # type: ignore[list-item]
    assert isinstance(recorder.got[0], list)  # encoded before, as EventStore.put does
    assert issubclass(LedgerEventStore, EventStore)
