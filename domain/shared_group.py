"""Shared groups (R-SG1..4): one package, one pool, drawn by every member.

The group holds the pool itself (a :class:`~simledger.domain.pool.Pool` that never renews):
members never get individual copies (R-SG1). While the pool is not depleted the group is
locked (R-SG3).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import NotAMember, SharedGroupLocked, UnknownGroup
from simledger.domain.pool import Pool


class SharedGroup(LedgerAggregate, Pool):
    class Event(DomainEvent):
        pass

    class Created(CreatedEvent, Event):
        name: str
        members: list[str]
        package_id: str
        package_name: str
        data_mb: Decimal
        validity_days: int
        expires_at: datetime
        notify_users: bool

        def apply(self, group: SharedGroup) -> None:
            group.name = self.name
            group.members = list(self.members)
            group.package_id = self.package_id
            group.package_name = self.package_name
            group.data_mb = self.data_mb
            group.data_left_mb = self.data_mb
            group.expires_at = self.expires_at
            group.notify_users = self.notify_users

    class MemberAdded(Event):
        iccid: str

        def apply(self, group: SharedGroup) -> None:
            group.members.append(self.iccid)

    class MemberRemoved(Event):
        iccid: str

        def apply(self, group: SharedGroup) -> None:
            group.members.remove(self.iccid)

    class MembersMovedOut(Event):
        """R-SG4: every member moved to another group; this group stays, empty."""

        to_group_id: str
        iccids: list[str]

        def apply(self, group: SharedGroup) -> None:
            group.members = []

    class MembersMovedIn(Event):
        from_group_id: str
        iccids: list[str]

        def apply(self, group: SharedGroup) -> None:
            group.members.extend(self.iccids)

    class Deleted(Event):
        """R-SG4: every member removed and the group deleted; the SIMs stay."""

        iccids: list[str]

        def apply(self, group: SharedGroup) -> None:
            group.members = []
            group.deleted = True

    class UsageDrawn(Event):
        iccid: str
        mb: Decimal
        at: datetime

        def apply(self, group: SharedGroup) -> None:
            group.data_left_mb -= self.mb

    class Depleted(Event):
        cause: str  # "data" or "expired"

        def apply(self, group: SharedGroup) -> None:
            group.depleted = True
            group.depleted_cause = self.cause

    def __init__(self) -> None:
        self.name: str = ""
        self.members: list[str] = []
        self.package_id: str = ""
        self.package_name: str = ""
        self.data_mb: Decimal = Decimal(0)
        self.data_left_mb: Decimal = Decimal(0)
        self.expires_at: datetime | None = None
        self.notify_users: bool = False
        self.depleted: bool = False
        self.depleted_cause: str | None = None
        self.deleted: bool = False

    @classmethod
    def create(
        cls,
        group_id: str,
        *,
        name: str,
        members: list[str],
        package_id: str,
        package_name: str,
        data_mb: Decimal,
        validity_days: int,
        now: datetime,
        notify_users: bool,
    ) -> SharedGroup:
        return cls.start(
            cls.Created,
            id=group_id,
            name=name,
            members=members,
            package_id=package_id,
            package_name=package_name,
            data_mb=data_mb,
            validity_days=validity_days,
            expires_at=now + timedelta(days=validity_days),
            notify_users=notify_users,
        )

    @property
    def locked(self) -> bool:
        """R-SG3: no change to a group until its package is depleted."""
        return not self.depleted and not self.deleted

    def _check_open(self, what: str) -> None:
        if self.deleted:
            raise UnknownGroup(self.id, " (deleted)")
        if self.locked:
            raise SharedGroupLocked(
                f"shared group {self.id} ({self.name}) cannot {what} until its package is "
                "depleted; delete it and create a new one instead"
            )

    def check_can_add(self) -> None:
        self._check_open("take new members")

    def add_member(self, iccid: str) -> None:
        self.check_can_add()
        self.trigger_event(self.MemberAdded, iccid=iccid)

    def remove_member(self, iccid: str) -> None:
        self._check_open("lose members")
        if iccid not in self.members:
            raise NotAMember(f"SIM {iccid} is not a member of shared group {self.id}")
        self.trigger_event(self.MemberRemoved, iccid=iccid)

    def move_members_to(self, target: SharedGroup) -> list[str]:
        """R-SG4 with a target: the members move; this group stays, empty. Returns them."""
        if self.deleted:
            raise UnknownGroup(self.id, " (deleted)")
        target.check_can_add()
        moved = list(self.members)
        self.trigger_event(self.MembersMovedOut, to_group_id=target.id, iccids=moved)
        target.trigger_event(target.MembersMovedIn, from_group_id=self.id, iccids=moved)
        return moved

    def delete(self) -> list[str]:
        """R-SG4 without a target: every member removed, the group deleted. Returns them."""
        if self.deleted:
            raise UnknownGroup(self.id, " (deleted)")
        removed = list(self.members)
        self.trigger_event(self.Deleted, iccids=removed)
        return removed

    def draw(self, iccid: str, mb: Decimal, at: datetime) -> bool:
        """Draw the pool for a member (never below zero); True when this depleted it."""
        if iccid not in self.members:
            raise NotAMember(f"SIM {iccid} does not draw shared group {self.id}")
        return super().draw(iccid, mb, at)

    def expire(self, now: datetime) -> bool:
        """Deplete the pool when its validity has ended by ``now`` (a deleted group's is
        left as it is); True when depleted."""
        return not self.deleted and super().expire(now)
