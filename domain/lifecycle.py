"""The SIM lifecycle of R-SIM4 as one explicit table: (from-status, command) → to-status.

Every command on a SIM asks :func:`next_status`; a pair missing from the table is refused
with :class:`IllegalTransition` before any event is made.

Two targets are not fixed statuses:

* ``READINESS``: ``activation_ready`` when R-SIM5 holds (line, plan, and a company unless
  for store use), else ``blank``.
* ``PREVIOUS``: the status the SIM had when its SIM swap started.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from simledger.domain.errors import IllegalTransition
from simledger.domain.types import SimStatus


class Cmd(StrEnum):
    RECEIVE = "receive"
    RECEIVE_WITHOUT_INTEGRATION = "receive_without_integration"
    PASS_INTEGRATION_CHECK = "complete_integration_check(ok=True)"
    FAIL_INTEGRATION_CHECK = "complete_integration_check(ok=False)"
    RETRY_INTEGRATION_CHECK = "retry_integration_check"
    MARK_NOT_AVAILABLE = "mark_not_available"
    ASSIGN_LINE = "assign_line"
    ASSIGN_COMPANY = "assign_to_company"
    MARK_STORE_USE = "mark_store_use"
    ASSIGN_PACKAGE = "assign_package"
    JOIN_SHARED_GROUP = "join_shared_group"
    LEAVE_SHARED_GROUP = "leave_shared_group"
    MIGRATE_PARTNER_SERVICE = "migrate_to_partner_service"
    ASSIGN_TO_CUSTOMER = "assign_to_customer"
    ACTIVATE = "activate"
    PAUSE = "pause"
    RESUME = "resume"
    SUSPEND_BY_SYSTEM = "suspend_by_system"
    CLEAR_SYSTEM_PAUSE = "clear_system_pause"
    START_SIM_SWAP = "start_sim_swap"
    COMPLETE_SIM_SWAP = "complete_sim_swap"
    RECORD_USAGE = "record_usage"
    TOP_UP = "top_up"
    SET_DETAILS = "set_details"  # labels, note, end user, Always On


class Target(StrEnum):
    READINESS = "<activation_ready if R-SIM5 holds, else blank>"
    PREVIOUS = "<status before the SIM swap>"


S = SimStatus
_NEW: Final = None  # "from" of the commands that create a SIM

_ASSIGNABLE = (S.BLANK, S.ACTIVATION_READY)
_IN_SERVICE = (S.ACTIVE, S.SUSPENDED)

TRANSITIONS: Final[dict[tuple[SimStatus | None, Cmd], SimStatus | Target]] = {
    # arrival and integration check
    (_NEW, Cmd.RECEIVE): S.PENDING,
    (_NEW, Cmd.RECEIVE_WITHOUT_INTEGRATION): S.NOT_AVAILABLE,
    (S.PENDING, Cmd.PASS_INTEGRATION_CHECK): S.BLANK,
    (S.PENDING, Cmd.FAIL_INTEGRATION_CHECK): S.INVALID,
    (S.INVALID, Cmd.RETRY_INTEGRATION_CHECK): S.PENDING,
    (S.PENDING, Cmd.MARK_NOT_AVAILABLE): S.NOT_AVAILABLE,
    # getting ready: line, plan, company (R-SIM5)
    **{(s, Cmd.ASSIGN_LINE): Target.READINESS for s in _ASSIGNABLE},
    **{(s, Cmd.ASSIGN_COMPANY): Target.READINESS for s in _ASSIGNABLE},
    **{(s, Cmd.ASSIGN_COMPANY): s for s in _IN_SERVICE},
    **{(s, Cmd.MARK_STORE_USE): Target.READINESS for s in _ASSIGNABLE},
    **{(s, Cmd.ASSIGN_PACKAGE): Target.READINESS for s in _ASSIGNABLE},
    **{(s, Cmd.ASSIGN_PACKAGE): s for s in _IN_SERVICE},
    **{(s, Cmd.JOIN_SHARED_GROUP): Target.READINESS for s in _ASSIGNABLE},
    **{(s, Cmd.JOIN_SHARED_GROUP): s for s in _IN_SERVICE},
    **{(s, Cmd.LEAVE_SHARED_GROUP): Target.READINESS for s in _ASSIGNABLE},
    **{(s, Cmd.LEAVE_SHARED_GROUP): s for s in (*_IN_SERVICE, S.PENDING)},
    # partner flow (R-PF3, R-PF4)
    **{
        (s, Cmd.MIGRATE_PARTNER_SERVICE): s
        for s in (S.PENDING, S.BLANK, S.ACTIVATION_READY, S.ACTIVE, S.SUSPENDED)
    },
    **{(s, Cmd.ASSIGN_TO_CUSTOMER): Target.READINESS for s in _ASSIGNABLE},
    # the core path
    (S.ACTIVATION_READY, Cmd.ACTIVATE): S.ACTIVE,
    (S.ACTIVE, Cmd.PAUSE): S.SUSPENDED,  # applied when the carrier confirms (R-BK3)
    (S.SUSPENDED, Cmd.RESUME): S.ACTIVE,  # applied when the carrier confirms (R-BK3)
    (S.ACTIVE, Cmd.SUSPEND_BY_SYSTEM): S.SUSPENDED,
    (S.SUSPENDED, Cmd.SUSPEND_BY_SYSTEM): S.SUSPENDED,  # e.g. a paused SIM's package runs out
    (S.SUSPENDED, Cmd.CLEAR_SYSTEM_PAUSE): S.SUSPENDED,
    # SIM swap: to pending and back
    **{
        (s, Cmd.START_SIM_SWAP): S.PENDING
        for s in (S.BLANK, S.ACTIVATION_READY, S.ACTIVE, S.SUSPENDED)
    },
    (S.PENDING, Cmd.COMPLETE_SIM_SWAP): Target.PREVIOUS,
    # usage and balance; late usage records of a suspended SIM still count
    **{(s, Cmd.RECORD_USAGE): s for s in _IN_SERVICE},
    **{(s, Cmd.TOP_UP): s for s in (*_ASSIGNABLE, *_IN_SERVICE)},
    # descriptive fields may change in every status
    **{(s, Cmd.SET_DETAILS): s for s in SimStatus},
}


def next_status(
    iccid: str,
    status: SimStatus | None,
    command: Cmd,
    *,
    ready: bool = False,
    previous: SimStatus | None = None,
) -> SimStatus:
    """The status ``command`` leads to from ``status``, or ``IllegalTransition``."""
    try:
        target = TRANSITIONS[(status, command)]
    except KeyError:
        raise IllegalTransition(iccid, status, command.value) from None
    if target is Target.READINESS:
        return S.ACTIVATION_READY if ready else S.BLANK
    if target is Target.PREVIOUS:
        if previous is None:
            raise IllegalTransition(iccid, status, command.value, "no SIM swap in progress")
        return previous
    assert isinstance(target, SimStatus)
    return target


def allowed_commands(status: SimStatus | None) -> set[Cmd]:
    return {cmd for (frm, cmd) in TRANSITIONS if frm == status}
