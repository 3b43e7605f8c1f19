"""Value types shared by the aggregates."""

from __future__ import annotations

from enum import StrEnum


class SimStatus(StrEnum):
    """R-SIM3."""

    NOT_AVAILABLE = "not_available"
    PENDING = "pending"
    BLANK = "blank"
    ACTIVATION_READY = "activation_ready"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    INVALID = "invalid"


class SimType(StrEnum):
    """R-SIM7."""

    PREPAID = "prepaid"
    SUBSCRIPTION = "subscription"
    PAYGO = "paygo"


class SuspendReason(StrEnum):
    """R-SIM6."""

    USER = "user"
    SYSTEM = "system"


class OperationKind(StrEnum):
    """The bulk operations a carrier confirms (R-BK3)."""

    PAUSE = "pause"
    RESUME = "resume"


HOLDING_SERVICE = "holding"
"""The service a SIM delivered against an order sits on until migrated (R-PF3)."""

LABEL_SEPARATOR = ";"
"""Separates a SIM's labels in one CSV field (R-BK4), so no label may contain it."""
