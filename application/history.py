"""A SIM's state now, its audit trail across aggregates, and its state as of a past moment
(R-ES3); a shared group's state. Read from the aggregates, not the views."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, project_aggregate

from simledger.adapters.store.fast_replay import fast_project
from simledger.application.results import HistoryEntry, SharedGroupView, SimView
from simledger.application.unit_of_work import UnitOfWork
from simledger.domain import values
from simledger.domain.actor import ACTOR_FIELD, Actor
from simledger.domain.base import DomainEvent, aggregate_name
from simledger.domain.errors import InvalidInput, SimNotYetReceived, UnknownGroup, UnknownSim
from simledger.domain.iccid import normalise_iccid
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

_ENVELOPE = (
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
    "chain",
    ACTOR_FIELD,
)


def event_data(event: DomainEvent) -> dict[str, Any]:
    """An event's own fields, without the envelope every event has."""
    return {k: v for k, v in vars(event).items() if k not in _ENVELOPE}


def _aggregate_name(event: DomainEvent) -> str:
    return aggregate_name(type(event))


def _entry(event: DomainEvent) -> HistoryEntry:
    return HistoryEntry(
        event=type(event).__name__,
        at=event.timestamp,
        aggregate=_aggregate_name(event),
        aggregate_id=event.originator_id,
        version=event.originator_version,
        data=event_data(event),
        actor=actor_of(event),
    )


def actor_of(event: DomainEvent) -> Actor | None:
    """Who caused ``event`` (R-KY3): None when nobody was named (or before actors existed)."""
    return Actor.from_stored(vars(event).get(ACTOR_FIELD))


def _related_ids(sim_events: Iterable[DomainEvent]) -> tuple[list[str], list[str]]:
    copies: dict[str, None] = {}
    groups: dict[str, None] = {}
    for event in sim_events:
        if isinstance(event, Sim.PackageAssigned):
            copies[event.copy_id] = None
        elif isinstance(event, (Sim.PackageShared, Sim.LeftSharedGroup)):
            groups[event.group_id] = None
    return list(copies), list(groups)


def _group_events_for(iccid: str, events: Iterable[DomainEvent]) -> list[DomainEvent]:
    """The group's events that named the SIM, or hit the pool while it was a member."""
    touching: list[DomainEvent] = []
    member = False
    for event in events:
        named = False
        if isinstance(event, SharedGroup.Created):
            member = named = iccid in event.members
        elif isinstance(event, (SharedGroup.MemberAdded, SharedGroup.MemberRemoved)):
            named = event.iccid == iccid
            if named:
                member = isinstance(event, SharedGroup.MemberAdded)
        elif isinstance(event, SharedGroup.MembersMovedIn):
            named = iccid in event.iccids
            member = member or named
        elif isinstance(event, (SharedGroup.MembersMovedOut, SharedGroup.Deleted)):
            named = iccid in event.iccids
            if named:
                member = False
        elif isinstance(event, SharedGroup.UsageDrawn):
            named = event.iccid == iccid
        elif isinstance(event, SharedGroup.Depleted):
            named = member
        if named:
            touching.append(event)
    return touching


def sim_history(app: Application[str], sim: Sim) -> list[HistoryEntry]:
    sim_events: list[DomainEvent] = list(app.events.get(sim.id))  # type: ignore[arg-type]
    copies, groups = _related_ids(sim_events)
    events = list(sim_events)
    for copy_id in copies:
        events.extend(app.events.get(copy_id))  # type: ignore[arg-type]
    for group_id in groups:
        group_events: list[DomainEvent] = list(app.events.get(group_id))  # type: ignore[arg-type]
        events.extend(_group_events_for(sim.id, group_events))
    events.sort(key=lambda e: e.timestamp)  # stable: within one aggregate, version order
    return [_entry(e) for e in events]


def _project_until(app: Application[str], aggregate_id: str, when: datetime) -> Any:
    events = [e for e in app.events.get(aggregate_id) if e.timestamp <= when]  # type: ignore[attr-defined]
    return project_aggregate(None, events) if events else None


def _last_version(app: Application[str], iccid: str) -> int:
    """The SIM's latest version (one event read), or ``UnknownSim``."""
    last = list(app.events.get(iccid, desc=True, limit=1))
    if not last:
        raise UnknownSim(iccid)
    return int(last[0].originator_version)


def _out_of_range(iccid: str, version: object, last: int) -> InvalidInput:
    return InvalidInput(f"SIM {iccid} has versions 1 to {last}, not {version!r}", rule="R-ES3")


def _sim_at_version(
    app: Application[str], iccid: str, version: int, events: list[DomainEvent] | None = None
) -> Sim | None:
    """The SIM at ``version``: its nearest snapshot at or below it and the events after it
    (a snapshot is a cache: the fold gives what replaying from the first event gives).
    ``events``, when the caller already read them all (version order), are not read again."""
    start: list[Any] = []
    if app.snapshots is not None:
        start = list(app.snapshots.get(iccid, lte=version, desc=True, limit=1))
    after = start[0].originator_version if start else 0
    rest: Iterable[Any]
    if events is None:
        rest = app.events.get(iccid, gt=after or None, lte=version)
    else:
        rest = events[after:version]
    sim: Sim | None = fast_project(None, [*start, *rest])
    return sim


def _version_at(sim_events: list[DomainEvent], iccid: str, at: datetime) -> int:
    """The SIM's last version recorded at or before ``at``."""
    earlier = [e.originator_version for e in sim_events if e.timestamp <= at]
    if not earlier:
        raise SimNotYetReceived(iccid, at, sim_events[0].timestamp)
    return earlier[-1]


READ_ALL_UP_TO = 64
"""A SIM with at most this many events has all of them read to find the version at a
time; a longer one is searched by halves, one event read per step."""


def _timestamp(app: Application[str], iccid: str, version: int) -> datetime:
    (event,) = app.events.get(iccid, gt=version - 1, lte=version)
    when: datetime = event.timestamp  # type: ignore[attr-defined]
    return when


def _version_at_by_halves(app: Application[str], iccid: str, at: datetime, last: int) -> int:
    """:func:`_version_at` for a SIM of ``last`` events, reading about log2(last) of them:
    a SIM's events are recorded one after the other, so their times rise with the
    version."""
    first = _timestamp(app, iccid, 1)
    if first > at:
        raise SimNotYetReceived(iccid, at, first)
    low, high = 1, last  # the time of ``low`` is at or before ``at``
    while low < high:
        middle = (low + high + 1) // 2
        if _timestamp(app, iccid, middle) <= at:
            low = middle
        else:
            high = middle - 1
    return low


def sim_state_as_of(
    app: Application[str], iccid: str, *, at: datetime | None, version: int | None
) -> tuple[Sim, Package | None, SharedGroup | None, datetime]:
    """The SIM, its copy and its group as they were at ``at`` or at the SIM's ``version``.

    By version, only the SIM's nearest snapshot and the events after it up to ``version``
    are read; the SIM's latest version is read only to refuse a version out of range."""
    if (at is None) == (version is None):
        raise InvalidInput("give exactly one of at= or version=", rule="R-ES3")
    sim: Sim | None
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _out_of_range(iccid, version, _last_version(app, iccid))
        sim = _sim_at_version(app, iccid, version)
        if sim is None:
            raise UnknownSim(iccid)
        if sim.version != version:
            raise _out_of_range(iccid, version, _last_version(app, iccid))
    else:
        assert at is not None
        last = _last_version(app, iccid)
        if last <= READ_ALL_UP_TO:
            # the events' timestamps are in their stored state only: read them all
            sim_events: list[DomainEvent] = list(app.events.get(iccid))  # type: ignore[arg-type]
            found = _version_at(sim_events, iccid, at)
            sim = _sim_at_version(app, iccid, found, sim_events)
        else:
            sim = _sim_at_version(app, iccid, _version_at_by_halves(app, iccid, at, last))
        assert sim is not None
    when = at if at is not None else sim.modified_on
    copy = _project_until(app, sim.copy_id, when) if sim.copy_id else None
    group = _project_until(app, sim.group_id, when) if sim.group_id else None
    return sim, copy, group, when


class SimReads:
    """The queries of one ledger answered from its aggregates (``uow`` loads them)."""

    def __init__(self, uow: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def sim(self, iccid: object) -> SimView:
        sim = self.uow.sim(iccid)
        copy = self.uow.copy(sim)
        group = self.uow.get(sim.group_id, SharedGroup) if sim.group_id else None
        return SimView.of(sim, copy, group, self.clock())

    def sim_as_of(
        self, iccid: object, *, at: datetime | None = None, version: values.Number | None = None
    ) -> SimView:
        """The SIM as it was at time ``at`` or at its own ``version`` (R-ES3)."""
        key = normalise_iccid(iccid)
        asked = None if at is None else values.moment(at)
        number = values.version(version)
        sim, copy, group, when = sim_state_as_of(self.uow.app, key, at=asked, version=number)
        return SimView.of(sim, copy, group, when)

    def history(self, iccid: object) -> list[HistoryEntry]:
        """Every event that touched the SIM, from any aggregate, oldest first."""
        return sim_history(self.uow.app, self.uow.sim(iccid))

    def shared_group(self, group_id: UUID | str) -> SharedGroupView:
        key = values.uuid_text(group_id, UnknownGroup)
        group = self.uow.get(key, SharedGroup)
        if group is None:
            raise UnknownGroup(group_id)
        return SharedGroupView.of(group)
