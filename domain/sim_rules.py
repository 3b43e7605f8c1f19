"""Rules on a SIM (R-RU1..5), PAYGO charges (R-PR3) and prepaid auto-refill (R-PP1, R-PP2).

A rule is attached by name to one SIM (or to every SIM of a company or a shared group: the
application attaches it to each of them, so a SIM's rules are in its own events and every
usage path sees them without loading anything more). The rules act *at the usage record*:
:func:`check_usage` is asked before a record draws anything, :func:`after_usage` right after
the SIM's ``UsageRecorded``, in the same fold and the same save, so the record that crosses
a cap is the one that pauses the SIM (cause ``rule``, R-SIM6), not a later check.

The events are the SIM's (subclasses of ``Sim.Event``), kept here so that sim.py stays the
lifecycle; their topics are this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from simledger.domain.contract import OperatorContract
from simledger.domain.errors import InvalidInput, NotPrepaid, PausedByRule, UnknownRule
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.types import SimStatus, SimType, SuspendReason

DATA_CAP = "data_cap"
"""MB used in a calendar month (UTC); the record that reaches it pauses the SIM."""
SPEND_CAP = "spend_cap"
"""PAYGO charges in a calendar month; the record whose charge reaches it pauses the SIM."""
ALERT = "alert"
"""An event when a percentage of the data cap, the spend cap or the package is used."""
KINDS = (DATA_CAP, SPEND_CAP, ALERT)
ALERT_OF = (DATA_CAP, SPEND_CAP, "package")
RULE_CAUSE = "rule"
"""The system pause's cause (R-SIM6) when a rule paused the SIM."""


# ---- events -------------------------------------------------------------------------------
class RuleAttached(Sim.Event):
    """A rule set on the SIM (a new one, or a new limit for the rule of that name)."""

    name: str
    kind: str
    limit: Decimal | None
    percent: int | None
    of: str | None
    scope: str
    """``sim``, ``company:NAME`` or ``group:ID``: what the rule was attached to."""

    def apply(self, sim: Sim) -> None:
        rule = {"kind": self.kind, "limit": self.limit, "percent": self.percent, "of": self.of}
        sim.rules = {**sim.rules, self.name: {**rule, "scope": self.scope}}


class RuleDetached(Sim.Event):
    name: str

    def apply(self, sim: Sim) -> None:
        sim.rules = {k: v for k, v in sim.rules.items() if k != self.name}


class RuleTriggered(Sim.Event):
    """A rule acted at a usage record: ``action`` is ``pause`` or ``alert`` (R-RU4, R-RU5)."""

    rule: str
    kind: str
    action: str
    at: datetime
    """The time of the usage record that crossed it."""
    used: Decimal
    limit: Decimal
    key: str
    """What it fired for (the month, or the package period): an alert fires once a key."""

    def apply(self, sim: Sim) -> None:
        if self.action == "alert":
            sim.alerted = {**sim.alerted, self.rule: self.key}
        else:
            sim.rule_pause = {"rule": self.rule, "at": self.at, "month": self.at.strftime("%Y-%m")}


class UsageCharged(Sim.Event):
    """A PAYGO record priced with its operator's price list in force at ``at`` (R-PR3)."""

    mb: Decimal
    at: datetime
    country: str | None
    price_per_mb: Decimal
    amount: Decimal
    company: str | None
    """The SIM's company when the record was charged: whose charges it is (the export)."""

    def apply(self, sim: Sim) -> None:
        if self.at.strftime("%Y-%m") == sim.usage_month:  # its UsageRecorded came first
            sim.cost_month += self.amount


class AutoRefillSet(Sim.Event):
    amount: Decimal | None
    """None: auto-refill switched off."""
    threshold: Decimal | None

    def apply(self, sim: Sim) -> None:
        if self.amount is None or self.threshold is None:
            sim.auto_refill = None
        else:
            sim.auto_refill = {"amount": self.amount, "threshold": self.threshold}


class AutoRefilled(Sim.Event):
    """The prepaid balance refilled by the SIM's auto-refill at a usage record (R-PP1):
    a top-up (``Sim.ToppedUp`` is a recorded class, so not its subclass)."""

    mb: Decimal
    threshold: Decimal

    def apply(self, sim: Sim) -> None:
        sim.topped_up_mb += self.mb
        sim.last_refill_at = self.timestamp


class DeactivatedByContract(Sim.Event):
    """No refill for the operator contract's inactivity period (R-PP2): the system pause
    with cause ``contract`` that follows names it."""

    days: int
    last_refill_at: datetime | None


# ---- rules --------------------------------------------------------------------------------
def rule_paused(sim: Sim) -> bool:
    """Paused by the system for a rule, the cause not cleared (R-RU3, R-SIM6)."""
    return (
        sim.status is SimStatus.SUSPENDED
        and sim.suspended_reason is SuspendReason.SYSTEM
        and sim.system_cause == RULE_CAUSE
        and not sim.cause_cleared
    )


def check_usage(sim: Sim, at: datetime) -> None:
    """Before a record draws anything: the lifecycle (R-SIM4), and R-RU3: a SIM its rule
    paused takes no record from the moment of the pause on (a record from before it, late,
    happened before the SIM was stopped, and counts)."""
    sim.check_usage()
    if sim.rule_pause is not None and rule_paused(sim) and at >= sim.rule_pause["at"]:
        raise PausedByRule(sim.id, sim.rule_pause["rule"])


def attach(sim: Sim, name: str, rule: Mapping[str, Any], scope: str) -> None:
    """R-RU1 (checked by the caller); a new limit above the month's use lifts the pause
    the rule made (R-RU4)."""
    sim.trigger_event(
        RuleAttached,
        name=name,
        kind=rule["kind"],
        limit=rule.get("limit"),
        percent=rule.get("percent"),
        of=rule.get("of"),
        scope=scope,
    )
    if _paused_by(sim, name) and _used(sim, sim.rules[name]) < (rule.get("limit") or 0):
        lift(sim, f"rule {name} raised")


def detach(sim: Sim, name: str) -> None:
    """R-RU2: only a rule the SIM has; detaching the rule that paused it lifts the pause."""
    if name not in sim.rules:
        raise UnknownRule(sim.id, name)
    sim.trigger_event(RuleDetached, name=name)
    if _paused_by(sim, name):
        lift(sim, f"rule {name} detached")


def lift(sim: Sim, by: str) -> None:
    """The rule's pause cleared (R-SIM6); the SIM works again unless its user paused it."""
    sim.clear_system_pause(by=by)
    if not sim.user_paused:
        sim.resume_by_system()


def _paused_by(sim: Sim, name: str) -> bool:
    return rule_paused(sim) and sim.rule_pause is not None and sim.rule_pause["rule"] == name


def _used(sim: Sim, rule: Mapping[str, Any]) -> Decimal:
    return sim.cost_month if rule["kind"] == SPEND_CAP else sim.usage_month_mb


def after_usage(
    sim: Sim,
    mb: Decimal,
    at: datetime,
    country: str | None,
    pool: Package | SharedGroup | None,
    contract: OperatorContract | None,
) -> bool:
    """What follows a usage record on the SIM, right after its ``UsageRecorded``: the
    PAYGO charge (R-PR3), the alerts (R-RU5), the caps (R-RU4), the auto-refill (R-PP1).
    True when an auto-refill topped up the SIM's own copy."""
    if sim.sim_type is SimType.PAYGO and contract is not None:
        price = contract.price_per_mb(country, at)
        if price is not None:
            sim.trigger_event(
                UsageCharged,
                mb=mb,
                at=at,
                country=country,
                price_per_mb=price,
                amount=mb * price,
                company=sim.company,
            )
    if sim.rules:  # most SIMs have none: nothing more per record (the hot path)
        month = at.strftime("%Y-%m")
        if month == sim.usage_month:  # a late record of an earlier month: no rule
            _alerts(sim, at, month, pool)
            _caps(sim, at, month)
    return sim.auto_refill is not None and _auto_refill(sim, pool)


def _alerts(sim: Sim, at: datetime, month: str, pool: Package | SharedGroup | None) -> None:
    for name, rule in list(sim.rules.items()):
        if rule["kind"] != ALERT:
            continue
        of = rule["of"]
        if of == "package":
            if pool is None or pool.data_mb <= 0:
                continue
            limit, used = pool.data_mb, pool.data_mb - pool.data_left_mb
            key = f"{pool.id}:{pool.expires_at.isoformat() if pool.expires_at else ''}"
        else:
            caps = [r["limit"] for r in sim.rules.values() if r["kind"] == of]
            if not caps:
                continue
            limit, used, key = min(caps), _used(sim, {"kind": of}), month
        if sim.alerted.get(name) == key or used * 100 < limit * rule["percent"]:
            continue
        sim.trigger_event(
            RuleTriggered,
            rule=name,
            kind=ALERT,
            action="alert",
            at=at,
            used=used,
            limit=limit * rule["percent"] / 100,
            key=key,
        )


def _caps(sim: Sim, at: datetime, month: str) -> None:
    if sim.suspended_reason is SuspendReason.SYSTEM and not sim.cause_cleared:
        # Paused by the system already (by a rule, or for an empty package: a late record
        # of a suspended SIM still counts): that pause holds it; once its cause is cleared,
        # the first record over the cap pauses it for the rule.
        return
    for name, rule in list(sim.rules.items()):
        if rule["kind"] not in (DATA_CAP, SPEND_CAP):
            continue
        used = _used(sim, rule)
        if used < rule["limit"]:
            continue
        sim.trigger_event(
            RuleTriggered,
            rule=name,
            kind=rule["kind"],
            action="pause",
            at=at,
            used=used,
            limit=rule["limit"],
            key=month,
        )
        sim.suspend_by_system(RULE_CAUSE)
        return


def _auto_refill(sim: Sim, pool: Package | SharedGroup | None) -> bool:
    refill = sim.auto_refill
    if (
        refill is None
        or not isinstance(pool, Package)
        or pool.iccid != sim.id
        or pool.data_left_mb >= refill["threshold"]
    ):
        return False
    pool.top_up(refill["amount"])  # the copy's event first, as the top-up command does
    sim.trigger_event(AutoRefilled, mb=refill["amount"], threshold=refill["threshold"])
    return True


def set_auto_refill(sim: Sim, amount: Decimal | None, threshold: Decimal | None) -> None:
    """R-PP1: only a prepaid SIM refills."""
    if sim.sim_type is not SimType.PREPAID:
        raise NotPrepaid(
            f"SIM {sim.id} is {sim.sim_type.value}; only prepaid SIMs auto-refill", rule="R-PP1"
        )
    sim.trigger_event(AutoRefillSet, amount=amount, threshold=threshold)


def deactivate_if_inactive(sim: Sim, now: datetime, days: int) -> bool:
    """R-PP2: a prepaid SIM in service with no refill (nor, never refilled, since it was
    received) for ``days`` is paused by the system with cause ``contract``. True if so."""
    if sim.sim_type is not SimType.PREPAID or sim.status not in (
        SimStatus.ACTIVE,
        SimStatus.SUSPENDED,
    ):
        return False
    if sim.system_cause == "contract" and not sim.cause_cleared:
        return False
    since = sim.last_refill_at or sim.created_on
    if (now - since).total_seconds() < days * 86400:
        return False
    sim.trigger_event(DeactivatedByContract, days=days, last_refill_at=sim.last_refill_at)
    sim.suspend_by_system("contract")
    return True


def check_rule(
    kind: str, limit: Decimal | None, percent: int | None, of: str | None
) -> dict[str, Any]:
    """R-RU1: a known kind; a cap has a positive limit; an alert a percentage (1-100) of a
    data cap, a spend cap or the package."""
    if kind not in KINDS:
        raise InvalidInput(f"a rule's kind is one of {', '.join(KINDS)}: {kind!r}", rule="R-RU1")
    if kind == ALERT:
        if percent is None or not 1 <= percent <= 100:
            raise InvalidInput("an alert needs a percent from 1 to 100", rule="R-RU1")
        if of not in ALERT_OF:
            raise InvalidInput(f"an alert is of one of {', '.join(ALERT_OF)}", rule="R-RU1")
        return {"kind": kind, "limit": None, "percent": percent, "of": of}
    if limit is None or limit <= 0:
        raise InvalidInput(f"a {kind} needs a positive limit", rule="R-RU1")
    return {"kind": kind, "limit": limit, "percent": None, "of": None}
