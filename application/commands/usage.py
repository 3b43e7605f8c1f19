"""Usage: a SIM's data drawn from its copy or its group's pool (R-PK2, R-SG1, R-SIM7)."""

from __future__ import annotations

from datetime import datetime

from simledger.adapters.store.in_transaction import DecideAgain
from simledger.application.commands.base import Commands
from simledger.application.commands.pool_draw import PoolDraw
from simledger.application.unit_of_work import USAGE_ATTEMPTS, retried
from simledger.domain import policies, values
from simledger.domain.base import LedgerAggregate
from simledger.domain.sim import Sim


class UsageCommands(Commands):
    """The usage command."""

    @retried(USAGE_ATTEMPTS)
    def record_usage(
        self,
        iccid: object,
        mb: values.Number,
        *,
        at: datetime | None = None,
        country: str | None = None,
    ) -> None:
        amount = values.mb(mb, rule="R-PK2")
        when = values.event_time(at, self.clock())
        country = values.optional_text(country, "a country")
        sim = self.uow.sim(iccid)
        sim.check_usage()
        if sim.group_id is not None and self.uow.decides_late:
            group = self.uow.groups.known(sim.group_id) or self.uow.group(sim.group_id)
            try:
                # The pool's draw is decided in the save, on its latest state (pool_draw.py).
                self.uow.save(late=PoolDraw(sim, group, amount, when, country))
                return
            except DecideAgain:
                pass  # nothing was recorded: decide it all below
        to_save: list[LedgerAggregate] = [sim]
        to_suspend: list[Sim] = []
        if sim.group_id is not None:
            group = self.uow.group(sim.group_id)
            to_save.append(group)
            if not group.depleted and group.draw(sim.id, amount, when):
                others = self.uow.sims([m for m in group.members if m != sim.id])
                to_suspend = [sim, *others.values()]
                to_save.extend(others.values())
        else:
            copy = self.uow.copy(sim)
            if copy is not None and not copy.depleted:
                to_save.append(copy)
                if copy.draw(sim.id, amount, when):
                    to_suspend = [sim]
        # The SIM's event comes after the draw it caused, so the SIM's version at that
        # moment covers the draw (sim_as_of, R-ES3).
        sim.record_usage(amount, when, country)
        policies.suspend_for_package(to_suspend, "depleted")
        self.uow.save(*to_save)
