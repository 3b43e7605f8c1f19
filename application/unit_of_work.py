"""The unit of work every command runs in: load, let the domain decide, save.

* **Load**: an aggregate by id (:meth:`UnitOfWork.get` and its typed shortcuts), or many
  SIMs at once (:meth:`UnitOfWork.sims`): those this ledger saved last come from its cache
  of SIMs (adapters/store/aggregate_cache.py), the others are loaded in batches.
* **Save**: every aggregate a command changed, in one transaction; the saved SIMs go back
  into the cache, and the aggregates whose new events crossed a snapshot interval are
  snapshotted from the saved objects themselves.
* **Retry**: :func:`command` re-runs a command on fresh state when its save collides with
  another writer, a bounded number of times, then raises :class:`ConcurrencyConflict`.
* **Bulk**: :meth:`UnitOfWork.on_sims` decides a command over up to 10,000 SIMs and saves
  it whole; :func:`without_gc` pauses the cyclic garbage collector around such a command.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Notification, Recording, StoredEvent

from simledger.adapters.logs import get_logger
from simledger.adapters.store.aggregate_cache import AggregateCache, GroupCache, latest_versions
from simledger.adapters.store.batch_load import gc_paused, load_many
from simledger.adapters.store.event_store import EncodedOnDemand, LateDecision
from simledger.adapters.store.in_transaction import DecideAgain, HookFailed, InTransaction
from simledger.application.bulk_late import BulkDecision
from simledger.application.iccid_memo import IccidMemo
from simledger.domain import values
from simledger.domain.base import LedgerAggregate, Snapshot
from simledger.domain.errors import ConcurrencyConflict, UnknownGroup, UnknownPackage, UnknownSim
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

log = get_logger("simledger")

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A", bound=LedgerAggregate)

MAX_ATTEMPTS = 8
"""Runs of a command whose save keeps colliding with other writers, before it gives up."""

GROUP_CACHE_SIZE = 64
"""Shared groups a ledger keeps the latest known state of (each up to its members' ids)."""


USAGE_ATTEMPTS = 100
"""Runs of a usage command: a busy shared pool's writers collide on its version all the
time, and a usage record is never the caller's to retry (the carrier sent it once)."""


def command(method: Callable[P, R]) -> Callable[P, R]:
    """Re-run ``method`` on fresh state when its save collides with another writer."""
    return retried(MAX_ATTEMPTS)(method)


def retried(attempts: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """:func:`command` with ``attempts`` runs at most (the back-off stops growing at the
    eighth)."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            for attempt in range(1, attempts + 1):
                try:
                    return method(*args, **kwargs)
                except IntegrityError as conflict:
                    log.info("command.conflict", command=method.__name__, attempt=attempt)
                    if attempt == attempts:
                        raise ConcurrencyConflict(
                            f"{method.__name__} collided with concurrent writers {attempt} "
                            "times; nothing was recorded, try again"
                        ) from conflict
                    time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, MAX_ATTEMPTS)))
            raise AssertionError("unreachable")  # pragma: no cover

        return run

    return decorate


def without_gc(method: Callable[P, R]) -> Callable[P, R]:
    """Run a bulk ``method`` with the cyclic garbage collector paused (``gc_paused``): a
    command over 10,000 SIMs allocates a few hundred thousand acyclic objects, and every
    collection during it would walk them all, and the SIM cache."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with gc_paused():
            return method(*args, **kwargs)

    return run


class LateSave(LateDecision, Protocol):
    """A late decision (adapters/store/event_store.py) that also names the aggregates it
    changed, once decided (for the caches and snapshots after the save)."""

    def aggregates(self) -> Sequence[LedgerAggregate]: ...


@dataclass
class Decision(Generic[R]):
    """What a bulk command decided: its answer, the SIMs it changed, those it refused
    (id -> reason), and other aggregates to save with them."""

    result: R
    changed: list[Sim]
    refused: Mapping[str, str]
    others: list[Any] = field(default_factory=list)


class UnitOfWork:
    """Loads and saves the aggregates of one ledger (``app``: its eventsourcing
    application, whose recorder, repository and snapshot store it uses)."""

    def __init__(
        self,
        app: Application[str],
        *,
        cache_size: int,
    ) -> None:
        self.app = app
        self.cache = AggregateCache(cache_size)
        self.in_transaction: Callable[[Sequence[Any]], InTransaction | None] | None = None
        """Given a save's events, the work to do inside its transaction (the ledger's
        inline fold of its views), or None."""
        self.iccids = IccidMemo()
        self.groups = GroupCache(GROUP_CACHE_SIZE)
        """The shared groups this ledger used last: a busy pool is loaded as the events
        after the version known here, not as its thousands of members again."""
        """The ICCIDs this ledger normalised: a bulk pause's come back in its carriers'
        answers and in the resume, each time as the caller's strings."""

    # ---- load -------------------------------------------------------------------------------
    def get(self, aggregate_id: str, kind: type[A]) -> A | None:
        """The aggregate ``aggregate_id`` if it exists and is a ``kind``."""
        # load_many reads the latest snapshot and the events after it in one query.
        aggregate = load_many(self.app, (aggregate_id,)).get(aggregate_id)
        return aggregate if isinstance(aggregate, kind) else None

    def iccid(self, raw: object) -> str:
        """``normalise_iccid(raw)``, remembered for this ledger (R-SIM1)."""
        return self.iccids.normalise(raw)

    def sim(self, iccid: object) -> Sim:
        key = self.iccids.normalise(iccid)
        sim = self.get(key, Sim)
        if sim is None:
            raise UnknownSim(key)
        return sim

    def copy(self, sim: Sim) -> Package | None:
        """The SIM's own package copy, if it has one."""
        return self.get(sim.copy_id, Package) if sim.copy_id else None

    def catalogue_package(self, package_id: object) -> Package:
        key = values.uuid_text(package_id, UnknownPackage)
        package = self.get(key, Package)
        if package is None or package.is_copy:
            raise UnknownPackage(package_id)
        return package

    def group(self, group_id: object) -> SharedGroup:
        """A shared group that is not deleted."""
        key = values.uuid_text(group_id, UnknownGroup)
        group = self.groups.latest(self.app, key)
        if group is None:
            raise UnknownGroup(group_id)
        if group.deleted:
            raise UnknownGroup(group_id, " (deleted)")
        return group

    def sims(self, iccids: Sequence[str]) -> dict[str, Sim]:
        """The SIMs among ``iccids``: those this ledger saved last and nobody changed since
        taken from its cache, the others loaded in batches. The caller owns them: it saves
        them with :meth:`save_owned` or drops them."""
        return self._sims_for(iccids, trust_cache=False)[0]

    def _sims_for(
        self, iccids: Sequence[str], *, trust_cache: bool
    ) -> tuple[dict[str, Sim], set[str]]:
        """``sims``; with ``trust_cache``, cached SIMs are taken without asking the store
        for their version (see :meth:`on_sims`), and the second value names them."""
        found = self.cache.take(self.app, iccids, checked=not trust_cache)
        unchecked = set(found) if trust_cache else set()
        missing = [i for i in iccids if i not in found]
        if missing:
            found.update(load_many(self.app, missing))
        return {k: v for k, v in found.items() if isinstance(v, Sim)}, unchecked

    def existing(self, iccids: Sequence[str]) -> list[str]:
        """Those of ``iccids`` that are recorded already: their latest versions asked (one
        query per chunk), not their events read and decoded."""
        return list(latest_versions(self.app, iccids))

    def _give_back(self, taken: Mapping[str, Sim], changed: Sequence[Sim]) -> None:
        """Return to the cache the SIMs a command took and left unchanged (a refused
        request): they are still the latest. Only after its save succeeded."""
        saved = {id(sim) for sim in changed}
        self.cache.put(
            (s for s in taken.values() if id(s) not in saved and not s._pending_events),
            owned=True,
        )

    # ---- save -------------------------------------------------------------------------------
    def save(
        self, *aggregates: LedgerAggregate, late: LateSave | None = None
    ) -> list[Recording[str]]:
        """Record the new events of ``aggregates`` in one transaction; with ``late``, also
        the events it decides in that transaction under the store's write lock (where the
        store can: :attr:`decides_late`; else ``DecideAgain``, nothing recorded)."""
        return self.record(aggregates, {}, owned=False, late=late)

    @property
    def decides_late(self) -> bool:
        """Whether saves can decide events under the store's write lock (PostgreSQL)."""
        return bool(getattr(self.app.recorder, "decides_late", False))

    def save_owned(self, aggregates: Sequence[LedgerAggregate]) -> list[Recording[str]]:
        """``save``, for a caller that drops ``aggregates`` afterwards: the SIM cache keeps
        them as they are instead of copies."""
        return self.record(aggregates, {}, owned=True)

    def save_chunks(self, chunks: Callable[[], Iterable[Sequence[LedgerAggregate]]]) -> int | None:
        """Record the new events of every chunk of new aggregates that ``chunks()`` gives in
        ONE transaction (all or nothing), each chunk folded into the views inline as a save
        is, then dropped: memory is bounded by a chunk, not by the save (the CSV import).
        Returns how many events were recorded; None, with ``chunks`` not called, when the
        store cannot (then ``save``).

        For aggregates no one else holds: they are not kept in the SIM cache, and no
        snapshot is taken (a new aggregate has one event). If the inline fold fails, the
        whole save is written again without it (``chunks()`` called again) and the views
        catch up after the commit, as after any save that did not fold."""
        recorder = self.app.recorder
        insert = getattr(recorder, "insert_event_chunks", None)
        datastore = getattr(recorder, "datastore", None)
        if insert is None or getattr(datastore, "enable_db_functions", False):
            return None
        mapper = self.app.mapper
        tail: list[Any] = []

        def stored(fold: bool) -> Iterator[tuple[Sequence[StoredEvent], InTransaction | None]]:
            for aggregates in chunks():
                events = [e for a in aggregates for e in a.collect_events()]
                if events:
                    tail[:] = events[-1:]
                    hook = self.in_transaction(events) if fold and self.in_transaction else None
                    yield EncodedOnDemand(events, mapper.to_stored_event), hook

        try:
            count, last = insert(stored(fold=True))
        except HookFailed as failed:
            log.warning("store.in_transaction.failed", error=repr(failed.__cause__))
            count, last = insert(stored(fold=False))
        if count:
            event = tail[0]
            notification = Notification(
                originator_id=event.originator_id,
                originator_version=event.originator_version,
                topic="",
                state=b"",
                id=last,
            )
            # The last event stands for the save: what follows a save reads its position.
            self.app._notify([Recording(event, notification)])
        return int(count)

    def record(
        self,
        objs: Sequence[LedgerAggregate],
        kwargs: dict[str, Any],
        *,
        owned: bool,
        late: LateSave | None = None,
    ) -> list[Recording[str]]:
        """``Application.save`` for our aggregates, collecting their events directly:
        eventsourcing's ``ProcessingEvent.collect_events`` runs two runtime ``Protocol``
        isinstance checks per object, whose outcome is known for a ``LedgerAggregate``."""
        app = self.app
        processing_event: ProcessingEvent[str] = ProcessingEvent()
        for aggregate in objs:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        if late is not None:
            processing_event.saved_kwargs["late"] = late
        if self.in_transaction is not None and (processing_event.events or late is not None):
            hook = self.in_transaction(processing_event.events)
            if hook is not None:
                touches = getattr(late, "touches", None)
                if touches is not None:
                    hook.hint(touches())
                processing_event.saved_kwargs["in_transaction"] = hook
        recordings = app._record(processing_event)
        if late is not None:
            for aggregate in late.aggregates():
                processing_event.aggregates[aggregate.id] = aggregate
        self.cache.put(
            (a for a in processing_event.aggregates.values() if isinstance(a, Sim)), owned=owned
        )
        self.groups.saved(processing_event.aggregates.values())
        self.take_snapshots(processing_event)
        app._notify(recordings)
        app.notify(processing_event.events)  # deprecated hook, called as the original does
        return recordings

    def take_snapshots(self, processing_event: ProcessingEvent[str]) -> None:
        """Snapshot each saved aggregate whose new events crossed a multiple of its
        interval, from the saved object itself, all in one write.

        eventsourcing's own ``_take_snapshots`` re-reads every such aggregate from the store
        (``take_snapshot``: one query each, 10,000 for a bulk command) and writes each
        snapshot on its own. The saved object already is the aggregate at its last version,
        so the snapshot is taken at that version (not necessarily the multiple itself).
        Snapshots are a cache: they are written after the events' transaction, as
        eventsourcing writes them, and a crash in between only means a longer load.
        """
        snapshots = self.app.snapshots
        if snapshots is None:
            return
        new_events: dict[str, int] = {}
        for event in processing_event.events:
            new_events[event.originator_id] = new_events.get(event.originator_id, 0) + 1
        taken = []
        for aggregate_id, count in new_events.items():
            aggregate = processing_event.aggregates.get(aggregate_id)
            if not isinstance(aggregate, LedgerAggregate):
                continue
            # The application's setting, read at each save (eventsourcing's own place for it).
            interval = self.app.snapshotting_intervals.get(type(aggregate))
            if not interval:
                continue
            version = aggregate.version
            if version // interval > (version - count) // interval:
                taken.append(Snapshot.take(aggregate))
        if taken:
            snapshots.put(taken)

    # ---- bulk -------------------------------------------------------------------------------
    def on_sims(self, keys: list[str], decide: Callable[[Mapping[str, Sim]], Decision[R]]) -> R:
        """Run a bulk command's ``decide`` on the SIMs of ``keys`` and save what it changed,
        in one transaction.

        SIMs this ledger saved last are taken from its cache WITHOUT asking the store
        whether they are still the latest (a query per 1,000 SIMs): the store checks that
        itself, since each new event's (SIM, version) must be new. If another writer changed
        one meanwhile, the save fails whole (``IntegrityError``, nothing recorded) and
        :func:`command` runs the command again: the SIMs it took are out of the cache, so
        they are read from the store. A refusal writes no event that would catch a stale
        copy, so the SIMs ``decide`` refused are checked against the store before the save;
        if one changed, the command is decided again on SIMs read from the store.
        """
        sims, unchecked = self._sims_for(keys, trust_cache=True)
        decision = decide(sims)
        doubtful = [k for k in decision.refused if k in unchecked]
        if doubtful and not self.cache.still_latest(self.app, {k: sims[k] for k in doubtful}):
            log.info("bulk.cache_stale", refused=len(doubtful))
            sims, _ = self._sims_for(keys, trust_cache=False)
            decision = decide(sims)
        try:
            self.save_owned((*decision.others, *decision.changed))
        except IntegrityError:
            if not self.decides_late:
                raise
            # Another writer changed some of the SIMs: decide again under the store's
            # write lock, where it cannot collide (application/bulk_late.py).
            log.info("bulk.collided", sims=len(keys))
            sims, _ = self._sims_for(keys, trust_cache=False)
            late: BulkDecision[R] = BulkDecision(keys, sims, decide)
            try:
                self.record((), {}, owned=True, late=late)
            except DecideAgain:
                raise IntegrityError("the bulk command collided; decide it again") from None
            decision = late.decision
        self._give_back(sims, decision.changed)
        return decision.result
