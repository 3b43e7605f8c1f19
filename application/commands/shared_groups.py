"""Shared groups: SIMs drawing on one pool (R-SG1..4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from uuid import UUID

from simledger.adapters.logs import get_logger
from simledger.application.commands.base import Commands
from simledger.application.unit_of_work import command
from simledger.domain import policies, values
from simledger.domain.errors import AutoRenewNotAllowed, InvalidInput, UnknownSim
from simledger.domain.shared_group import SharedGroup

log = get_logger("simledger")


class SharedGroupCommands(Commands):
    """The shared group commands."""

    @command
    def create_shared_group(
        self,
        name: str,
        iccids: Iterable[object],
        package_id: UUID | str,
        *,
        notify_users: bool = False,
    ) -> UUID:
        name = values.text(name, "group name", rule="R-SG2")
        notify = values.flag(notify_users, "notify_users")
        keys = list(dict.fromkeys(values.iccids(iccids)))
        if not keys:
            raise InvalidInput("a shared group needs at least one SIM", rule="R-SG2")
        package = self.uow.catalogue_package(package_id)
        if package.auto_renew:
            raise AutoRenewNotAllowed(
                f"package {package.name} ({package.id}) renews automatically; a shared group "
                "needs a package without auto-renew"
            )
        now = self.clock()
        sims = self.uow.sims(keys)
        for key in keys:
            if key not in sims:
                raise UnknownSim(key)
            policies.check_joinable(sims[key], self.uow.copy(sims[key]), now)
        group_id = uuid.uuid4()
        group = SharedGroup.create(
            str(group_id),
            name=name,
            members=keys,
            package_id=package.id,
            package_name=package.name,
            data_mb=package.data_mb,
            validity_days=package.validity_days,
            now=now,
            notify_users=notify,
        )
        for key in keys:
            policies.join(sims[key], group)
        self.uow.save(group, *sims.values())
        log.info("shared_group.created", group_id=str(group_id), members=len(keys))
        return group_id

    @command
    def add_to_shared_group(self, group_id: UUID | str, iccid: object) -> None:
        group = self.uow.group(group_id)
        group.check_can_add()
        sim = self.uow.sim(iccid)
        policies.check_joinable(sim, self.uow.copy(sim), self.clock())
        group.add_member(sim.id)
        policies.join(sim, group)
        self.uow.save(group, sim)

    @command
    def remove_from_shared_group(self, group_id: UUID | str, iccid: object) -> None:
        group = self.uow.group(group_id)
        sim = self.uow.sim(iccid)
        group.remove_member(sim.id)
        sim.leave_shared_group(group.id)
        self.uow.save(group, sim)

    @command
    def delete_shared_group(
        self, group_id: UUID | str, *, move_to: UUID | str | None = None
    ) -> None:
        """R-SG4: move every SIM to ``move_to`` (the group stays, empty), or remove them all
        and delete the group. SIMs are never deleted."""
        group = self.uow.group(group_id)
        if move_to is not None:
            target = self.uow.group(move_to)
            if target.id == group.id:
                raise InvalidInput("cannot move a group's SIMs into the same group", rule="R-SG4")
            moved = group.move_members_to(target)
            sims = self.uow.sims(moved)
            for sim in sims.values():
                policies.join_moved(sim, target)
            self.uow.save(group, target, *sims.values())
        else:
            removed = group.delete()
            sims = self.uow.sims(removed)
            for sim in sims.values():
                sim.leave_shared_group(group.id)
            self.uow.save(group, *sims.values())
