"""Packages: the catalogue, a SIM's own copy, top-ups and the end of validity (R-PK1..3,
R-SIM7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.utils import get_topic

from simledger.adapters.logs import get_logger
from simledger.application.commands.base import Commands
from simledger.application.results import ExpiryResult
from simledger.application.unit_of_work import command
from simledger.domain import policies, values
from simledger.domain.base import LedgerAggregate
from simledger.domain.lifecycle import Cmd
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

log = get_logger("simledger")

_VALIDITY_EVENTS = {
    Package.Assigned: "start",
    Package.Renewed: "start",
    Package.ToppedUp: "topup",
    Package.Depleted: "end",
    SharedGroup.Created: "start",
    SharedGroup.Depleted: "end",
    SharedGroup.Deleted: "end",
}
"""The events that start, extend or end the validity of a copy or a pool."""


class PackageCommands(Commands):
    """The package commands."""

    @command
    def create_package(
        self,
        name: str,
        *,
        data_mb: values.Number,
        validity_days: values.Number,
        auto_renew: bool = False,
        price: values.Number | None = None,
    ) -> UUID:
        name = values.text(name, "package name", rule="R-PK1")
        allowance = values.mb(data_mb, rule="R-PK1")
        days = values.validity_days(validity_days)
        renews = values.flag(auto_renew, "auto_renew")
        cost = values.price(price)
        package_id = uuid.uuid4()
        package = Package.create(
            str(package_id),
            name=name,
            data_mb=allowance,
            validity_days=days,
            auto_renew=renews,
            price=cost,
        )
        self.uow.save(package)
        return package_id

    @command
    def assign_package(
        self, iccid: object, package_id: UUID | str, *, at: datetime | None = None
    ) -> None:
        """The SIM's own copy (R-PK2, R-PK3)."""
        now = self.clock()
        starts = values.event_time(at, now)
        sim = self.uow.sim(iccid)
        package = self.uow.catalogue_package(package_id)
        policies.check_no_active_package(sim, self.uow.copy(sim), now, rule="R-PK3")
        sim.check_can_take_package(Cmd.ASSIGN_PACKAGE)
        if sim.paused_by_system_for_package:
            sim.clear_system_pause(by="new package")
        copy = package.copy_for(str(uuid.uuid4()), sim.id, starts_at=starts)
        sim.assign_package(package.id, copy.id, package.name)
        self.uow.save(sim, copy)

    @command
    def top_up(self, iccid: object, amount: values.Number) -> None:
        """Refill a prepaid SIM (R-SIM7): its copy gets the MB, and a SIM the system paused
        for an empty package works again."""
        mb = values.mb(amount, rule="R-SIM7")
        sim = self.uow.sim(iccid)
        copy = self.uow.copy(sim)
        if copy is not None:
            copy.top_up(mb)  # before the SIM's event, as in record_usage (sim_as_of)
        sim.top_up(mb)
        to_save: list[LedgerAggregate] = [sim]
        if copy is not None:
            to_save.append(copy)
            policies.resume_after_top_up(sim, copy, self.clock())
        self.uow.save(*to_save)

    def expire_packages(self, now: datetime | None = None) -> ExpiryResult:
        """Deplete every copy and pool whose validity has ended by ``now`` (auto-renew copies
        start a new period instead); SIMs then active are paused by the system."""
        when = values.event_time(now, self.clock())
        depleted: list[str] = []
        renewed: list[str] = []
        candidates = self._expiry_candidates(when)
        for n, aggregate_id in enumerate(candidates, 1):
            outcome = self.expire_one(aggregate_id, when)
            if outcome == "depleted":
                depleted.append(aggregate_id)
            elif outcome == "renewed":
                renewed.append(aggregate_id)
            if n % 1000 == 0:
                log.info("expiry.progress", done=n, total=len(candidates))
        log.info("expiry.done", depleted=len(depleted), renewed=len(renewed))
        return ExpiryResult(depleted=depleted, renewed=renewed)

    def _expiry_candidates(self, now: datetime) -> list[str]:
        """Copies and pools whose recorded validity ends by ``now`` and are not depleted."""
        app = self.uow.app
        by_topic = {get_topic(cls): role for cls, role in _VALIDITY_EVENTS.items()}
        expires: dict[str, datetime] = {}
        live: dict[str, bool] = {}
        start = 1
        while True:
            batch = app.recorder.select_notifications(
                start=start, limit=1000, topics=list(by_topic)
            )
            if not batch:
                break
            for note in batch:
                role = by_topic[note.topic]
                key = str(note.originator_id)
                if role == "start":
                    expires[key] = cast(Any, app.mapper.to_domain_event(note)).expires_at
                live[key] = role != "end"
            start = batch[-1].id + 1
        # expire_one re-checks each candidate on fresh state; this only narrows the search.
        return [k for k, at in expires.items() if live.get(k) and at <= now]

    @command
    def expire_one(self, aggregate_id: str, now: datetime) -> str:
        """Expire one copy or pool if its validity ended: depleted, renewed or unchanged."""
        aggregate = self.uow.get(aggregate_id, LedgerAggregate)
        if isinstance(aggregate, Package):
            version = aggregate.version
            if aggregate.expire(now):
                sim = self.uow.get(aggregate.iccid or "", Sim)
                to_save: list[LedgerAggregate] = [aggregate]
                if sim is not None and sim.copy_id == aggregate.id:
                    policies.suspend_for_package([sim], "expired")
                    to_save.append(sim)
                self.uow.save(*to_save)
                return "depleted"
            if aggregate.version != version:
                self.uow.save(aggregate)
                return "renewed"
        elif isinstance(aggregate, SharedGroup) and aggregate.expire(now):
            members = self.uow.sims(aggregate.members)
            policies.suspend_for_package(members.values(), "expired")
            self.uow.save(aggregate, *members.values())
            return "depleted"
        return "unchanged"
