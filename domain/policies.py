"""Rules that span aggregates: a SIM with its package copy or its shared group.

Pure functions over domain objects, no I/O: the application loads what a rule looks at and
saves what it changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from simledger.domain.errors import AlreadyInSharedGroup, PackageStillActive
from simledger.domain.lifecycle import Cmd
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.types import SimStatus, SuspendReason


def check_no_active_package(sim: Sim, copy: Package | None, now: datetime, *, rule: str) -> None:
    """R-PK3: a SIM takes a package only when it has none active: neither a shared pool
    nor its own ``copy`` still valid at ``now``."""
    if sim.group_id is not None:
        raise AlreadyInSharedGroup(
            f"SIM {sim.id} uses the pool of shared group {sim.group_id}", rule=rule
        )
    if copy is not None and copy.is_active_at(now):
        raise PackageStillActive(
            f"SIM {sim.id} still has an active package ({copy.name}, copy {copy.id})",
            rule=rule,
        )


def check_joinable(sim: Sim, copy: Package | None, now: datetime) -> None:
    """R-SG2: a SIM joins a shared group only from no group and with no active package."""
    if sim.group_id is not None:
        raise AlreadyInSharedGroup(f"SIM {sim.id} already belongs to shared group {sim.group_id}")
    check_no_active_package(sim, copy, now, rule="R-SG2")
    sim.check_can_take_package(Cmd.JOIN_SHARED_GROUP)


def join(sim: Sim, group: SharedGroup) -> None:
    """The SIM takes the group's pool as its package."""
    # A fresh pool is a new package and clears the cause (R-SIM6); a depleted one (the
    # only kind that takes members after creation, R-SG3) brings no data, so it does not.
    if sim.paused_by_system_for_package and not group.depleted:
        sim.clear_system_pause(by="new package")
    sim.join_shared_group(group.id, group.package_id, group.package_name)


def join_moved(sim: Sim, target: SharedGroup) -> None:
    """R-SG4: a SIM moved from its group into ``target``."""
    sim.leave_shared_group(sim.group_id or "")
    join(sim, target)


def suspend_for_package(sims: Iterable[Sim], cause: str) -> None:
    """R-SIM6: the SIMs whose package ran out (``cause``) are paused by the system, but
    for those with Always On (R-AO2)."""
    for sim in sims:
        if sim.always_on:  # R-AO2: its data keeps working without a package
            continue
        # A SIM the user paused is paused by the system too, so that a plain resume
        # cannot bring it back without a package (R-SIM6); one already paused by the
        # system for an uncleared cause stays as it is.
        system_paused = sim.suspended_reason is SuspendReason.SYSTEM and not sim.cause_cleared
        if sim.status is SimStatus.ACTIVE or (
            sim.status is SimStatus.SUSPENDED and not system_paused
        ):
            sim.suspend_by_system(cause)


def resume_after_top_up(sim: Sim, copy: Package, now: datetime) -> None:
    """R-SIM7: a top-up that makes the copy usable again clears the system's pause for an
    empty package, and resumes the SIM unless its user paused it too."""
    if sim.paused_by_system_for_package and copy.is_active_at(now):
        sim.clear_system_pause(by="top-up")
        if not sim.user_paused:  # a pause by the user stays until the user resumes
            sim.resume_by_system()
