"""What the ledger's commands and queries return: validated, immutable value objects."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from simledger.domain.actor import Actor
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.types import SimStatus, SimType, SuspendReason
from simledger.projections.models import SharedGroupFields


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)


class BulkResult(_Frozen):
    """R-BK2: the SIMs accepted, and apart, each refused SIM with its reason."""

    operation_id: UUID
    kind: str
    accepted: list[str]
    rejected: dict[str, str]


class ConfirmResult(_Frozen):
    """Carrier answers applied in one go, and those skipped with the reason."""

    applied: list[str]
    skipped: dict[str, str]


class SimView(_Frozen):
    """A SIM's state (R-SIM2 attributes), with its package copy or shared pool."""

    iccid: str
    status: SimStatus
    sim_type: SimType
    operator: str
    esim: bool
    activation_code: str | None
    msisdn: str | None
    company: str | None
    store_use: bool
    end_user: str | None
    note: str | None
    labels: list[str]
    package_id: UUID | None
    copy_id: UUID | None
    plan: str | None
    group_id: UUID | None
    data_left_mb: Decimal | None
    expires_at: datetime | None
    days_left: int | None
    this_month_mb: Decimal
    suspended_reason: SuspendReason | None
    system_cause: str | None
    cause_cleared: bool
    operation_in_flight: dict[str, Any] | None
    order_id: UUID | None
    service: str | None
    customer_service_id: UUID | None
    version: int
    updated_at: datetime
    in_session: str = "n/a"
    """R-SS2: ``yes`` / ``no`` from the latest session record, ``n/a`` before any."""
    always_on: bool = False
    """R-AO1."""

    @classmethod
    def of(
        cls, sim: Sim, copy: Package | None, group: SharedGroup | None, now: datetime
    ) -> SimView:
        """The SIM with its copy or its group's pool, as seen at ``now``."""
        data_left: Decimal | None = None
        expires_at: datetime | None = None
        # A depleted package has nothing left to use, whatever its last balance was.
        if group is not None:
            data_left = Decimal(0) if group.depleted else group.data_left_mb
            expires_at = group.expires_at
        elif copy is not None:
            data_left = Decimal(0) if copy.depleted else copy.data_left_mb
            expires_at = copy.expires_at
        days_left = None
        if expires_at is not None:
            days_left = max(0, (expires_at - now).days + (1 if (expires_at - now).seconds else 0))
        month = now.strftime("%Y-%m")
        return cls(
            iccid=sim.id,
            status=sim.status,
            sim_type=sim.sim_type,
            operator=sim.operator,
            esim=sim.esim,
            activation_code=sim.activation_code,
            msisdn=sim.msisdn,
            company=sim.company,
            store_use=sim.store_use,
            end_user=sim.end_user,
            note=sim.note,
            labels=list(sim.labels),
            package_id=UUID(sim.package_id) if sim.package_id else None,
            copy_id=UUID(sim.copy_id) if sim.copy_id else None,
            plan=sim.plan,
            group_id=UUID(sim.group_id) if sim.group_id else None,
            data_left_mb=data_left,
            expires_at=expires_at,
            days_left=days_left,
            this_month_mb=sim.usage_month_mb if sim.usage_month == month else Decimal(0),
            suspended_reason=SuspendReason(sim.suspended_reason) if sim.suspended_reason else None,
            system_cause=sim.system_cause,
            cause_cleared=sim.cause_cleared,
            operation_in_flight=dict(sim.in_flight) if sim.in_flight else None,
            order_id=UUID(sim.order_id) if sim.order_id else None,
            service=sim.service,
            customer_service_id=UUID(sim.customer_service_id) if sim.customer_service_id else None,
            version=sim.version,
            updated_at=sim.modified_on,
            in_session="n/a" if sim.in_session is None else "yes" if sim.in_session else "no",
            always_on=sim.always_on,
        )


class SharedGroupView(SharedGroupFields):
    """A shared group's state (``shared_group``): the fields of the list's
    ``SharedGroupSummary``, with its members instead of their count."""

    members: list[str]
    notify_users: bool
    version: int

    @classmethod
    def of(cls, group: SharedGroup) -> SharedGroupView:
        return cls(
            group_id=UUID(group.id),
            name=group.name,
            members=list(group.members),
            package_id=UUID(group.package_id),
            data_mb=group.data_mb,
            data_left_mb=Decimal(0) if group.depleted else group.data_left_mb,
            expires_at=group.expires_at,
            locked=group.locked,
            depleted=group.depleted,
            deleted=group.deleted,
            notify_users=group.notify_users,
            version=group.version,
        )


class HistoryEntry(_Frozen):
    """One event that touched a SIM, from any aggregate (R-ES3)."""

    event: str
    at: datetime
    aggregate: str
    aggregate_id: str
    version: int
    data: dict[str, Any]
    actor: Actor | None = None
    """Who caused the event (R-KY3; ``SimLedger(actor=…)``, ``acting_as``): None when
    nobody was named."""


class ExpiryResult(_Frozen):
    depleted: list[str]
    renewed: list[str]


class UsageResult(_Frozen):
    """A usage batch's answer (R-US1): the records applied, those already counted (before,
    or earlier in the batch), and apart, each refused record's id with the refusing
    error's text, rule id first (a record without a usable ``record_id`` as ``#N``, its
    1-based position in the batch)."""

    applied: int
    duplicates: int
    rejected: dict[str, str]


class RegularGroupView(_Frozen):
    """A regular group's state (``regular_group``, R-RG1..3): its name, its company (None:
    the operator's), its members in the order they joined."""

    group_id: UUID
    name: str
    company: str | None
    members: list[str]
    deleted: bool
    version: int


class SessionResult(_Frozen):
    """A batch of session records' answer (R-SS1), as ``UsageResult``: applied, already
    counted, and each refused record's id with the reason."""

    applied: int
    duplicates: int
    rejected: dict[str, str]
