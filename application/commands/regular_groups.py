"""Regular groups (R-SG5, R-RG1..3): create, rename, members in and out, delete.

Each command loads the group (and the SIMs it names, to check they exist and, for a
company's group, are that company's), lets the domain decide and saves the group alone:
membership is the group's, never the SIM's (domain/regular_group.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from uuid import UUID

from simledger.adapters.store.batch_load import load_many
from simledger.application.commands.base import Commands
from simledger.application.results import RegularGroupView
from simledger.application.unit_of_work import command
from simledger.domain import values
from simledger.domain.errors import InvalidInput, UnknownRegularGroup, UnknownSim
from simledger.domain.regular_group import RegularGroup
from simledger.domain.sim import Sim

MEMBERS_LIMIT = 10_000
"""SIMs one call adds or removes (as a bulk request, R-BK1)."""


def _keys(iccids: object) -> list[str]:
    """One ICCID or a list of them, normalised, once each."""
    listed = [iccids] if isinstance(iccids, str) else iccids
    return list(dict.fromkeys(values.iccids(listed, rule="R-RG2")))


class RegularGroupCommands(Commands):
    """The regular group commands, and the read of one group."""

    def _group(self, group_id: object) -> RegularGroup:
        key = values.uuid_text(group_id, UnknownRegularGroup)
        group = self.uow.get(key, RegularGroup)
        if group is None:
            raise UnknownRegularGroup(group_id)
        if group.deleted:
            raise UnknownRegularGroup(group_id, " (deleted)")
        return group

    def _members(self, group: RegularGroup, iccids: object) -> list[str]:
        """The ICCIDs, normalised, once each; every one a SIM (of the group's company)."""
        keys = _keys(iccids)
        if len(keys) > MEMBERS_LIMIT:
            raise InvalidInput(
                f"at most {MEMBERS_LIMIT} SIMs a call, not {len(keys)}", rule="R-RG2"
            )
        # Read, not taken from the ledger's SIM cache: the SIMs are not changed.
        sims = load_many(self.uow.app, keys)
        for key in keys:
            sim = sims.get(key)
            if not isinstance(sim, Sim):
                raise UnknownSim(key)
            group.check_company(key, sim.company)
        return keys

    @command
    def create_group(
        self, name: str, iccids: Iterable[object] = (), *, company: str | None = None
    ) -> UUID:
        """A new regular group named ``name`` (R-RG1), with ``iccids`` as its first members;
        ``company``: the group is that company's, and holds its SIMs only (R-RG2)."""
        name = values.text(name, "group name", rule="R-RG1")
        owner = values.optional_text(company, "company")
        group_id = uuid.uuid4()
        group = RegularGroup.create(str(group_id), name=name, company=owner)
        keys = self._members(group, iccids)
        if keys:
            group.add(keys)
        self.uow.save(group)
        return group_id

    @command
    def rename_group(self, group_id: UUID | str, name: str) -> None:
        """R-RG1: a regular group can be renamed at any time."""
        name = values.text(name, "group name", rule="R-RG1")
        group = self._group(group_id)
        group.rename(name)
        self.uow.save(group)

    @command
    def add_to_group(self, group_id: UUID | str, iccid: object) -> None:
        """R-RG2: the SIM (an ICCID, or a list of them) joins the group; each may be in
        other groups too. A SIM in it already is refused, and nothing is recorded."""
        group = self._group(group_id)
        keys = self._members(group, iccid)
        if not keys:
            raise InvalidInput("name at least one SIM to add", rule="R-RG2")
        group.add(keys)
        self.uow.save(group)

    @command
    def remove_from_group(self, group_id: UUID | str, iccid: object) -> None:
        """R-RG2: the SIM (an ICCID, or a list of them) leaves the group; a SIM not in it
        is refused."""
        group = self._group(group_id)
        keys = _keys(iccid)
        if not keys:
            raise InvalidInput("name at least one SIM to remove", rule="R-RG2")
        group.remove(keys)
        self.uow.save(group)

    @command
    def delete_group(self, group_id: UUID | str, *, move_to: UUID | str | None = None) -> None:
        """R-RG3: move every SIM to ``move_to`` (this group stays, empty), or remove them
        all and delete the group. SIMs are never deleted."""
        group = self._group(group_id)
        if move_to is not None:
            target = self._group(move_to)
            group.move_members_to(target)
            self.uow.save(group, target)
        else:
            group.delete()
            self.uow.save(group)

    def regular_group(self, group_id: UUID | str) -> RegularGroupView:
        """A regular group's state, deleted ones too (R-RG1)."""
        key = values.uuid_text(group_id, UnknownRegularGroup)
        group = self.uow.get(key, RegularGroup)
        if group is None:
            raise UnknownRegularGroup(group_id)
        return RegularGroupView(
            group_id=UUID(group.id),
            name=group.name,
            company=group.company,
            members=list(group.members),
            deleted=group.deleted,
            version=group.version,
        )
