"""The rows of the read models, as the projections fold them and the stores keep them.

Plain mutable dataclasses (``slots``): a batch's fold copies the rows it touches and
changes the copies; the stores turn them into table rows. Values that depend on *when*
the view is read (days left, this month's MB, whether an operation is overdue) are not
stored: :mod:`simledger.projections.models` computes them with the ledger's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal

NOT_KNOWN = "n/a"
"""R-SIM2 "in session": yes / no / n/a; n/a until the SIM's integration reports a session
(R-SS2)."""

ZERO = Decimal(0)


@dataclass(slots=True)
class SimRow:
    """One SIM of the SIM list view: every R-SIM2 column plus what the fold needs."""

    iccid: str
    esim: bool
    status: str
    operator: str
    sim_type: str
    in_session: str = NOT_KNOWN
    plan: str | None = None
    company: str | None = None
    end_user: str | None = None
    data_left_mb: Decimal | None = None
    expires_at: datetime | None = None
    usage_month: str | None = None
    """``YYYY-MM`` of the SIM's latest usage; ``usage_month_mb`` is that month's total."""
    usage_month_mb: Decimal = ZERO
    note: str | None = None
    rules: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    group_id: str | None = None
    package_id: str | None = None
    copy_id: str | None = None
    """The SIM's own package copy; its events change ``data_left_mb`` and ``expires_at``."""
    copy_left_mb: Decimal | None = None
    """The copy's balance; ``data_left_mb`` shows 0 instead while the copy is depleted."""
    copy_depleted: str | None = None
    """Why the copy is depleted (``data`` or ``expired``), None while it is not."""
    suspended_reason: str | None = None
    version: int = 0
    updated_at: datetime | None = None
    regular_groups: list[str] = field(default_factory=list)
    """The ids of the regular groups the SIM is in (R-RG2), in the order it joined them."""
    always_on: bool = False
    """R-AO1."""
    cost_month: Decimal = ZERO
    """PAYGO charges of ``usage_month`` (R-PR3): reset with it."""

    def counted_as(self) -> tuple[str, str, str, str]:
        """The key of the per-combination SIM counts (``total`` without a scan)."""
        return (self.status, self.sim_type, self.operator, self.company or "")


@dataclass(slots=True)
class GroupRow:
    """One shared group (R-SG1..4): its pool, its size, and whether it is locked."""

    group_id: str
    name: str
    package_id: str
    package_name: str
    data_mb: Decimal
    data_left_mb: Decimal
    expires_at: datetime | None
    member_count: int = 0
    depleted: bool = False
    deleted: bool = False
    version: int = 0

    @property
    def locked(self) -> bool:
        """R-SG3: no change until the pool is depleted (a deleted group is not locked)."""
        return not self.depleted and not self.deleted


@dataclass(slots=True)
class OperationRow:
    """One bulk pause or resume (R-BK3) and its carriers' answers so far."""

    operation_id: str
    kind: str
    requested_at: datetime
    deadline: datetime
    requested: int
    confirmed: int = 0
    refused: int = 0

    @property
    def pending(self) -> int:
        return self.requested - self.confirmed - self.refused


SIM_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SimRow))
GROUP_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(GroupRow))
OPERATION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(OperationRow))
