"""domain/sim_rules.py without a store: the contract period (R-PP2), the cap at the record
that reaches it (R-RU4), alerts once (R-RU5)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from helpers import T0, active_sim_aggregate

from simledger.domain import sim_rules
from simledger.domain.types import SimStatus, SimType


def test_r_pp2_a_refill_restarts_the_contract_period() -> None:
    sim = active_sim_aggregate(1)
    sim.sim_type = SimType.PREPAID
    now = sim.created_on + timedelta(days=100)
    sim.last_refill_at = now - timedelta(days=10)  # as a ToppedUp event recorded then
    assert not sim_rules.deactivate_if_inactive(sim, now, 30)
    assert sim_rules.deactivate_if_inactive(sim, now + timedelta(days=21), 30)
    assert sim.system_cause == "contract" and sim.status is SimStatus.SUSPENDED


def test_r_ru4_the_record_reaching_the_cap_pauses_and_r_ru5_alerts_once() -> None:
    sim = active_sim_aggregate(1)
    sim_rules.attach(sim, "cap", sim_rules.check_rule("data_cap", Decimal(10), None, None), "sim")
    sim_rules.attach(sim, "a", sim_rules.check_rule("alert", None, 50, "data_cap"), "sim")
    for n, mb in enumerate((4, 1, 1, 4)):  # 4, 5 (alert), 6, 10 (cap)
        at = T0 + timedelta(minutes=n)
        sim_rules.check_usage(sim, at)
        sim.record_usage(Decimal(mb), at, None)
        sim_rules.after_usage(sim, Decimal(mb), at, None, None, None)
    triggered = [e for e in sim.collect_events() if isinstance(e, sim_rules.RuleTriggered)]
    assert [(e.rule, e.used) for e in triggered] == [("a", Decimal(5)), ("cap", Decimal(10))]
    assert sim_rules.rule_paused(sim)
