"""The eventsourcing ``Application`` under :class:`SimLedger`: how the ledger's store is
built (settings, recorder, transcoder, mapper, event store) and how a save runs (through
its unit of work, application/unit_of_work.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    IntegrityError,
    InternalError,
    Mapper,
    Recording,
    Transcoder,
)
from eventsourcing.utils import EnvType

from simledger.adapters.logs import get_logger
from simledger.adapters.store.event_store import LedgerEventStore
from simledger.adapters.store.fast_events import FAST_EVENTS
from simledger.adapters.store.mapper import LedgerMapper, construct_mapper
from simledger.adapters.store.persistence import reachable_store_env
from simledger.adapters.store.transcoder import LedgerTranscoder
from simledger.application.unit_of_work import UnitOfWork
from simledger.domain.base import LedgerAggregate, Snapshot
from simledger.domain.errors import StoreUnreadable
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

log = get_logger("simledger")

R = TypeVar("R")

SIM_CACHE_SIZE = 20_000
"""SIMs a ledger keeps copies of after saving them (setting ``SIM_CACHE_SIZE``; 0: none), so
a bulk command over SIMs it just saved skips loading them: about 3 KB each."""

SIM_SNAPSHOT_INTERVAL = 5
"""A SIM is snapshotted when a save takes it across a multiple of this many events, so a
load reads its latest snapshot and at most four events after it. A provisioned SIM
(received, checked, line, company, package, activated) already has one."""


GROUP_SNAPSHOT_INTERVAL = 500
"""A shared group is snapshotted every this many events (its pool's draws, mostly): a
snapshot holds every member's ICCID, so not often; a ledger that used the group lately
reads only the events after the state it knows (adapters/store/aggregate_cache.py)."""


def create_tables_retrying(create: Callable[[], R]) -> R:
    """Run ``create`` (which creates the store's tables if missing) again when another
    process creating the same tables at the same moment made PostgreSQL refuse it
    ("tuple concurrently updated", a duplicate type): the statements are idempotent."""
    for attempt in range(1, 6):
        try:
            return create()
        except (InternalError, IntegrityError):
            if attempt == 5:
                raise
            log.info("store.create_tables.retry", attempt=attempt)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class EventSourcedLedger(Application[str]):
    """The ledger's store and its unit of work. ``env`` follows eventsourcing's settings."""

    name = "simledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Sim: SIM_SNAPSHOT_INTERVAL,
        SharedGroup: GROUP_SNAPSHOT_INTERVAL,
    }
    snapshot_class = Snapshot

    def __init__(self, env: EnvType | None = None) -> None:
        # Events are built by the store's shortcut (adapters/store/fast_events.py): the
        # same events as eventsourcing's way, field by field, without a frozen dataclass
        # __init__ per event, which a bulk command pays 10,000 times. A setting of the
        # aggregate classes, so for the whole process; every ledger sets the same one.
        LedgerAggregate.event_shortcut = FAST_EVENTS
        super().__init__(env)
        self.unit_of_work = UnitOfWork(
            self,
            cache_size=int(self.env.get("SIM_CACHE_SIZE") or SIM_CACHE_SIZE),
        )
        # A store encrypted at rest opened without its key (or the reverse) fails here, with
        # a message saying so, rather than at the first read.
        first = self.recorder.select_notifications(start=None, limit=1)
        if first and isinstance(self.mapper, LedgerMapper):
            try:
                self.mapper.check_readable(first[0])
            except StoreUnreadable:
                # The store's connections, before the caller gets the error (a subclass's
                # close may need what its own __init__ has not made yet).
                Application.close(self)
                raise

    def construct_env(self, name: str, env: EnvType | None = None) -> Any:
        base = super().construct_env(name, env)
        return type(base)(name, reachable_store_env(base))

    def construct_event_store(self) -> LedgerEventStore:
        return LedgerEventStore(mapper=self.mapper, recorder=self.recorder)

    def construct_recorder(self) -> Any:
        return create_tables_retrying(super().construct_recorder)

    def construct_snapshot_store(self) -> Any:
        return create_tables_retrying(super().construct_snapshot_store)

    def construct_transcoder(self) -> Transcoder:
        """eventsourcing's JSON transcoder decoding with orjson (adapters/store/transcoder.py),
        unless ``TRANSCODER_TOPIC`` names another."""
        if self.factory.env.get(self.factory.TRANSCODER_TOPIC):
            return super().construct_transcoder()
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_mapper(self) -> Mapper[str]:
        """eventsourcing's mapper (cipher and compressor settings included), with clear
        errors for a store that cannot be read with them (adapters/store/mapper.py)."""
        return construct_mapper(self.factory, self.construct_transcoder())

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[str]]:
        """``Application.save``; our aggregates go through the unit of work's save (which
        also keeps the saved SIMs in its cache), anything else through the original path."""
        if not all(isinstance(obj, LedgerAggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        return self.unit_of_work.record(objs, kwargs, owned=False)

    def _take_snapshots(self, processing_event: ProcessingEvent[str]) -> None:
        """Snapshots taken from the saved objects, in one write (``UnitOfWork``)."""
        self.unit_of_work.take_snapshots(processing_event)
