"""The usage fold without a store (domain/usage.py, R-US1, R-US2): the checks of a record,
the time order, and a copy emptied by the third of four records."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from helpers import T0, active_sim_aggregate, iccid

from simledger import SimledgerError, SimStatus, UsageRecord
from simledger.domain.package import Package
from simledger.domain.usage import CheckedRecord, UsageFold, checked, in_order, record_id_of
from simledger.domain.usage_receipt import UsageReceipt, receipt_id


def test_checked_gives_clean_values_and_names_the_rule_of_each_bad_one() -> None:
    clean = checked(UsageRecord("r", iccid(1), "2.50", "2026-01-01T00:00:00Z", " FR "), "r")
    assert (clean.iccid, clean.mb, clean.at.utcoffset(), clean.country) == (
        iccid(1),
        Decimal("2.50"),
        timedelta(0),
        "FR",
    )
    assert checked({"record_id": "r", "iccid": iccid(1), "mb": 1, "at": T0}, "r").country is None

    def rule(**change: object) -> str:
        raw = {"record_id": "r", "iccid": iccid(1), "mb": 1, "at": T0, **change}
        with pytest.raises(SimledgerError) as refused:
            checked(raw, "r")
        return refused.value.rule

    assert rule(mb=-1) == "R-PK2"  # not a positive amount
    assert rule(mb="x") == "R-IN2"  # not a number at all (the domain of values)
    assert rule(iccid="89") == "R-SIM1"
    assert rule(at=None) == rule(at="soon") == rule(country=3) == "R-US1"
    assert rule(at=T0.replace(tzinfo=None)) == "R-ES3"
    with pytest.raises(SimledgerError) as refused:
        record_id_of({"record_id": "  "})
    assert refused.value.rule == "R-US1"


def test_in_order_sorts_by_time_then_record_id() -> None:
    def one(record_id: str, minute: int) -> CheckedRecord:
        return CheckedRecord(record_id, iccid(1), Decimal(1), T0 + timedelta(minutes=minute), None)

    records = [one("b", 1), one("c", 0), one("a", 1)]
    assert [r.record_id for r in in_order(records)] == ["c", "a", "b"]


def test_the_fold_pauses_a_sim_once_at_the_record_that_emptied_its_copy() -> None:
    sim = active_sim_aggregate(1)
    copy = Package.create(
        str(uuid4()), name="p", data_mb=Decimal(10), validity_days=30, auto_renew=False, price=None
    ).copy_for(str(uuid4()), sim.id, T0)
    sim.copy_id = copy.id
    copy.collect_events()
    fold = UsageFold({sim.id: sim}, {copy.id: copy}, {})
    for n, mb in enumerate((4, 4, 4, 4)):
        fold.apply(CheckedRecord(f"r{n}", sim.id, Decimal(mb), T0 + timedelta(minutes=n), None))
    sim_events = [type(e).__name__ for e in sim.collect_events()]
    assert sim_events == ["UsageRecorded"] * 3 + ["SuspendedBySystem", "UsageRecorded"]
    assert [type(e).__name__ for e in copy.collect_events()] == ["UsageDrawn"] * 3 + ["Depleted"]
    assert sim.status is SimStatus.SUSPENDED and fold.changed == [copy, sim]


def test_a_receipt_id_is_derived_from_the_record_id_alone() -> None:
    receipt = UsageReceipt.issue("cdr-9", iccid(1), Decimal(3), T0)
    assert receipt.id == receipt_id("cdr-9") != receipt_id("cdr-10")
    assert (receipt.record_id, receipt.mb) == ("cdr-9", Decimal(3))
