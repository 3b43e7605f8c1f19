"""The SIM aggregate. Its id is its normalised ICCID (R-SIM1).

Each command checks the rules, asks the lifecycle table for the next status
(:mod:`simledger.domain.lifecycle`) and only then triggers its event; a refused command
raises before any event exists, so nothing is recorded (R-ES2). Events that change the
status carry the new status, so a replay never has to re-derive it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

from simledger.domain import sim_state
from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate
from simledger.domain.errors import (
    HoldingServiceNotMigrated,
    IllegalTransition,
    NoOperationInFlight,
    NotActivationReady,
    NotPrepaid,
    OperationInFlight,
    SimledgerError,
    SystemPauseNotCleared,
)
from simledger.domain.lifecycle import Cmd, next_status
from simledger.domain.types import HOLDING_SERVICE, OperationKind, SimStatus, SimType, SuspendReason


class Sim(LedgerAggregate, sim_state.RuleState):
    class Event(DomainEvent):
        pass

    # ---- events -------------------------------------------------------------------------
    class Received(CreatedEvent, Event):
        operator: str
        sim_type: str
        esim: bool
        activation_code: str | None
        status: str
        order_id: str | None
        service: str | None

        def apply(self, sim: Sim) -> None:
            sim.operator = self.operator
            sim.sim_type = SimType(self.sim_type)
            sim.esim = self.esim
            sim.activation_code = self.activation_code
            sim.status = SimStatus(self.status)
            sim.order_id = self.order_id
            sim.service = self.service

    class StatusChanged(Event):
        """Base of the events that move the SIM along the lifecycle table."""

        status: str

        def apply(self, sim: Sim) -> None:
            sim.status = SimStatus(self.status)

    class IntegrationChecked(StatusChanged):
        ok: bool
        reason: str | None

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.status_reason = self.reason

    class IntegrationRetried(StatusChanged):
        pass

    class MarkedNotAvailable(StatusChanged):
        reason: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.status_reason = self.reason

    class LineAssigned(StatusChanged):
        msisdn: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.msisdn = self.msisdn

    class CompanyAssigned(StatusChanged):
        company: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.company = self.company

    class MarkedForStoreUse(StatusChanged):
        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.store_use = True

    class PackageAssigned(StatusChanged):
        package_id: str
        copy_id: str
        plan: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.package_id = self.package_id
            sim.copy_id = self.copy_id
            sim.plan = self.plan

    class PackageShared(StatusChanged):
        """The SIM joined a shared group: the group's one package becomes its plan (R-SG1)."""

        group_id: str
        package_id: str
        plan: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.group_id = self.group_id
            sim.package_id = self.package_id
            sim.copy_id = None
            sim.plan = self.plan

    class LeftSharedGroup(StatusChanged):
        group_id: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.group_id = None
            sim.package_id = None
            sim.plan = None
            if sim.swap_from is SimStatus.ACTIVATION_READY:
                # Left during a SIM swap: without a plan it cannot come back ready (R-SIM5).
                sim.swap_from = SimStatus.BLANK

    class MigratedToPartnerService(Event):
        service: str

        def apply(self, sim: Sim) -> None:
            sim.service = self.service

    class AssignedToCustomer(StatusChanged):
        company: str
        customer_service_id: str
        plan: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.company = self.company
            sim.customer_service_id = self.customer_service_id
            if sim.plan is None or sim.package_id is None:
                sim.plan = self.plan

    class Activated(StatusChanged):
        pass

    class OperationRequested(Event):
        """A pause or resume sent to the carrier; the status waits for its answer (R-BK3)."""

        operation_id: str
        kind: str
        deadline: datetime

        def apply(self, sim: Sim) -> None:
            sim.in_flight = {
                "operation_id": self.operation_id,
                "kind": self.kind,
                "requested_at": self.timestamp,
                "deadline": self.deadline,
            }

    class PauseRequested(OperationRequested):
        pass

    class ResumeRequested(OperationRequested):
        pass

    class Paused(StatusChanged):
        operation_id: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.in_flight = None
            sim.suspended_reason = SuspendReason.USER
            sim.user_paused = True
            sim.system_cause = None
            sim.cause_cleared = False

    class Resumed(StatusChanged):
        operation_id: str | None

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            if self.operation_id is not None:
                sim.in_flight = None
            sim.suspended_reason = None
            sim.user_paused = False
            sim.system_cause = None
            sim.cause_cleared = False

    class OperationRefused(Event):
        operation_id: str
        reason: str | None

        def apply(self, sim: Sim) -> None:
            sim.in_flight = None

    class PauseRefused(OperationRefused):
        pass

    class ResumeRefused(OperationRefused):
        pass

    class OperationSuperseded(OperationRefused):
        """The carrier said yes, but the SIM had meanwhile moved (a system pause, a swap):
        the answer is kept, the status stays where the lifecycle table has it."""

    class SuspendedBySystem(StatusChanged):
        cause: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.suspended_reason = SuspendReason.SYSTEM
            sim.system_cause = self.cause
            sim.cause_cleared = False

    class SystemPauseCleared(StatusChanged):
        by: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.cause_cleared = True

    class SimSwapStarted(StatusChanged):
        previous_status: str

        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.swap_from = SimStatus(self.previous_status)

    class SimSwapCompleted(StatusChanged):
        def apply(self, sim: Sim) -> None:
            super().apply(sim)
            sim.swap_from = None

    class UsageRecorded(Event):
        mb: Decimal
        at: datetime
        country: str | None

        def apply(self, sim: Sim) -> None:
            month = self.at.strftime("%Y-%m")
            if sim.usage_month is None or month > sim.usage_month:
                sim.usage_month = month
                sim.usage_month_mb = Decimal(0)
                sim.cost_month = Decimal(0)
            if month == sim.usage_month:  # a late record of an earlier month is not this month's
                sim.usage_month_mb += self.mb
            sim.usage_total_mb += self.mb

    class ToppedUp(Event):
        mb: Decimal

        def apply(self, sim: Sim) -> None:
            sim.topped_up_mb += self.mb
            sim.last_refill_at = self.timestamp

    class LabelsSet(Event):
        labels: list[str]

        def apply(self, sim: Sim) -> None:
            sim.labels = list(self.labels)

    class NoteSet(Event):
        note: str | None

        def apply(self, sim: Sim) -> None:
            sim.note = self.note

    class EndUserSet(Event):
        end_user: str | None

        def apply(self, sim: Sim) -> None:
            sim.end_user = self.end_user

    class UserNotified(Event):
        """R-NT1: the end user was sent the e-mail of an outbox notice (application/notify.py)."""

        notice_id: str
        subject: str

    # ---- state --------------------------------------------------------------------------
    snapshot_enums: ClassVar[dict[str, type[Enum]]] = {
        "status": SimStatus,
        "sim_type": SimType,
        "suspended_reason": SuspendReason,
        "swap_from": SimStatus,
    }

    class_version = 2  # rules, charges, refills: domain/sim_state.py (RuleState)
    upcast_v1_v2 = staticmethod(sim_state.upcast_v1_v2)
    # Set only by events of other modules (domain/sim_options.py, domain/session.py): class
    # defaults, so SIMs and snapshots from before those events load as they did.
    always_on: bool = False
    in_session: bool | None = None
    session_at: datetime | None = None

    def __init__(self) -> None:
        self.operator: str = ""
        self.sim_type: SimType = SimType.SUBSCRIPTION
        self.esim: bool = False
        self.activation_code: str | None = None
        self.status: SimStatus = SimStatus.PENDING
        self.status_reason: str | None = None
        self.order_id: str | None = None
        self.service: str | None = None
        self.msisdn: str | None = None
        self.company: str | None = None
        self.store_use: bool = False
        self.customer_service_id: str | None = None
        self.package_id: str | None = None
        self.copy_id: str | None = None
        self.plan: str | None = None
        self.group_id: str | None = None
        self.suspended_reason: SuspendReason | None = None
        self.system_cause: str | None = None
        self.cause_cleared: bool = False
        self.user_paused: bool = False  # stays set when the system pauses it as well
        self.in_flight: dict[str, Any] | None = None
        self.swap_from: SimStatus | None = None
        self.usage_month: str | None = None
        self.usage_month_mb: Decimal = Decimal(0)
        self.usage_total_mb: Decimal = Decimal(0)
        self.topped_up_mb: Decimal = Decimal(0)
        self.labels: list[str] = []
        self.note: str | None = None
        self.end_user: str | None = None
        self.__dict__.update(sim_state.rule_state())

    # ---- creation -----------------------------------------------------------------------
    @classmethod
    def receive(
        cls,
        iccid: str,
        *,
        operator: str,
        sim_type: SimType,
        esim: bool,
        activation_code: str | None,
        integrated: bool,
        order_id: str | None,
    ) -> Sim:
        command = Cmd.RECEIVE if integrated else Cmd.RECEIVE_WITHOUT_INTEGRATION
        status = next_status(iccid, None, command)
        return cls.start(
            cls.Received,
            id=iccid,
            operator=operator,
            sim_type=sim_type.value,
            esim=esim,
            activation_code=activation_code,
            status=status.value,
            order_id=order_id,
            service=HOLDING_SERVICE if order_id is not None else None,
        )

    # ---- derived ------------------------------------------------------------------------
    @property
    def iccid(self) -> str:
        return self.id

    @property
    def ready(self) -> bool:
        """R-SIM5: a line, a plan, and a company unless the SIM is for store use."""
        return (
            self.msisdn is not None
            and self.plan is not None
            and (self.company is not None or self.store_use)
        )

    def _next(self, command: Cmd, **readiness: Any) -> SimStatus:
        """Ask the lifecycle table; ``readiness`` overrides attributes for R-SIM5."""
        if readiness:
            ready = (
                readiness.get("msisdn", self.msisdn) is not None
                and readiness.get("plan", self.plan) is not None
                and (
                    readiness.get("company", self.company) is not None
                    or readiness.get("store_use", self.store_use)
                )
            )
        else:
            ready = self.ready
        return next_status(self.id, self.status, command, ready=ready, previous=self.swap_from)

    def _not_swapping(self, command: Cmd) -> None:
        if self.swap_from is not None:
            raise IllegalTransition(self.id, self.status, command.value, "a SIM swap is running")

    # ---- integration check --------------------------------------------------------------
    def complete_integration_check(self, *, ok: bool, reason: str | None) -> None:
        command = Cmd.PASS_INTEGRATION_CHECK if ok else Cmd.FAIL_INTEGRATION_CHECK
        self._not_swapping(command)
        status = self._next(command)
        self.trigger_event(self.IntegrationChecked, status=status.value, ok=ok, reason=reason)

    def retry_integration_check(self) -> None:
        status = self._next(Cmd.RETRY_INTEGRATION_CHECK)
        self.trigger_event(self.IntegrationRetried, status=status.value)

    def mark_not_available(self, reason: str) -> None:
        self._not_swapping(Cmd.MARK_NOT_AVAILABLE)
        status = self._next(Cmd.MARK_NOT_AVAILABLE)
        self.trigger_event(self.MarkedNotAvailable, status=status.value, reason=reason)

    # ---- getting ready ------------------------------------------------------------------
    def assign_line(self, msisdn: str) -> None:
        status = self._next(Cmd.ASSIGN_LINE, msisdn=msisdn)
        self.trigger_event(self.LineAssigned, status=status.value, msisdn=msisdn)

    def assign_to_company(self, company: str) -> None:
        status = self._next(Cmd.ASSIGN_COMPANY, company=company)
        self.trigger_event(self.CompanyAssigned, status=status.value, company=company)

    def mark_store_use(self) -> None:
        status = self._next(Cmd.MARK_STORE_USE, store_use=True)
        self.trigger_event(self.MarkedForStoreUse, status=status.value)

    def check_can_take_package(self, command: Cmd) -> SimStatus:
        """The status after taking a plan, without recording anything."""
        return self._next(command, plan="<plan>")

    def assign_package(self, package_id: str, copy_id: str, plan: str) -> None:
        status = self.check_can_take_package(Cmd.ASSIGN_PACKAGE)
        self.trigger_event(
            self.PackageAssigned,
            status=status.value,
            package_id=package_id,
            copy_id=copy_id,
            plan=plan,
        )

    def join_shared_group(self, group_id: str, package_id: str, plan: str) -> None:
        status = self.check_can_take_package(Cmd.JOIN_SHARED_GROUP)
        self.trigger_event(
            self.PackageShared,
            status=status.value,
            group_id=group_id,
            package_id=package_id,
            plan=plan,
        )

    def leave_shared_group(self, group_id: str) -> None:
        status = self._next(Cmd.LEAVE_SHARED_GROUP, plan=None)
        self.trigger_event(self.LeftSharedGroup, status=status.value, group_id=group_id)

    def migrate_to_partner_service(self, service: str) -> None:
        self._next(Cmd.MIGRATE_PARTNER_SERVICE)
        self.trigger_event(self.MigratedToPartnerService, service=service)

    def assign_to_customer(self, company: str, customer_service_id: str, plan: str) -> None:
        status = self._next(Cmd.ASSIGN_TO_CUSTOMER, company=company, plan=plan)
        if self.service == HOLDING_SERVICE:
            raise HoldingServiceNotMigrated(
                f"SIM {self.id} is still on the holding service; migrate it to a partner "
                "service before assigning it to a customer"
            )
        self.trigger_event(
            self.AssignedToCustomer,
            status=status.value,
            company=company,
            customer_service_id=customer_service_id,
            plan=plan,
        )

    def activate(self) -> None:
        status = self._next(Cmd.ACTIVATE)
        if not self.ready:  # pragma: no cover - the table only lets ready SIMs in
            raise NotActivationReady(f"SIM {self.id} lacks a line, a plan or a company")
        self.trigger_event(self.Activated, status=status.value)

    # ---- pause and resume (R-BK3, R-BK6, R-SIM6) ----------------------------------------
    def check_operation(self, kind: OperationKind, now: datetime) -> None:
        """Raise the refusal a bulk request lists for this SIM, if any."""
        if self.in_flight is not None and now < self.in_flight["deadline"]:
            raise OperationInFlight(
                f"SIM {self.id} already has a {self.in_flight['kind']} in flight "
                f"(operation {self.in_flight['operation_id']})"
            )
        if kind is OperationKind.PAUSE:
            self._next(Cmd.PAUSE)
        else:
            self._next(Cmd.RESUME)
            self._check_resumable()

    def _check_resumable(self) -> None:
        if self.suspended_reason is SuspendReason.SYSTEM and not self.cause_cleared:
            raise SystemPauseNotCleared(self.id, self.system_cause)

    def request_operation(
        self, kind: OperationKind, operation_id: str, now: datetime, deadline: datetime
    ) -> None:
        self.check_operation(kind, now)
        event = self.PauseRequested if kind is OperationKind.PAUSE else self.ResumeRequested
        self.trigger_event(event, operation_id=operation_id, kind=kind.value, deadline=deadline)

    def confirm_operation(self, operation_id: str, *, ok: bool, reason: str | None) -> None:
        if self.in_flight is None or self.in_flight["operation_id"] != operation_id:
            raise NoOperationInFlight(
                f"SIM {self.id} has no operation {operation_id} waiting for its carrier"
            )
        kind = OperationKind(self.in_flight["kind"])
        if not ok:
            refused = self.PauseRefused if kind is OperationKind.PAUSE else self.ResumeRefused
            self.trigger_event(refused, operation_id=operation_id, reason=reason)
            return
        try:
            status = self._next(Cmd.PAUSE if kind is OperationKind.PAUSE else Cmd.RESUME)
            if kind is OperationKind.RESUME:
                self._check_resumable()
        except SimledgerError as error:
            self.trigger_event(
                self.OperationSuperseded, operation_id=operation_id, reason=str(error)
            )
            return
        applied = self.Paused if kind is OperationKind.PAUSE else self.Resumed
        self.trigger_event(applied, status=status.value, operation_id=operation_id)

    def suspend_by_system(self, cause: str) -> None:
        status = self._next(Cmd.SUSPEND_BY_SYSTEM)
        self.trigger_event(self.SuspendedBySystem, status=status.value, cause=cause)

    def clear_system_pause(self, by: str) -> None:
        status = self._next(Cmd.CLEAR_SYSTEM_PAUSE)
        if self.suspended_reason is not SuspendReason.SYSTEM:
            raise IllegalTransition(
                self.id, self.status, Cmd.CLEAR_SYSTEM_PAUSE.value, "not paused by the system"
            )
        if self.cause_cleared:
            raise IllegalTransition(
                self.id, self.status, Cmd.CLEAR_SYSTEM_PAUSE.value, "cause already cleared"
            )
        self.trigger_event(self.SystemPauseCleared, status=status.value, by=by)

    def resume_by_system(self) -> None:
        """The system lifts its own pause once the cause is cleared (a top-up, R-SIM7)."""
        status = self._next(Cmd.RESUME)
        self._check_resumable()
        self.trigger_event(self.Resumed, status=status.value, operation_id=None)

    @property
    def paused_by_system_for_package(self) -> bool:
        return (
            self.status is SimStatus.SUSPENDED
            and self.suspended_reason is SuspendReason.SYSTEM
            and not self.cause_cleared
            and self.system_cause in ("depleted", "expired")
        )

    # ---- SIM swap -----------------------------------------------------------------------
    def start_sim_swap(self) -> None:
        status = self._next(Cmd.START_SIM_SWAP)
        self.trigger_event(self.SimSwapStarted, status=status.value, previous_status=self.status)

    def complete_sim_swap(self) -> None:
        status = self._next(Cmd.COMPLETE_SIM_SWAP)
        self.trigger_event(self.SimSwapCompleted, status=status.value)

    # ---- usage --------------------------------------------------------------------------
    def check_usage(self) -> None:
        self._next(Cmd.RECORD_USAGE)

    def record_usage(self, mb: Decimal, at: datetime, country: str | None) -> None:
        self.check_usage()
        self.trigger_event(self.UsageRecorded, mb=mb, at=at, country=country)

    def top_up(self, mb: Decimal) -> None:
        self._next(Cmd.TOP_UP)
        if self.sim_type is not SimType.PREPAID:
            raise NotPrepaid(f"SIM {self.id} is {self.sim_type.value}; only prepaid SIMs top up")
        self.trigger_event(self.ToppedUp, mb=mb)

    # ---- descriptive fields (R-SIM2) ----------------------------------------------------
    def set_labels(self, labels: list[str]) -> None:
        self._next(Cmd.SET_DETAILS)
        self.trigger_event(self.LabelsSet, labels=labels)

    def set_note(self, note: str | None) -> None:
        self._next(Cmd.SET_DETAILS)
        self.trigger_event(self.NoteSet, note=note)

    def set_end_user(self, email: str | None) -> None:
        self._next(Cmd.SET_DETAILS)
        self.trigger_event(self.EndUserSet, end_user=email)
