"""PAYGO prices per operator contract, versioned in time (R-PR1..3), the month's charges and
their CSV, prepaid auto-refill (R-PP1) and deactivation after the contract's period with no
refill (R-PP2). On every event store."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from helpers import COMPANY, OPERATOR, T0, event_count, ready_sim

from simledger import InvalidInput, NotPrepaid, SimLedger, SimStatus, SimType


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env


def sim_events(ledger: SimLedger, key: str) -> list[str]:
    return [h.event for h in ledger.history(key) if h.aggregate == "Sim"]


# --------------------------------------------------------------------------- R-PR1..3


def test_r_pr2_a_record_is_priced_with_the_version_in_force_at_its_at(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, sim_type=SimType.PAYGO)
    ledger.record_usage(key, 5, at=T0 - timedelta(days=1))  # before any version: not charged
    ledger.set_prices(
        OPERATOR, default_per_mb="0.10", per_country={"fr": "0.30"}, effective_from=T0
    )
    later = T0 + timedelta(days=3)
    ledger.set_prices(OPERATOR, default_per_mb="0.20", effective_from=later)
    ledger.record_usage(key, 10, at=T0 + timedelta(hours=1), country="FR")  # 3.00
    ledger.record_usage(key, 10, at=T0 + timedelta(hours=2))  # 1.00
    ledger.record_usage(key, 10, at=later + timedelta(hours=1), country="FR")  # 2.00 (v2)
    ledger.record_usage(key, 1, at=T0 + timedelta(hours=3))  # late, v1: 0.10
    statement = ledger.month_charges(COMPANY, "2024-01")
    assert [line.amount for line in statement.lines] == [
        Decimal("3.00"),
        Decimal("1.00"),
        Decimal("2.00"),
        Decimal("0.10"),
    ]
    assert statement.total == Decimal("6.10")
    [item] = ledger.sims(limit=10).items
    assert item.cost_month == Decimal("6.10")
    rows = list(csv.reader(io.StringIO(ledger.export_charges_csv(COMPANY, "2024-01"))))
    assert rows[0] == ["iccid", "at", "country", "mb", "price_per_mb", "amount"]
    assert rows[-1][0] == "total" and Decimal(rows[-1][-1]) == statement.total
    assert sum(Decimal(r[-1]) for r in rows[1:-1]) == statement.total
    assert ledger.month_charges(COMPANY, "2024-02").total == 0
    assert ledger.month_charges("Other Co", "2024-01").lines == []


def test_r_pr2_a_version_never_starts_in_the_past_of_the_latest(ledger: SimLedger) -> None:
    ledger.set_prices(OPERATOR, default_per_mb=1, effective_from=T0)
    before = event_count(ledger)
    with pytest.raises(InvalidInput) as refused:
        ledger.set_prices(OPERATOR, default_per_mb=2, effective_from=T0)
    assert refused.value.rule == "R-PR2"
    assert event_count(ledger) == before


def test_r_pr1_bad_prices_are_refused(ledger: SimLedger) -> None:
    for bad in (
        dict(default_per_mb=-1),
        dict(default_per_mb=1, per_country={"FRA": 1}),
        dict(default_per_mb=1, per_country={"FR": -1}),
        dict(default_per_mb=1, per_country=["FR"]),
    ):
        with pytest.raises(InvalidInput) as refused:
            ledger.set_prices(OPERATOR, **bad)
        assert refused.value.rule == "R-PR1", bad
    with pytest.raises(InvalidInput, match="R-PR3"):
        ledger.month_charges(COMPANY, "January")
    assert event_count(ledger) == 0


def test_r_pr3_only_paygo_sims_are_charged(ledger: SimLedger) -> None:
    ledger.set_prices(OPERATOR, default_per_mb=1, effective_from=T0)
    key = ready_sim(ledger, 1)  # subscription
    ledger.record_usage(key, 10, at=T0 + timedelta(hours=1))
    assert "UsageCharged" not in sim_events(ledger, key)
    assert ledger.month_charges(COMPANY, "2024-01").total == 0


# --------------------------------------------------------------------------- R-PP1


def test_r_pp1_auto_refill_keeps_a_prepaid_sim_working(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, sim_type=SimType.PREPAID, data_mb=100)
    ledger.set_auto_refill(key, amount=500, threshold=20)
    ledger.record_usage(key, 70, at=T0)  # 30 left: above the threshold
    assert "AutoRefilled" not in sim_events(ledger, key)
    ledger.record_usage(key, 30, at=T0 + timedelta(minutes=1))  # empties it: refilled
    names = sim_events(ledger, key)
    assert names[-2:] == ["UsageRecorded", "AutoRefilled"]
    assert ledger.sim(key).status is SimStatus.ACTIVE
    [item] = ledger.sims(limit=10).items
    assert item.data_left_mb == 500
    ledger.set_auto_refill(key, amount=None)
    ledger.record_usage(key, 500, at=T0 + timedelta(minutes=2))
    assert ledger.sim(key).status is SimStatus.SUSPENDED  # no refill: depleted


def test_r_pp1_only_prepaid_sims_auto_refill(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    before = event_count(ledger)
    with pytest.raises(NotPrepaid) as refused:
        ledger.set_auto_refill(key, amount=100, threshold=10)
    assert refused.value.rule == "R-PP1"
    assert event_count(ledger) == before
    prepaid = ready_sim(ledger, 2, sim_type=SimType.PREPAID)
    before = event_count(ledger)
    with pytest.raises(InvalidInput, match="R-PP1"):
        ledger.set_auto_refill(prepaid, amount=0, threshold=10)
    assert event_count(ledger) == before


# --------------------------------------------------------------------------- R-PP2


def test_r_pp2_no_refill_for_the_period_deactivates(ledger: SimLedger) -> None:
    # The period counts from the events' recording times (the store's clock, R-PP2).
    idle = ready_sim(ledger, 1, sim_type=SimType.PREPAID, validity_days=3650)
    ready_sim(ledger, 2, validity_days=3650)  # a subscription: never deactivated so
    ledger.set_inactivity_period(OPERATOR, 1095)  # three years
    now = datetime.now(UTC)
    assert ledger.run_contracts(now + timedelta(days=1094)).deactivated == []
    result = ledger.run_contracts(now + timedelta(days=1096))
    assert result.deactivated == [idle]
    sim = ledger.sim(idle)
    assert sim.status is SimStatus.SUSPENDED
    assert sim_events(ledger, idle)[-2:] == ["DeactivatedByContract", "SuspendedBySystem"]
    assert ledger.run_contracts(now + timedelta(days=1097)).deactivated == []  # once
    answer = ledger.resume([idle])
    assert "R-SIM6" in answer.rejected[idle]
    ledger.top_up(idle, 10)  # a top-up does not bring it back: the operator does
    assert ledger.sim(idle).status is SimStatus.SUSPENDED
    ledger.clear_system_pause(idle)
    assert idle in ledger.resume([idle]).accepted


def test_r_pp2_bad_periods_are_refused(ledger: SimLedger) -> None:
    for bad in (0, -5, 1.5):
        with pytest.raises(InvalidInput, match="R-PP2"):
            ledger.set_inactivity_period(OPERATOR, bad)
    assert event_count(ledger) == 0
