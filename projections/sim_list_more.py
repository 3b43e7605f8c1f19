"""The SIM list's columns from events outside domain/sim.py: regular groups (R-RG2), the
in-session state (R-SS2) and Always On (R-AO1).

A regular group's events name the ICCIDs they add or remove; each named SIM's row gains or
loses the group's id in ``regular_groups``. They are not the SIM's events, so they leave the
row's ``version`` (the SIM's) as it is. A part of a partitioned fold (a parallel rebuild, a
ranged verify) sees every group event and changes only the rows it holds.
"""

from __future__ import annotations

from typing import Any

from simledger.domain.regular_group import RegularGroup
from simledger.domain.session import SessionEnded, SessionReported, SessionStarted
from simledger.domain.sim_options import AlwaysOnSet
from simledger.projections.batch_state import BatchFold, Handler
from simledger.projections.rows import SimRow


def _row(fold: BatchFold, iccid: str) -> SimRow | None:
    row = fold.sim(iccid)
    if row is not None:
        fold.dirty_sims.add(iccid)
    return row


def _sim_event(fold: BatchFold, event: Any) -> SimRow | None:
    """As sim_list's touch: a SIM event moves the row's version."""
    row = _row(fold, event.originator_id)
    if row is not None:
        row.version = event.originator_version
        row.updated_at = event.timestamp
    return row


def session_reported(fold: BatchFold, event: SessionReported) -> None:
    row = _sim_event(fold, event)
    if row is not None and event.current:
        row.in_session = "yes" if isinstance(event, SessionStarted) else "no"


def always_on_set(fold: BatchFold, event: AlwaysOnSet) -> None:
    row = _sim_event(fold, event)
    if row is not None:
        row.always_on = event.on


def _join(fold: BatchFold, group_id: str, iccids: list[str]) -> None:
    for iccid in iccids:
        row = _row(fold, iccid)
        if row is not None and group_id not in row.regular_groups:
            row.regular_groups = [*row.regular_groups, group_id]


def _leave(fold: BatchFold, group_id: str, iccids: list[str]) -> None:
    for iccid in iccids:
        row = _row(fold, iccid)
        if row is not None and group_id in row.regular_groups:
            row.regular_groups = [g for g in row.regular_groups if g != group_id]


def members_joined(
    fold: BatchFold, event: RegularGroup.MembersAdded | RegularGroup.MembersMovedIn
) -> None:
    _join(fold, event.originator_id, event.iccids)


def members_left(fold: BatchFold, event: RegularGroup.MembersChanged) -> None:
    _leave(fold, event.originator_id, event.iccids)


HANDLERS: dict[type, Handler] = {
    SessionReported: session_reported,
    SessionStarted: session_reported,
    SessionEnded: session_reported,
    AlwaysOnSet: always_on_set,
    RegularGroup.MembersAdded: members_joined,
    RegularGroup.MembersMovedIn: members_joined,
    RegularGroup.MembersRemoved: members_left,
    RegularGroup.MembersMovedOut: members_left,
    RegularGroup.Deleted: members_left,
}
