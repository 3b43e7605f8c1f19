"""The Always On option of a SIM (R-AO1, R-AO2): set or cleared, one event on the SIM."""

from __future__ import annotations

from simledger.application.commands.base import Commands
from simledger.application.unit_of_work import command
from simledger.domain import values
from simledger.domain.sim_options import set_always_on


class AlwaysOnCommands(Commands):
    @command
    def set_always_on(self, iccid: object, on: bool) -> None:
        """R-AO1: set (``on``) or clear the SIM's Always On option, in any status; a SIM
        with it is not paused by the system when its package or pool runs out (R-AO2)."""
        flag = values.flag(on, "on")
        sim = self.uow.sim(iccid)
        set_always_on(sim, flag)
        self.uow.save(sim)
