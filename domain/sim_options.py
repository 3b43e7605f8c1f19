"""The Always On option of a SIM (R-AO1, R-AO2), kept apart from domain/sim.py.

Always On keeps a SIM's data working when it has no usable package: the system does not
pause it when its package copy or its shared pool runs out (R-SIM6's pause for a depleted
or expired package, ``policies.suspend_for_package``); its usage past the package is still
recorded on the SIM (this month's MB) and draws nothing. A SIM with the option may join a
shared group (R-SG2): the option is not a package.
"""

from __future__ import annotations

from simledger.domain.errors import InvalidInput
from simledger.domain.lifecycle import Cmd, next_status
from simledger.domain.sim import Sim


class AlwaysOnSet(Sim.Event):
    """The option set (``on``) or cleared."""

    on: bool

    def apply(self, sim: Sim) -> None:
        sim.always_on = self.on


def set_always_on(sim: Sim, on: bool) -> None:
    """R-AO1: set or clear the option, in any status (a descriptive setting, R-SIM4's
    ``set_details`` row); setting it as it is already is refused, recording nothing."""
    next_status(sim.id, sim.status, Cmd.SET_DETAILS)
    if sim.always_on == on:
        state = "on" if on else "off"
        raise InvalidInput(f"SIM {sim.id} has Always On {state} already", rule="R-AO1")
    sim.trigger_event(AlwaysOnSet, on=on)
