"""Rules on SIMs (R-RU1..5): a monthly data cap that pauses the SIM at the record that
crosses it (every usage path: one record, a batch, a shared pool's draw), alerts, a PAYGO
spend cap, the SIM list's rules column, and resume only once the cause is cleared
(R-SIM6). On every event store."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from helpers import COMPANY, T0, FakeClock, event_count, lined_sims, make_package, ready_sim

from simledger import InvalidInput, SimLedger, SimStatus, SimType, SuspendReason
from simledger.domain.errors import PausedByRule, UnknownRule


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env


def events(ledger: SimLedger, key: str) -> list[tuple[str, dict[str, object]]]:
    return [(h.event, h.data) for h in ledger.history(key) if h.aggregate == "Sim"]


def row(ledger: SimLedger, key: str) -> object:
    [item] = [i for i in ledger.sims(limit=1000).items if i.iccid == key]
    return item


# --------------------------------------------------------------------------- R-RU4 caps


def test_r_ru4_data_cap_pauses_at_the_record_that_crosses_it(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    ledger.attach_rule("cap-100", kind="data_cap", limit=100, iccid=key)
    ledger.record_usage(key, 60, at=T0)
    assert ledger.sim(key).status is SimStatus.ACTIVE
    ledger.record_usage(key, 50, at=T0 + timedelta(minutes=1))  # 110 >= 100: this one
    sim = ledger.sim(key)
    assert sim.status is SimStatus.SUSPENDED
    assert sim.suspended_reason is SuspendReason.SYSTEM
    names = [name for name, _ in events(ledger, key)]
    # the pause is in the same save, right after the record that crossed the cap
    i = names.index("UsageRecorded", names.index("UsageRecorded") + 1)
    assert names[i + 1 : i + 3] == ["RuleTriggered", "SuspendedBySystem"]
    triggered = dict(events(ledger, key))["RuleTriggered"]
    assert triggered["rule"] == "cap-100" and triggered["action"] == "pause"
    assert dict(events(ledger, key))["SuspendedBySystem"]["cause"] == "rule"
    item = row(ledger, key)
    assert item.rules == ["cap-100"] and item.status is SimStatus.SUSPENDED  # type: ignore[attr-defined]


def test_r_ru4_batch_and_shared_pool_pause_at_the_crossing_record(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    ledger.attach_rule("cap", kind="data_cap", limit=100, iccid=key)
    result = ledger.record_usage_batch(
        [
            {"record_id": f"r{n}", "iccid": key, "mb": 40, "at": T0 + timedelta(minutes=n)}
            for n in range(5)
        ]
    )
    # r0, r1 (80), r2 crosses (120); r3, r4 come after the pause: refused (R-RU3)
    assert result.applied == 3 and set(result.rejected) == {"r3", "r4"}
    assert "R-RU3" in result.rejected["r3"]
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    # a shared group's member: the draw of the group's pool
    members = lined_sims(ledger, 2, start=10)
    group = ledger.create_shared_group("fleet", members, make_package(ledger, data_mb=10_000))
    for member in members:
        ledger.activate(member)
    ledger.attach_rule("cap", kind="data_cap", limit=50, group_id=group)
    ledger.record_usage(members[0], 30, at=T0)
    ledger.record_usage(members[0], 30, at=T0 + timedelta(minutes=1))
    assert ledger.sim(members[0]).status is SimStatus.SUSPENDED
    assert ledger.sim(members[1]).status is SimStatus.ACTIVE
    assert ledger.shared_group(group).data_left_mb == 10_000 - 60


def test_r_ru4_resume_needs_the_cause_cleared(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    ledger.attach_rule("cap", kind="data_cap", limit=10, iccid=key)
    ledger.record_usage(key, 20, at=T0)
    result = ledger.resume([key])
    assert key in result.rejected and "R-SIM6" in result.rejected[key]
    # raising the cap above the month's use clears the cause: the SIM works again
    ledger.attach_rule("cap", kind="data_cap", limit=100, iccid=key)
    assert ledger.sim(key).status is SimStatus.ACTIVE
    ledger.record_usage(key, 90, at=T0 + timedelta(minutes=2))  # 110: paused again
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    ledger.detach_rule("cap", iccid=key)
    assert ledger.sim(key).status is SimStatus.ACTIVE
    assert row(ledger, key).rules == []  # type: ignore[attr-defined]


def test_r_ru3_no_usage_after_a_rule_pause_but_earlier_late_records_count(
    ledger: SimLedger,
) -> None:
    key = ready_sim(ledger, 1)
    ledger.attach_rule("cap", kind="data_cap", limit=10, iccid=key)
    ledger.record_usage(key, 20, at=T0 + timedelta(hours=1))
    before = event_count(ledger)
    with pytest.raises(PausedByRule) as refused:
        ledger.record_usage(key, 1, at=T0 + timedelta(hours=2))
    assert refused.value.rule == "R-RU3"
    assert event_count(ledger) == before
    ledger.record_usage(key, 1, at=T0)  # before the pause: it happened, it counts
    assert row(ledger, key).this_month_mb == 21  # type: ignore[attr-defined]


def test_r_ru4_a_new_month_lifts_the_pause(ledger: SimLedger, clock: FakeClock) -> None:
    key = ready_sim(ledger, 1, validity_days=90)
    ledger.attach_rule("cap", kind="data_cap", limit=10, iccid=key)
    ledger.record_usage(key, 20, at=T0)
    same_month = ledger.run_contracts(T0 + timedelta(days=2))
    assert same_month.lifted == [] and ledger.sim(key).status is SimStatus.SUSPENDED
    result = ledger.run_contracts(T0 + timedelta(days=20))  # February
    assert result.lifted == [key]
    assert ledger.sim(key).status is SimStatus.ACTIVE


# --------------------------------------------------------------------------- R-RU5 alerts


def test_r_ru5_alert_once_a_month_at_a_percentage(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, data_mb=1000)
    ledger.attach_rule("cap", kind="data_cap", limit=200, iccid=key)
    ledger.attach_rule("80% of cap", kind="alert", percent=80, of="data_cap", iccid=key)
    ledger.attach_rule("half package", kind="alert", percent=50, of="package", iccid=key)
    ledger.record_usage(key, 150, at=T0)
    ledger.record_usage(key, 20, at=T0 + timedelta(minutes=1))  # 170 >= 160: alert
    ledger.record_usage(key, 5, at=T0 + timedelta(minutes=2))  # no second alert
    alerts = [d for n, d in events(ledger, key) if n == "RuleTriggered"]
    assert [(a["rule"], a["action"]) for a in alerts] == [("80% of cap", "alert")]
    assert ledger.sim(key).status is SimStatus.ACTIVE
    ledger.record_usage(key, 400, at=T0 + timedelta(minutes=3))  # 575 of 1000 MB; cap too
    names = [d["rule"] for n, d in events(ledger, key) if n == "RuleTriggered"]
    assert names == ["80% of cap", "half package", "cap"]
    # the event feed carries the alert
    feed = [e for e in ledger.recorder.select_notifications(start=None, limit=10**6)]
    assert any(n.topic.endswith(":RuleTriggered") for n in feed)


# --------------------------------------------------------------------------- R-RU1, R-RU2


def test_r_ru1_bad_rules_are_refused_and_record_nothing(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    before = event_count(ledger)
    for bad in (
        dict(kind="data_cap"),
        dict(kind="data_cap", limit=0),
        dict(kind="speed_cap", limit=5),
        dict(kind="alert", percent=0, of="data_cap"),
        dict(kind="alert", percent=50, of="moon"),
    ):
        with pytest.raises(InvalidInput) as refused:
            ledger.attach_rule("r", iccid=key, **bad)
        assert refused.value.rule in ("R-RU1", "R-IN2"), bad
    with pytest.raises(InvalidInput, match="R-RU1"):
        ledger.attach_rule("r", kind="data_cap", limit=5, iccid=key, company=COMPANY)
    assert event_count(ledger) == before


def test_r_ru2_detach_an_unknown_rule_is_refused(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    before = event_count(ledger)
    with pytest.raises(UnknownRule) as refused:
        ledger.detach_rule("nope", iccid=key)
    assert refused.value.rule == "R-RU2"
    assert event_count(ledger) == before


def test_a_company_rule_reaches_each_of_its_sims(ledger: SimLedger) -> None:
    keys = [ready_sim(ledger, n) for n in (1, 2)]
    assert sorted(ledger.attach_rule("cap", kind="data_cap", limit=5, company=COMPANY)) == sorted(
        keys
    )
    for key in keys:
        assert row(ledger, key).rules == ["cap"]  # type: ignore[attr-defined]
    ledger.record_usage(keys[1], 6, at=T0)
    assert ledger.sim(keys[1]).status is SimStatus.SUSPENDED
    assert sorted(ledger.detach_rule("cap", company=COMPANY)) == sorted(keys)
    assert ledger.sim(keys[1]).status is SimStatus.ACTIVE


# --------------------------------------------------------------------------- spend cap


def test_spend_cap_pauses_a_paygo_sim_at_the_charge_that_reaches_it(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1, sim_type=SimType.PAYGO)
    ledger.set_prices("3UK", default_per_mb="0.10", per_country={"FR": "0.50"}, effective_from=T0)
    ledger.attach_rule("spend", kind="spend_cap", limit="5", iccid=key)
    ledger.record_usage(key, 20, at=T0 + timedelta(minutes=1), country="GB")  # 2.00
    ledger.record_usage(key, 4, at=T0 + timedelta(minutes=2), country="fr")  # 2.00: 4.00
    assert ledger.sim(key).status is SimStatus.ACTIVE
    ledger.record_usage(key, 10, at=T0 + timedelta(minutes=3))  # 1.00: 5.00 reached
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    assert row(ledger, key).cost_month == Decimal("5.00")  # type: ignore[attr-defined]


def test_r_ru4_a_big_batch_pauses_at_the_crossing_record(ledger: SimLedger) -> None:
    """150 records (on PostgreSQL, folded under the store's lock: usage_late.py) on two
    SIMs: each is paused at its own crossing record, later records refused (R-RU3)."""
    keys = [ready_sim(ledger, n, sim_type=SimType.PAYGO, data_mb=100_000) for n in (1, 2)]
    ledger.set_prices("3UK", default_per_mb="0.01", effective_from=T0)
    ledger.attach_rule("cap", kind="data_cap", limit=500, company=COMPANY)
    records = [
        {"record_id": f"b{n}", "iccid": keys[n % 2], "mb": 10, "at": T0 + timedelta(seconds=n)}
        for n in range(150)
    ]
    result = ledger.record_usage_batch(records)
    # 50 records of 10 MB reach 500 MB on each SIM: the 50th pauses it, 25 more are refused
    assert result.applied == 100 and len(result.rejected) == 50
    for key in keys:
        item = row(ledger, key)
        assert item.this_month_mb == 500 and item.cost_month == Decimal("5.00")  # type: ignore[attr-defined]
        assert item.status is SimStatus.SUSPENDED  # type: ignore[attr-defined]
    assert ledger.month_charges(COMPANY, "2024-01").total == Decimal("10.00")


def test_the_sim_list_sorts_by_its_rules(ledger: SimLedger) -> None:
    first, second, third = (ready_sim(ledger, n) for n in (1, 2, 3))
    ledger.attach_rule("b cap", kind="data_cap", limit=5, iccid=first)
    ledger.attach_rule("a cap", kind="data_cap", limit=5, iccid=second)
    order = [item.iccid for item in ledger.sims(sort="rules").items]
    assert order == [third, second, first]  # no rules first, then by the names
    assert [item.iccid for item in ledger.sims(sort="rules", descending=True).items] == [
        first,
        second,
        third,
    ]


def test_r_ru1_a_company_rule_reaches_sims_that_join_later_and_leaves_those_that_go(
    ledger: SimLedger,
) -> None:
    ledger.attach_rule("cap", kind="data_cap", limit=5, company=COMPANY)
    key = ready_sim(ledger, 1)  # assigned to the company after the rule
    assert row(ledger, key).rules == ["cap"]  # type: ignore[attr-defined]
    ledger.record_usage(key, 6, at=T0)
    assert ledger.sim(key).status is SimStatus.SUSPENDED
    ledger.assign_to_company(key, "Globex")  # leaves: the company's rule and its pause go
    assert row(ledger, key).rules == []  # type: ignore[attr-defined]
    assert ledger.sim(key).status is SimStatus.ACTIVE
    ledger.detach_rule("cap", company=COMPANY)
    assert row(ledger, ready_sim(ledger, 2)).rules == []  # type: ignore[attr-defined]
