"""A plain-Python reference model of the rules of docs/rules.md, for the stateful tests.

It knows nothing of the engine: no aggregates, no events, no lifecycle table, no error
classes. It predicts what each command of docs/api.md does to the SIMs, packages and shared
groups, or which refusal it meets: :class:`Refused` names the error class and the rule.
Ids of groups and bulk operations are the model's own (``g1``, ``op1``); the tests map
them to the engine's UUIDs.

Each command checks everything first and changes the model only once it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from simledger.domain import OperationKind, SimStatus, SimType

S = SimStatus
ASSIGNABLE = (S.BLANK, S.ACTIVATION_READY)
IN_SERVICE = (S.ACTIVE, S.SUSPENDED)
CARRIER_DEADLINE = timedelta(hours=24)
PACKAGE_CAUSES = ("depleted", "expired")


class Refused(Exception):
    """The refusal the model predicts: the engine's error class name and rule id."""

    def __init__(self, error: str, rule: str, why: str = "") -> None:
        super().__init__(f"{error} ({rule}) {why}".strip())
        self.error = error
        self.rule = rule


def illegal(sim: ModelSim, command: str, why: str = "") -> Refused:
    return Refused("IllegalTransition", "R-SIM4", f"{sim.iccid} {sim.status} {command} {why}")


@dataclass
class ModelPackage:
    key: str
    name: str
    data_mb: Decimal
    validity_days: int
    auto_renew: bool


@dataclass
class ModelCopy:
    """A SIM's own copy of a package (R-PK2)."""

    package: ModelPackage
    data_left: Decimal
    expires_at: datetime
    depleted: bool = False
    cause: str | None = None  # "data" or "expired"

    def active_at(self, now: datetime) -> bool:
        return not self.depleted and now < self.expires_at

    def renew(self, start: datetime) -> None:
        self.data_left = self.package.data_mb
        self.expires_at = start + timedelta(days=self.package.validity_days)
        self.depleted = False
        self.cause = None


@dataclass
class ModelGroup:
    """A shared group and its one pool (R-SG1)."""

    key: str
    name: str
    package: ModelPackage
    data_left: Decimal
    expires_at: datetime
    members: list[str]
    depleted: bool = False
    deleted: bool = False
    draws: list[tuple[str, Decimal]] = field(default_factory=list)

    @property
    def locked(self) -> bool:
        return not self.depleted and not self.deleted

    @property
    def usable(self) -> Decimal:
        return Decimal(0) if self.depleted else self.data_left


@dataclass
class InFlight:
    operation: str
    kind: OperationKind
    deadline: datetime


@dataclass
class ModelSim:
    iccid: str
    sim_type: SimType
    status: SimStatus
    msisdn: str | None = None
    company: str | None = None
    store_use: bool = False
    plan: str | None = None
    package: str | None = None
    copy: ModelCopy | None = None
    group: str | None = None
    suspended_reason: str | None = None  # "user" or "system"
    system_cause: str | None = None
    cause_cleared: bool = False
    user_paused: bool = False  # paused by a person; a system pause on top keeps it
    in_flight: InFlight | None = None
    swap_from: SimStatus | None = None

    @property
    def ready(self) -> bool:
        """R-SIM5: a line, a plan, and a company unless the SIM is for store use."""
        return (
            self.msisdn is not None
            and self.plan is not None
            and (self.company is not None or self.store_use)
        )

    def readiness(self) -> SimStatus:
        return S.ACTIVATION_READY if self.ready else S.BLANK

    @property
    def paused_by_system_for_package(self) -> bool:
        return (
            self.status is S.SUSPENDED
            and self.suspended_reason == "system"
            and not self.cause_cleared
            and self.system_cause in PACKAGE_CAUSES
        )

    @property
    def data_left(self) -> Decimal | None:
        if self.copy is None:
            return None
        return Decimal(0) if self.copy.depleted else self.copy.data_left

    def suspend_for_package(self, cause: str) -> None:
        """A package or pool ran out: an active SIM, or one paused by the user (or by the
        system for a cleared cause), is paused by the system, so that a plain resume cannot
        bring it back without data (R-SIM6)."""
        uncleared = self.suspended_reason == "system" and not self.cause_cleared
        if self.status is S.ACTIVE or (self.status is S.SUSPENDED and not uncleared):
            self.suspend_by_system(cause)

    def suspend_by_system(self, cause: str) -> None:
        self.status = S.SUSPENDED
        self.suspended_reason = "system"
        self.system_cause = cause
        self.cause_cleared = False

    def lift_pause(self) -> None:
        self.status = S.ACTIVE
        self.user_paused = False
        self.suspended_reason = None
        self.system_cause = None
        self.cause_cleared = False


@dataclass
class BulkAnswer:
    operation: str
    accepted: list[str]
    rejected: list[str]


@dataclass
class ExpiryAnswer:
    depleted_copies: int
    renewed_copies: int
    depleted_groups: list[str]


class Model:
    """The fleet as the rules say it should be."""

    def __init__(self, *, operators_without_integration: tuple[str, ...] = ()) -> None:
        self.sims: dict[str, ModelSim] = {}
        self.packages: dict[str, ModelPackage] = {}
        self.groups: dict[str, ModelGroup] = {}
        self.copies: list[ModelCopy] = []  # every copy ever made, attached or not
        self.operations: dict[str, dict[str, OperationKind]] = {}  # op → accepted SIMs
        self.without_integration = operators_without_integration

    # ---- lookups ------------------------------------------------------------------------
    def sim(self, iccid: str) -> ModelSim:
        if iccid not in self.sims:
            raise Refused("UnknownSim", "R-SIM1", iccid)
        return self.sims[iccid]

    def package(self, key: str) -> ModelPackage:
        if key not in self.packages:
            raise Refused("UnknownPackage", "R-PK1", key)
        return self.packages[key]

    def group(self, key: str) -> ModelGroup:
        group = self.groups.get(key)
        if group is None or group.deleted:
            raise Refused("UnknownGroup", "R-SG4", key)
        return group

    def data_left(self, iccid: str) -> Decimal | None:
        """What the SIM has left to use: a depleted package has nothing, whatever its last
        balance (an expired pool or copy may keep one)."""
        sim = self.sims[iccid]
        if sim.group is not None:
            return self.groups[sim.group].usable
        return sim.data_left

    # ---- catalogue ----------------------------------------------------------------------
    def create_package(
        self, key: str, name: str, data_mb: int, validity_days: int, auto_renew: bool
    ) -> None:
        self.packages[key] = ModelPackage(key, name, Decimal(data_mb), validity_days, auto_renew)

    # ---- arrival and integration check (R-SIM4) ------------------------------------------
    def receive(self, iccid: str, operator: str, sim_type: SimType) -> None:
        if iccid in self.sims:
            raise Refused("SimAlreadyExists", "R-SIM1", iccid)
        status = S.NOT_AVAILABLE if operator in self.without_integration else S.PENDING
        self.sims[iccid] = ModelSim(iccid, sim_type, status)

    def complete_integration_check(self, iccid: str, ok: bool) -> None:
        sim = self.sim(iccid)
        if sim.swap_from is not None or sim.status is not S.PENDING:
            raise illegal(sim, "integration check")
        sim.status = S.BLANK if ok else S.INVALID

    def retry_integration_check(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.status is not S.INVALID:
            raise illegal(sim, "retry")
        sim.status = S.PENDING

    def mark_not_available(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.swap_from is not None or sim.status is not S.PENDING:
            raise illegal(sim, "mark_not_available")
        sim.status = S.NOT_AVAILABLE

    # ---- getting ready (R-SIM5) -----------------------------------------------------------
    def assign_line(self, iccid: str, msisdn: str) -> None:
        sim = self.sim(iccid)
        if sim.status not in ASSIGNABLE:
            raise illegal(sim, "assign_line")
        sim.msisdn = msisdn
        sim.status = sim.readiness()

    def assign_to_company(self, iccid: str, company: str) -> None:
        sim = self.sim(iccid)
        if sim.status not in (*ASSIGNABLE, *IN_SERVICE):
            raise illegal(sim, "assign_to_company")
        sim.company = company
        if sim.status in ASSIGNABLE:
            sim.status = sim.readiness()

    def mark_store_use(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.status not in ASSIGNABLE:
            raise illegal(sim, "mark_store_use")
        sim.store_use = True
        sim.status = sim.readiness()

    # ---- packages (R-PK2, R-PK3) -----------------------------------------------------------
    def no_active_package(self, sim: ModelSim, now: datetime, rule: str) -> None:
        if sim.group is not None:
            raise Refused("AlreadyInSharedGroup", rule, f"{sim.iccid} in {sim.group}")
        if sim.copy is not None and sim.copy.active_at(now):
            raise Refused("PackageStillActive", rule, sim.iccid)

    def assign_package(self, iccid: str, key: str, now: datetime) -> None:
        sim = self.sim(iccid)
        package = self.package(key)
        self.no_active_package(sim, now, "R-PK3")
        if sim.status not in (*ASSIGNABLE, *IN_SERVICE):
            raise illegal(sim, "assign_package")
        if sim.paused_by_system_for_package:
            sim.cause_cleared = True  # a new package clears the cause (R-SIM6)
        copy = ModelCopy(package, package.data_mb, now + timedelta(days=package.validity_days))
        self.copies.append(copy)
        sim.copy = copy
        sim.package = package.key
        sim.plan = package.name
        if sim.status in ASSIGNABLE:
            sim.status = sim.readiness()

    def activate(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.status is not S.ACTIVATION_READY:
            raise illegal(sim, "activate")
        sim.status = S.ACTIVE

    # ---- pause and resume (R-BK2, R-BK3, R-BK6, R-SIM6) ------------------------------------
    def bulk(
        self, operation: str, kind: OperationKind, iccids: list[str], now: datetime
    ) -> BulkAnswer:
        accepted: list[str] = []
        rejected: list[str] = []
        for iccid in dict.fromkeys(iccids):
            sim = self.sims.get(iccid)
            if sim is None or not self.may_request(sim, kind, now):
                rejected.append(iccid)
                continue
            sim.in_flight = InFlight(operation, kind, now + CARRIER_DEADLINE)
            accepted.append(iccid)
        self.operations[operation] = dict.fromkeys(accepted, kind)
        return BulkAnswer(operation, accepted, rejected)

    @staticmethod
    def may_request(sim: ModelSim, kind: OperationKind, now: datetime) -> bool:
        if sim.in_flight is not None and now < sim.in_flight.deadline:
            return False  # R-BK6
        if kind is OperationKind.PAUSE:
            return sim.status is S.ACTIVE
        return sim.status is S.SUSPENDED and not (
            sim.suspended_reason == "system" and not sim.cause_cleared
        )

    def confirm(self, operation: str, iccid: str, ok: bool) -> str:
        """A carrier's answer; returns what happened: refused, superseded or applied."""
        sim = self.sim(iccid)
        flight = sim.in_flight
        if flight is None or flight.operation != operation:
            raise Refused("NoOperationInFlight", "R-BK3", f"{iccid} {operation}")
        sim.in_flight = None
        if not ok:
            return "refused"
        if flight.kind is OperationKind.PAUSE:
            if sim.status is not S.ACTIVE:
                return "superseded"  # the SIM moved meanwhile: the late yes is kept
            sim.status = S.SUSPENDED
            sim.suspended_reason = "user"
            sim.user_paused = True
            sim.system_cause = None
            sim.cause_cleared = False
            return "applied"
        if sim.status is not S.SUSPENDED or (
            sim.suspended_reason == "system" and not sim.cause_cleared
        ):
            return "superseded"
        sim.lift_pause()
        return "applied"

    def suspend_by_system(self, iccid: str, cause: str) -> None:
        sim = self.sim(iccid)
        if sim.status not in IN_SERVICE:
            raise illegal(sim, "suspend_by_system")
        sim.suspend_by_system(cause)

    def clear_system_pause(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.status is not S.SUSPENDED:
            raise illegal(sim, "clear_system_pause")
        if sim.suspended_reason != "system" or sim.cause_cleared:
            raise illegal(sim, "clear_system_pause", "no uncleared system pause")
        sim.cause_cleared = True

    # ---- SIM swap -------------------------------------------------------------------------
    def start_sim_swap(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.status not in (*ASSIGNABLE, *IN_SERVICE):
            raise illegal(sim, "start_sim_swap")
        sim.swap_from = sim.status
        sim.status = S.PENDING

    def complete_sim_swap(self, iccid: str) -> None:
        sim = self.sim(iccid)
        if sim.status is not S.PENDING or sim.swap_from is None:
            raise illegal(sim, "complete_sim_swap")
        sim.status = sim.swap_from
        sim.swap_from = None

    # ---- usage and balance (R-PK2, R-SG1, R-SIM7) ----------------------------------------
    def record_usage(self, iccid: str, mb: Decimal, now: datetime) -> None:
        sim = self.sim(iccid)
        if sim.status not in IN_SERVICE:
            raise illegal(sim, "record_usage")
        if sim.group is not None:
            group = self.groups[sim.group]
            if group.depleted:
                return
            drawn = min(mb, group.data_left)
            if drawn > 0:
                group.data_left -= drawn
                group.draws.append((iccid, drawn))
            if group.data_left <= 0:
                group.depleted = True
                for member in group.members:
                    self.sims[member].suspend_for_package("depleted")
            return
        copy = sim.copy
        if copy is None or copy.depleted:
            return
        remaining = mb
        while True:
            drawn = min(remaining, copy.data_left)
            copy.data_left -= drawn
            remaining -= drawn
            if copy.data_left > 0:
                return
            if not copy.package.auto_renew:
                copy.depleted, copy.cause = True, "data"
                sim.suspend_for_package("depleted")
                return
            copy.renew(now)  # what the old period could not cover, the new one does
            if remaining <= 0:
                return

    def top_up(self, iccid: str, mb: Decimal, now: datetime) -> None:
        sim = self.sim(iccid)
        if sim.status not in (*ASSIGNABLE, *IN_SERVICE):
            raise illegal(sim, "top_up")
        if sim.sim_type is not SimType.PREPAID:
            raise Refused("NotPrepaid", "R-SIM7", iccid)
        copy = sim.copy
        if copy is None:
            return
        copy.data_left += mb
        if copy.cause == "data":
            copy.depleted, copy.cause = False, None
        if sim.paused_by_system_for_package and copy.active_at(now):
            sim.cause_cleared = True
            if not sim.user_paused:  # the cause is gone: the SIM works again (R-SIM7)
                sim.lift_pause()

    def expire_packages(self, now: datetime) -> ExpiryAnswer:
        """Every copy and pool whose validity ended by ``now`` runs out once (auto-renew
        copies start their next period from the end of the last one)."""
        depleted = renewed = 0
        for copy in self.copies:
            if copy.depleted or now < copy.expires_at:
                continue
            if copy.package.auto_renew:
                copy.renew(copy.expires_at)
                renewed += 1
                continue
            copy.depleted, copy.cause = True, "expired"
            depleted += 1
            for sim in self.sims.values():
                if sim.copy is copy:
                    sim.suspend_for_package("expired")
        groups: list[str] = []
        for group in self.groups.values():
            if group.depleted or group.deleted or now < group.expires_at:
                continue
            group.depleted = True
            groups.append(group.key)
            for member in group.members:
                self.sims[member].suspend_for_package("expired")
        return ExpiryAnswer(depleted, renewed, groups)

    # ---- shared groups (R-SG1..R-SG4) -----------------------------------------------------
    def check_joinable(self, sim: ModelSim, now: datetime) -> None:
        self.no_active_package(sim, now, "R-SG2")
        if sim.status not in (*ASSIGNABLE, *IN_SERVICE):
            raise illegal(sim, "join a shared group")

    def may_join(self, iccid: str, now: datetime) -> bool:
        """Whether the SIM exists and may join a shared group (R-SG2)."""
        try:
            self.check_joinable(self.sim(iccid), now)
        except Refused:
            return False
        return True

    def join(self, sim: ModelSim, group: ModelGroup) -> None:
        if sim.paused_by_system_for_package and not group.depleted:
            sim.cause_cleared = True  # a fresh pool is a new package (R-SIM6)
        sim.group = group.key
        sim.package = group.package.key
        sim.plan = group.package.name
        sim.copy = None
        if sim.status in ASSIGNABLE:
            sim.status = sim.readiness()

    @staticmethod
    def leave(sim: ModelSim) -> None:
        sim.group = None
        sim.package = None
        sim.plan = None
        if sim.status in ASSIGNABLE:
            sim.status = sim.readiness()
        if sim.swap_from is S.ACTIVATION_READY:
            sim.swap_from = S.BLANK  # no plan to come back to (R-SIM5)

    def create_shared_group(
        self, key: str, name: str, iccids: list[str], package_key: str, now: datetime
    ) -> None:
        members = list(dict.fromkeys(iccids))
        if not members:
            raise Refused("InvalidInput", "R-SG2", "no SIMs")
        package = self.package(package_key)
        if package.auto_renew:
            raise Refused("AutoRenewNotAllowed", "R-SG2", package.key)
        for iccid in members:
            self.check_joinable(self.sim(iccid), now)
        group = ModelGroup(
            key,
            name,
            package,
            package.data_mb,
            now + timedelta(days=package.validity_days),
            members,
        )
        self.groups[key] = group
        for iccid in members:
            self.join(self.sims[iccid], group)

    def add_to_shared_group(self, key: str, iccid: str, now: datetime) -> None:
        group = self.group(key)
        if group.locked:
            raise Refused("SharedGroupLocked", "R-SG3", key)
        sim = self.sim(iccid)
        self.check_joinable(sim, now)
        group.members.append(iccid)
        self.join(sim, group)

    def remove_from_shared_group(self, key: str, iccid: str) -> None:
        group = self.group(key)
        sim = self.sim(iccid)
        if group.locked:
            raise Refused("SharedGroupLocked", "R-SG3", key)
        if iccid not in group.members:
            raise Refused("NotAMember", "R-SG1", f"{iccid} {key}")
        group.members.remove(iccid)
        self.leave(sim)

    def delete_shared_group(self, key: str, move_to: str | None) -> None:
        group = self.group(key)
        if move_to is None:
            for iccid in group.members:
                self.leave(self.sims[iccid])
            group.members = []
            group.deleted = True
            return
        target = self.group(move_to)
        if target is group:
            raise Refused("InvalidInput", "R-SG4", "into itself")
        if target.locked:
            raise Refused("SharedGroupLocked", "R-SG3", move_to)
        for iccid in group.members:
            if self.sims[iccid].status is S.PENDING:  # mid-swap: cannot take a plan now
                raise illegal(self.sims[iccid], "move to another shared group")
        for iccid in group.members:
            self.leave(self.sims[iccid])
            self.join(self.sims[iccid], target)
        target.members.extend(group.members)
        group.members = []
