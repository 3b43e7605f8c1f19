"""What the ledger's commands and queries return: validated, immutable value objects."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from simledger.domain.types import SimStatus, SimType, SuspendReason


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


class SharedGroupView(_Frozen):
    group_id: UUID
    name: str
    members: list[str]
    package_id: UUID
    data_mb: Decimal
    data_left_mb: Decimal
    expires_at: datetime | None
    locked: bool
    depleted: bool
    deleted: bool
    notify_users: bool
    version: int


class HistoryEntry(_Frozen):
    """One event that touched a SIM, from any aggregate (R-ES3)."""

    event: str
    at: datetime
    aggregate: str
    aggregate_id: str
    version: int
    data: dict[str, Any]


class ExpiryResult(_Frozen):
    depleted: list[str]
    renewed: list[str]
