"""The shared groups view (R-SG1..4): size, package, pool left and the lock of each group.

The pool's value lives here only: the SIM list reads a member's data left from its
group's row (projections/sim_list.py), so a draw writes one row, not one per member.
"""

from __future__ import annotations

from simledger.domain.shared_group import SharedGroup
from simledger.projections.batch_state import BatchFold, Handler
from simledger.projections.rows import ZERO, GroupRow


def _touch(fold: BatchFold, event: SharedGroup.Event) -> GroupRow | None:
    row = fold.group(event.originator_id)
    if row is None:  # pragma: no cover - every group starts with Created
        return None
    row.version = event.originator_version
    fold.dirty_groups.add(row.group_id)
    return row


def created(fold: BatchFold, event: SharedGroup.Created) -> None:
    fold.add_group(
        GroupRow(
            group_id=event.originator_id,
            name=event.name,
            package_id=event.package_id,
            package_name=event.package_name,
            data_mb=event.data_mb,
            data_left_mb=event.data_mb,
            expires_at=event.expires_at,
            member_count=len(event.members),
            version=event.originator_version,
        )
    )


def touched(fold: BatchFold, event: SharedGroup.Event) -> None:
    _touch(fold, event)


def member_added(fold: BatchFold, event: SharedGroup.MemberAdded) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.member_count += 1


def member_removed(fold: BatchFold, event: SharedGroup.MemberRemoved) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.member_count -= 1


def members_moved_out(fold: BatchFold, event: SharedGroup.MembersMovedOut) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.member_count = 0


def members_moved_in(fold: BatchFold, event: SharedGroup.MembersMovedIn) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.member_count += len(event.iccids)


def deleted(fold: BatchFold, event: SharedGroup.Deleted) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.member_count = 0
        row.deleted = True


def usage_drawn(fold: BatchFold, event: SharedGroup.UsageDrawn) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.data_left_mb -= event.mb


def depleted(fold: BatchFold, event: SharedGroup.Depleted) -> None:
    """A depleted pool has nothing left for anyone (as ``shared_group()`` shows it), and no
    pool comes back from depletion: the group and every member show 0 from now on."""
    row = _touch(fold, event)
    if row is not None:
        row.depleted = True
        row.data_left_mb = ZERO


HANDLERS: dict[type, Handler] = {
    SharedGroup.Event: touched,
    SharedGroup.Created: created,
    SharedGroup.MemberAdded: member_added,
    SharedGroup.MemberRemoved: member_removed,
    SharedGroup.MembersMovedOut: members_moved_out,
    SharedGroup.MembersMovedIn: members_moved_in,
    SharedGroup.Deleted: deleted,
    SharedGroup.UsageDrawn: usage_drawn,
    SharedGroup.Depleted: depleted,
}
