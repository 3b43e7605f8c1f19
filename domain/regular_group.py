"""Regular groups (R-SG5, R-RG1..3): named sets of SIMs that organise them.

Unlike a shared group (R-SG1..4) a regular group holds no package and no pool and has no
lock: it can be renamed and its members changed at any time, and a SIM may be in any number
of regular groups (and in one shared group besides). The membership lives here only, not
on the SIM: the group's events name the ICCIDs they add or remove, and the SIM list folds
them into each SIM's ``regular_groups`` column (projections/sim_list_more.py). Deleting a
group never deletes a SIM (R-RG3).
"""

from __future__ import annotations

from collections.abc import Sequence

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import InvalidInput, RegularGroupMembership, UnknownRegularGroup


class RegularGroup(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Created(CreatedEvent, Event):
        name: str
        company: str | None

        def apply(self, group: RegularGroup) -> None:
            group.name = self.name
            group.company = self.company

    class Renamed(Event):
        name: str

        def apply(self, group: RegularGroup) -> None:
            group.name = self.name

    class MembersChanged(Event):
        """Base of the events that change the members: each names the ICCIDs it moves."""

        iccids: list[str]

    class MembersAdded(MembersChanged):
        def apply(self, group: RegularGroup) -> None:
            group.members.extend(self.iccids)

    class MembersRemoved(MembersChanged):
        def apply(self, group: RegularGroup) -> None:
            gone = set(self.iccids)
            group.members = [m for m in group.members if m not in gone]

    class MembersMovedOut(MembersChanged):
        """R-RG3: every member moved to another group; this group stays, empty."""

        to_group_id: str

        def apply(self, group: RegularGroup) -> None:
            group.members = []

    class MembersMovedIn(MembersChanged):
        """The members moved in from ``from_group_id`` (those not members already)."""

        from_group_id: str

        def apply(self, group: RegularGroup) -> None:
            group.members.extend(self.iccids)

    class Deleted(MembersChanged):
        """R-RG3: every member removed and the group deleted; the SIMs stay."""

        def apply(self, group: RegularGroup) -> None:
            group.members = []
            group.deleted = True

    def __init__(self) -> None:
        self.name: str = ""
        self.company: str | None = None
        self.members: list[str] = []
        self.deleted: bool = False

    @classmethod
    def create(cls, group_id: str, *, name: str, company: str | None) -> RegularGroup:
        return cls.start(cls.Created, id=group_id, name=name, company=company)

    def _check_open(self) -> None:
        if self.deleted:
            raise UnknownRegularGroup(self.id, " (deleted)")

    def rename(self, name: str) -> None:
        self._check_open()
        if name == self.name:
            raise InvalidInput(f"regular group {self.id} is named {name!r} already", rule="R-RG1")
        self.trigger_event(self.Renamed, name=name)

    def check_company(self, iccid: str, company: str | None) -> None:
        """R-RG2: a company's group holds that company's SIMs only."""
        if self.company is not None and company != self.company:
            raise RegularGroupMembership(
                f"SIM {iccid} is not a SIM of company {self.company!r}, whose group "
                f"{self.id} this is"
            )

    def add(self, iccids: Sequence[str]) -> None:
        self._check_open()
        present = set(self.members)
        already = [i for i in iccids if i in present]
        if already:
            raise RegularGroupMembership(
                f"already in regular group {self.id}: {', '.join(already[:10])}"
            )
        self.trigger_event(self.MembersAdded, iccids=list(iccids))

    def remove(self, iccids: Sequence[str]) -> None:
        self._check_open()
        present = set(self.members)
        missing = [i for i in iccids if i not in present]
        if missing:
            raise RegularGroupMembership(
                f"not in regular group {self.id}: {', '.join(missing[:10])}"
            )
        self.trigger_event(self.MembersRemoved, iccids=list(iccids))

    def move_members_to(self, target: RegularGroup) -> list[str]:
        """R-RG3 with a target: the members move; this group stays, empty. Returns the
        ICCIDs the target gained (a SIM in both groups already is in the target once)."""
        self._check_open()
        target._check_open()
        if target.id == self.id:
            raise InvalidInput("cannot move a group's SIMs into the same group", rule="R-RG3")
        if target.company is not None and target.company != self.company:
            raise RegularGroupMembership(
                f"regular group {target.id} is company {target.company!r}'s; the SIMs of "
                f"group {self.id} cannot move into it"
            )
        moved = list(self.members)
        present = set(target.members)
        gained = [i for i in moved if i not in present]
        self.trigger_event(self.MembersMovedOut, to_group_id=target.id, iccids=moved)
        target.trigger_event(target.MembersMovedIn, from_group_id=self.id, iccids=gained)
        return gained

    def delete(self) -> list[str]:
        """R-RG3 without a target: every member removed, the group deleted. Returns them."""
        self._check_open()
        removed = list(self.members)
        self.trigger_event(self.Deleted, iccids=removed)
        return removed
