"""What the view queries return: immutable pydantic models built from the view rows.

Columns that depend on the moment of reading are computed here, with the ledger's clock:
``days_left`` from the package's expiry, ``this_month_mb`` (0 unless the SIM's latest
usage is in the current month) and an operation's ``overdue`` count.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from simledger.domain.types import SimStatus, SimType, SuspendReason
from simledger.projections.rows import ZERO, GroupRow, OperationRow, SimRow


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Self:
        """An instance from ``values`` that already have every field's type, as pydantic's
        ``model_construct`` makes it (no validation, every field set) without its per-field
        default handling, which costs most of a page's time (see bench/README.md).
        ``tests/test_views_sims.py`` checks the result equals a validated instance."""
        item = cls.__new__(cls)
        object.__setattr__(item, "__dict__", values)
        object.__setattr__(item, "__pydantic_fields_set__", set(values))
        object.__setattr__(item, "__pydantic_extra__", None)
        object.__setattr__(item, "__pydantic_private__", None)
        return item


def days_left(expires_at: datetime | None, now: datetime) -> int | None:
    """Whole days until ``expires_at``, a started day counting as one; never below 0."""
    if expires_at is None:
        return None
    delta = expires_at - now
    return max(0, delta.days + (1 if delta.seconds else 0))


def this_month(row: SimRow, now: datetime, month: str = "") -> Decimal:
    """The row's MB used in the month of ``now`` (``month``: that month as ``YYYY-MM``,
    when the caller has it already)."""
    return row.usage_month_mb if row.usage_month == (month or now.strftime("%Y-%m")) else ZERO


_STATUSES = {s.value: s for s in SimStatus}
_SIM_TYPES = {t.value: t for t in SimType}
_REASONS = {r.value: r for r in SuspendReason}
"""Enum members by stored value: a dict lookup instead of an ``Enum(value)`` call per row."""


class SimListItem(_Frozen):
    """One row of the SIM list (R-SIM2 columns, in the order of the portal)."""

    iccid: str
    esim: bool
    status: SimStatus
    in_session: str
    operator: str
    plan: str | None
    company: str | None
    end_user: str | None
    data_left_mb: Decimal | None
    days_left: int | None
    this_month_mb: Decimal
    note: str | None
    rules: list[str]
    labels: list[str]
    sim_type: SimType
    group_id: UUID | None
    package_id: UUID | None
    copy_id: UUID | None
    expires_at: datetime | None
    suspended_reason: SuspendReason | None
    version: int
    updated_at: datetime | None
    regular_groups: list[UUID] = []
    """The regular groups the SIM is in (R-RG2)."""
    always_on: bool = False
    """R-AO1."""
    cost_month: Decimal = Decimal(0)
    """PAYGO charges of the month of ``now`` so far (R-PR3)."""

    @classmethod
    def of(cls, row: SimRow, now: datetime, month: str = "") -> SimListItem:
        """The item for a view row. Built without validation (``model_construct``): every
        value is converted to its field's type right here, from a row the views wrote, and
        validating a page of 100 items was half the time of a ``sims()`` call."""
        return cls._trusted(
            dict(
                iccid=row.iccid,
                esim=row.esim,
                status=_STATUSES[row.status],
                in_session=row.in_session,
                operator=row.operator,
                plan=row.plan,
                company=row.company,
                end_user=row.end_user,
                data_left_mb=row.data_left_mb,
                days_left=days_left(row.expires_at, now),
                this_month_mb=this_month(row, now, month),
                note=row.note,
                rules=list(row.rules),
                labels=list(row.labels),
                sim_type=_SIM_TYPES[row.sim_type],
                group_id=UUID(row.group_id) if row.group_id else None,
                package_id=UUID(row.package_id) if row.package_id else None,
                copy_id=UUID(row.copy_id) if row.copy_id else None,
                expires_at=row.expires_at,
                suspended_reason=_REASONS[row.suspended_reason] if row.suspended_reason else None,
                version=row.version,
                updated_at=row.updated_at,
                regular_groups=[UUID(g) for g in row.regular_groups],
                always_on=row.always_on,
                cost_month=row.cost_month
                if row.usage_month == (month or now.strftime("%Y-%m"))
                else Decimal(0),
            )
        )


class Page(_Frozen):
    """One page of the SIM list: ``next_cursor`` is None on the last page; ``total`` counts
    every SIM the filters select, on every page."""

    items: list[SimListItem]
    next_cursor: str | None
    total: int


class PendingActivity(_Frozen):
    """One bulk operation of the pending activity list (R-BK3)."""

    operation_id: UUID
    kind: str
    requested_at: datetime
    deadline: datetime
    requested: int
    confirmed: int
    refused: int
    pending: int
    overdue: int

    @classmethod
    def of(cls, row: OperationRow, now: datetime) -> PendingActivity:
        pending = row.pending
        return cls(
            operation_id=UUID(row.operation_id),
            kind=row.kind,
            requested_at=row.requested_at,
            deadline=row.deadline,
            requested=row.requested,
            confirmed=row.confirmed,
            refused=row.refused,
            pending=pending,
            overdue=pending if now >= row.deadline else 0,
        )


class SharedGroupFields(_Frozen):
    """What every answer about a shared group holds: the list's ``SharedGroupSummary`` and
    the ledger's ``SharedGroupView`` (application/results.py) add their own fields."""

    group_id: UUID
    name: str
    package_id: UUID
    data_mb: Decimal
    data_left_mb: Decimal
    expires_at: datetime | None
    locked: bool
    depleted: bool
    deleted: bool


class SharedGroupSummary(SharedGroupFields):
    """One shared group of ``shared_groups()``."""

    member_count: int
    package_name: str

    @classmethod
    def of(cls, row: GroupRow) -> SharedGroupSummary:
        return cls(
            group_id=UUID(row.group_id),
            name=row.name,
            member_count=row.member_count,
            package_id=UUID(row.package_id),
            package_name=row.package_name,
            data_mb=row.data_mb,
            data_left_mb=row.data_left_mb,
            expires_at=row.expires_at,
            locked=row.locked,
            depleted=row.depleted,
            deleted=row.deleted,
        )


class RowDiff(_Frozen):
    """A row where the live view and a rebuild from the events disagree (``verify``)."""

    view: str
    key: str
    live: dict[str, object] | None
    rebuilt: dict[str, object] | None
