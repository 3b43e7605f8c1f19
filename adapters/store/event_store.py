"""The ledger's event store: eventsourcing's ``EventStore``, encoding a bulk save as it is written.

``EventStore.put`` encodes every event (``mapper.to_stored_event``) and only then hands the
list to the recorder. For a bulk save on PostgreSQL the server idles while the events are
encoded, then this process mostly waits during the ``COPY``.
When the recorder says it can take the events encoded on demand
(``encodes_on_demand``,
:class:`~simledger.adapters.store.pg_recorder.BulkPostgresApplicationRecorder` for saves
it writes with ``COPY``), :class:`LedgerEventStore` hands it a
:class:`EncodedOnDemand` sequence instead: each event is encoded when the recorder reaches
it, so the server inserts the rows already sent while the next ones are encoded, on the
other core. What is stored, the notification ids and the recordings returned are the same;
an event that cannot be encoded fails the save whole, as before (nothing is recorded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, overload

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    EventStore,
    Notification,
    Recording,
    StoredEvent,
)

from simledger.adapters.store.in_transaction import DecideAgain, ReadNewer


class EncodedOnDemand(Sequence[StoredEvent]):
    """``[encode(e) for e in events]``, each item encoded the first time it is reached (in
    order: reaching item ``i`` encodes every item before it) and kept."""

    def __init__(
        self, events: Sequence[DomainEventProtocol[Any]], encode: Callable[[Any], StoredEvent]
    ) -> None:
        self._events = events
        self._encode = encode
        self._encoded: list[StoredEvent] = []

    def __len__(self) -> int:
        return len(self._events)

    def _reach(self, stop: int) -> None:
        encoded, events, encode = self._encoded, self._events, self._encode
        for index in range(len(encoded), min(stop, len(events))):
            encoded.append(encode(events[index]))

    @overload
    def __getitem__(self, index: int) -> StoredEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[StoredEvent]: ...

    def __getitem__(self, index: int | slice) -> StoredEvent | Sequence[StoredEvent]:
        if isinstance(index, slice):
            self._reach(len(self))
            return self._encoded[index]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        self._reach(position + 1)
        return self._encoded[position]

    def __iter__(self) -> Iterator[StoredEvent]:
        yield from self._encoded[:]  # a copy: encoding below appends to the list
        for index in range(len(self._encoded), len(self._events)):
            self._reach(index + 1)
            yield self._encoded[index]


class LateDecision(Protocol):
    """Events a save decides inside its transaction, under the store's write lock, from the
    latest events of some aggregates (adapters/store/in_transaction.py)."""

    def versions(self) -> Mapping[str, int]:
        """The aggregates to read, and the versions already known of each."""
        ...

    def decide(self, newer: Sequence[Any]) -> Sequence[Any]:
        """The new events, given the events after the known versions (``DecideAgain``:
        not here)."""
        ...

    def expected_events(self) -> int:
        """About how many events ``decide`` will make (a big number: the store writes
        them as it writes big saves)."""
        ...


class LedgerEventStore(EventStore[str]):
    """``EventStore`` handing big saves to a recorder that asks for it encoded on demand,
    and saves that decide some events late (``late``) to a recorder that can."""

    def put(
        self,
        domain_events: Sequence[DomainEventProtocol[str]],
        *,
        late: LateDecision | None = None,
        **kwargs: Any,
    ) -> list[Recording[str]]:
        if late is not None:
            return self._put_late(domain_events, late, kwargs)
        wants = getattr(self.recorder, "encodes_on_demand", None)
        if wants is None or not wants(len(domain_events)):
            return super().put(domain_events, **kwargs)
        stored_events = EncodedOnDemand(domain_events, self.mapper.to_stored_event)
        notification_ids = self.recorder.insert_events(stored_events, **kwargs)
        return _recordings(domain_events, stored_events, notification_ids)

    def _put_late(
        self,
        domain_events: Sequence[DomainEventProtocol[str]],
        late: LateDecision,
        kwargs: dict[str, Any],
    ) -> list[Recording[str]]:
        """``put``, with the events ``late`` decides inside the transaction inserted first.
        They are also put at the front of ``domain_events`` (the caller's list, when it is
        one), so that whatever reads it in the transaction sees them in the log's order."""
        wants = getattr(self.recorder, "encodes_on_demand", None)
        if not getattr(self.recorder, "decides_late", False) or (
            wants is not None and wants(len(domain_events))
        ):
            raise DecideAgain("this store decides nothing late")
        original = list(domain_events)
        stored = [self.mapper.to_stored_event(e) for e in original]
        decided: list[Any] = []
        decided_stored: Sequence[StoredEvent] = []

        def late_stored(read_newer: ReadNewer) -> Sequence[StoredEvent]:
            nonlocal decided_stored
            newer = [self.mapper.to_domain_event(s) for s in read_newer(late.versions())]
            decided[:] = late.decide(newer)  # a run again (a retried insert) starts over
            # Encoded as the recorder writes them (a big decision: while COPY sends them).
            decided_stored = EncodedOnDemand(list(decided), self.mapper.to_stored_event)
            if isinstance(domain_events, list):
                domain_events[:] = [*decided, *original]
            return decided_stored

        big = wants is not None and wants(late.expected_events())
        notification_ids = self.recorder.insert_events(
            stored, late=late_stored, late_is_big=big, **kwargs
        )
        return _recordings([*decided, *original], [*decided_stored, *stored], notification_ids)


def _recordings(
    domain_events: Sequence[Any],
    stored_events: Sequence[StoredEvent],
    notification_ids: Sequence[int] | None,
) -> list[Recording[str]]:
    """The recordings of a save, as ``EventStore.put`` builds them."""
    if not notification_ids:
        return []
    return [
        Recording(
            domain_event,
            Notification(
                originator_id=stored.originator_id,
                originator_version=stored.originator_version,
                topic=stored.topic,
                state=stored.state,
                id=notification_id,
            ),
        )
        for domain_event, stored, notification_id in zip(
            domain_events, stored_events, notification_ids, strict=True
        )
    ]


def log_pages(
    recorder: ApplicationRecorder, start: int, stop: int, page: int
) -> Iterator[Sequence[Notification]]:
    """The notifications after ``start`` up to ``stop``, in log order, ``page`` per query
    (a page is never empty; the last may end before ``stop`` when ids were skipped)."""
    position = start
    while position < stop:
        notifications = recorder.select_notifications(
            start=position, limit=page, stop=stop, inclusive_of_start=False
        )
        if not notifications:
            return
        yield notifications
        position = notifications[-1].id
