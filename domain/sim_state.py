"""The state a SIM holds for its rules, charges and refills (domain/sim_rules.py), apart
from sim.py: a new SIM starts with it, and the snapshot of a SIM taken before it existed
(class version 1) is upcast to it (ARCHITECTURE.md, "Event versions")."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any


class RuleState:
    """The attributes' types, a base of ``Sim`` (declared here, not as dataclass fields of
    the aggregate: ``Sim.__init__`` sets them from :func:`rule_state`)."""

    rules: dict[str, dict[str, Any]]
    rule_pause: dict[str, Any] | None
    alerted: dict[str, str]
    auto_refill: dict[str, Decimal] | None
    cost_month: Decimal
    last_refill_at: datetime | None


def rule_state() -> dict[str, Any]:
    """The attributes, each a fresh value: ``rules`` by name; ``rule_pause`` (the rule, the
    record's time and month) while a rule's pause holds; ``alerted`` (rule -> what it
    fired for); ``auto_refill`` (amount, threshold); ``cost_month`` (PAYGO charges of
    ``usage_month``); ``last_refill_at``."""
    return {
        "rules": {},
        "rule_pause": None,
        "alerted": {},
        "auto_refill": None,
        "cost_month": Decimal(0),
        "last_refill_at": None,
    }


def upcast_v1_v2(state: dict[str, Any]) -> None:
    """A version-1 SIM snapshot had none of it."""
    for name, value in rule_state().items():
        state.setdefault(name, value)
