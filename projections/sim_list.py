"""The SIM list view (R-SIM2): one row per SIM, from SIM events and package-copy events.

A SIM's ``data_left_mb`` and ``expires_at`` come from its own package copy (R-PK2) or,
inside a shared group, from the group's pool (R-SG1). Copy events are applied only while
the row's ``copy_id`` is that copy. A member's row holds no ``data_left_mb`` of its own:
the pool's value lives once, in the group's row, and the SIM list reads it from there
(adapters/views: ``sims()`` pages, sorting by data left). Every draw on a pool of 10,000
members would otherwise rewrite 10,000 rows.
"""

from __future__ import annotations

from typing import Any

from simledger.domain import sim_rules
from simledger.domain.package import Package
from simledger.domain.sim import Sim
from simledger.domain.types import SuspendReason
from simledger.projections.batch_state import BatchFold, Handler
from simledger.projections.rows import ZERO, SimRow

# ---- SIM events -------------------------------------------------------------------------------


def _touch(fold: BatchFold, event: Any) -> SimRow | None:
    row = fold.sim(event.originator_id)
    if row is None:  # pragma: no cover - every SIM starts with Received
        return None
    row.version = event.originator_version
    row.updated_at = event.timestamp
    fold.dirty_sims.add(row.iccid)
    return row


def received(fold: BatchFold, event: Sim.Received) -> None:
    fold.add_sim(
        SimRow(
            iccid=event.originator_id,
            esim=event.esim,
            status=event.status,
            operator=event.operator,
            sim_type=event.sim_type,
            version=event.originator_version,
            updated_at=event.timestamp,
        )
    )


def touched(fold: BatchFold, event: Sim.Event) -> None:
    _touch(fold, event)


def status_changed(fold: BatchFold, event: Sim.StatusChanged) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status


def company_assigned(fold: BatchFold, event: Sim.CompanyAssigned) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.company = event.company


def package_assigned(fold: BatchFold, event: Sim.PackageAssigned) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.package_id = event.package_id
        row.copy_id = event.copy_id
        row.plan = event.plan
        # The copy's own Assigned event (same save, later in the log) fills these in.
        row.copy_left_mb = None
        row.copy_depleted = None
        row.data_left_mb = None
        row.expires_at = None
        fold.copy_owner[event.copy_id] = row.iccid


def package_shared(fold: BatchFold, event: Sim.PackageShared) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.group_id = event.group_id
        row.package_id = event.package_id
        _no_copy(row)
        row.plan = event.plan
        group = fold.group(event.group_id)
        row.data_left_mb = None  # the group's row holds it (see the module docstring)
        row.expires_at = group.expires_at if group is not None else None


def left_shared_group(fold: BatchFold, event: Sim.LeftSharedGroup) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.group_id = None
        row.package_id = None
        row.plan = None
        _no_copy(row)
        row.data_left_mb = None
        row.expires_at = None


def assigned_to_customer(fold: BatchFold, event: Sim.AssignedToCustomer) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.company = event.company
        if row.plan is None or row.package_id is None:
            row.plan = event.plan


def paused(fold: BatchFold, event: Sim.Paused) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.suspended_reason = SuspendReason.USER.value


def resumed(fold: BatchFold, event: Sim.Resumed) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.suspended_reason = None


def suspended_by_system(fold: BatchFold, event: Sim.SuspendedBySystem) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.status = event.status
        row.suspended_reason = SuspendReason.SYSTEM.value


def usage_recorded(fold: BatchFold, event: Sim.UsageRecorded) -> None:
    row = _touch(fold, event)
    if row is not None:
        month = event.at.strftime("%Y-%m")
        if row.usage_month is None or month > row.usage_month:
            row.usage_month = month
            row.usage_month_mb = ZERO
            row.cost_month = ZERO
        if month == row.usage_month:  # as the aggregate: a late record of an earlier month
            row.usage_month_mb += event.mb


def labels_set(fold: BatchFold, event: Sim.LabelsSet) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.labels = list(event.labels)


def note_set(fold: BatchFold, event: Sim.NoteSet) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.note = event.note


def end_user_set(fold: BatchFold, event: Sim.EndUserSet) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.end_user = event.end_user


def rule_attached(fold: BatchFold, event: sim_rules.RuleAttached) -> None:
    row = _touch(fold, event)
    if row is not None and event.name not in row.rules:
        row.rules = sorted([*row.rules, event.name])


def rule_detached(fold: BatchFold, event: sim_rules.RuleDetached) -> None:
    row = _touch(fold, event)
    if row is not None:
        row.rules = [name for name in row.rules if name != event.name]


def usage_charged(fold: BatchFold, event: sim_rules.UsageCharged) -> None:
    row = _touch(fold, event)
    if row is not None and event.at.strftime("%Y-%m") == row.usage_month:  # as the aggregate
        row.cost_month += event.amount


# ---- package-copy events ----------------------------------------------------------------------
# As the aggregate shows it: a depleted package has nothing left to use, whatever its balance.


def _no_copy(row: SimRow) -> None:
    row.copy_id = None
    row.copy_left_mb = None
    row.copy_depleted = None


def _show_copy(row: SimRow) -> None:
    row.data_left_mb = ZERO if row.copy_depleted is not None else row.copy_left_mb


def _holder(fold: BatchFold, copy_id: str) -> SimRow | None:
    """The SIM row whose current copy is ``copy_id``, if any."""
    iccid = fold.copy_owner.get(copy_id)
    if iccid is None:
        return None
    row = fold.sim(iccid)
    if row is None or row.copy_id != copy_id:
        return None
    fold.dirty_sims.add(iccid)
    return row


def copy_period_started(fold: BatchFold, event: Package.Assigned | Package.Renewed) -> None:
    """A copy's first period (``Assigned``) or a new one (``Renewed``): full data again."""
    row = _holder(fold, event.originator_id)
    if row is not None:
        row.copy_left_mb = event.data_mb
        row.copy_depleted = None
        row.expires_at = event.expires_at
        _show_copy(row)


def copy_drawn(fold: BatchFold, event: Package.UsageDrawn) -> None:
    row = _holder(fold, event.originator_id)
    if row is not None and row.copy_left_mb is not None:
        row.copy_left_mb -= event.mb
        _show_copy(row)


def copy_depleted(fold: BatchFold, event: Package.Depleted) -> None:
    row = _holder(fold, event.originator_id)
    if row is not None:
        row.copy_depleted = event.cause
        _show_copy(row)


def copy_topped_up(fold: BatchFold, event: Package.ToppedUp) -> None:
    row = _holder(fold, event.originator_id)
    if row is not None and row.copy_left_mb is not None:
        row.copy_left_mb += event.mb
        if row.copy_depleted == "data":
            row.copy_depleted = None
        _show_copy(row)


HANDLERS: dict[type, Handler] = {
    Sim.Event: touched,
    Sim.Received: received,
    Sim.StatusChanged: status_changed,
    Sim.CompanyAssigned: company_assigned,
    Sim.PackageAssigned: package_assigned,
    Sim.PackageShared: package_shared,
    Sim.LeftSharedGroup: left_shared_group,
    Sim.AssignedToCustomer: assigned_to_customer,
    Sim.Paused: paused,
    Sim.Resumed: resumed,
    Sim.SuspendedBySystem: suspended_by_system,
    Sim.UsageRecorded: usage_recorded,
    Sim.LabelsSet: labels_set,
    Sim.NoteSet: note_set,
    Sim.EndUserSet: end_user_set,
    Package.Assigned: copy_period_started,
    Package.UsageDrawn: copy_drawn,
    Package.Depleted: copy_depleted,
    Package.Renewed: copy_period_started,
    Package.ToppedUp: copy_topped_up,
    sim_rules.RuleAttached: rule_attached,
    sim_rules.RuleDetached: rule_detached,
    sim_rules.UsageCharged: usage_charged,
}
