"""Stateful property test of rules, prices and refills (issue 17): random steps (caps and
alerts attached and detached, price versions, usage records one by one and in batches,
auto-refills, the contracts' housekeeping, resume attempts, time passing) on a real
``SimLedger`` in memory, with these invariants after every step:

* a SIM paused by a cap never takes a record from the moment of the pause until the cause
  is cleared, and the use that paused it passes the cap by less than the record that
  crossed it (R-RU3, R-RU4);
* every charge is the record's MB times the price in force at its ``at`` (this test keeps
  its own copy of the price versions), and a company's month of charges totals the sum of
  its priced records (R-PR2, R-PR3);
* every status change is a move of the lifecycle table (``StatusWalk`` of
  test_stateful.py, reused).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from helpers import COMPANY, OPERATOR, FakeClock, ready_sim
from hypothesis import HealthCheck, settings
from hypothesis import event as event_note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from simledger import SimLedger, SimledgerError, SimType
from simledger.domain import sim_rules
from simledger.domain.sim import Sim


def _fleet_module() -> Any:
    """test_stateful.py, loaded by path (pytest's importlib mode puts no test folder on
    ``sys.path``): its ``StatusWalk`` is reused here."""
    path = Path(__file__).with_name("test_stateful.py")
    spec = importlib.util.spec_from_file_location("simledger_tests_stateful", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


StatusWalk = _fleet_module().StatusWalk
SIM_TYPES = (SimType.PAYGO, SimType.PREPAID, SimType.SUBSCRIPTION, SimType.PAYGO)
sim_index = st.integers(0, len(SIM_TYPES) - 1)
megabytes = st.integers(1, 120).map(Decimal)
countries = st.sampled_from([None, "FR", "GB"])


class RulesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.ledger = SimLedger(clock=self.clock)
        self.keys = [
            ready_sim(self.ledger, n, sim_type=t, data_mb=400, validity_days=400)
            for n, t in enumerate(SIM_TYPES)
        ]
        self.prices: list[tuple[datetime, Decimal, dict[str, Decimal]]] = []
        self.walks = {key: StatusWalk() for key in self.keys}
        # Prices from the start, so that spend caps have charges to reach.
        self.set_prices(10, 30)
        self.checked = {key: 0 for key in self.keys}

    def teardown(self) -> None:
        self.ledger.close()

    def attempt(self, call: Any) -> None:
        with contextlib.suppress(SimledgerError):  # a refusal: tests per rule check them
            call()

    @initialize(data=st.integers(20, 200), spend=st.integers(20, 300))
    def some_caps(self, data: int, spend: int) -> None:
        """Caps from the start on two SIMs (a PAYGO one takes both), so that most runs
        cross one."""
        self.attach_cap(0, "data_cap", data)
        self.attach_cap(3, "spend_cap", spend)
        self.attach_cap(3, "data_cap", data * 2)

    # ---- steps --------------------------------------------------------------------------------
    @rule(i=sim_index, kind=st.sampled_from(["data_cap", "spend_cap"]), limit=st.integers(20, 300))
    def attach_cap(self, i: int, kind: str, limit: int) -> None:
        amount = limit if kind == "data_cap" else Decimal(limit) / 10  # MB, or money
        self.ledger.attach_rule(kind, kind=kind, limit=amount, iccid=self.keys[i])

    @rule(i=sim_index, percent=st.integers(1, 100), of=st.sampled_from(sim_rules.ALERT_OF))
    def attach_alert(self, i: int, percent: int, of: str) -> None:
        self.ledger.attach_rule("alert", kind="alert", percent=percent, of=of, iccid=self.keys[i])

    @rule(i=sim_index, name=st.sampled_from(["data_cap", "spend_cap", "alert"]))
    def detach(self, i: int, name: str) -> None:
        self.attempt(lambda: self.ledger.detach_rule(name, iccid=self.keys[i]))

    @rule(default=st.integers(0, 30), fr=st.integers(0, 90))
    def set_prices(self, default: int, fr: int) -> None:
        price, france = Decimal(default) / 100, Decimal(fr) / 100
        self.clock.advance(timedelta(minutes=1))  # a version starts after the latest
        self.ledger.set_prices(OPERATOR, default_per_mb=price, per_country={"FR": france})
        self.prices.append((self.clock.now, price, {"FR": france}))

    @rule(i=sim_index, mb=megabytes, country=countries)
    def record_usage(self, i: int, mb: Decimal, country: str | None) -> None:
        self.clock.advance(timedelta(seconds=30))
        at = self.clock.now
        self.attempt(lambda: self.ledger.record_usage(self.keys[i], mb, at=at, country=country))

    @rule(records=st.lists(st.tuples(sim_index, megabytes, countries), min_size=1, max_size=6))
    def record_batch(self, records: list[tuple[int, Decimal, str | None]]) -> None:
        start = self.clock.advance(timedelta(minutes=1))
        self.ledger.record_usage_batch(
            [
                {"record_id": f"{start}-{n}", "iccid": self.keys[i], "mb": mb, "country": c}
                | {"at": start + timedelta(seconds=n)}
                for n, (i, mb, c) in enumerate(records)
            ]
        )
        self.clock.advance(timedelta(seconds=len(records)))

    @rule(amount=st.integers(10, 300), threshold=st.integers(0, 100))
    def auto_refill(self, amount: int, threshold: int) -> None:
        self.ledger.set_auto_refill(self.keys[1], amount=amount, threshold=threshold)

    @rule(days=st.integers(1, 20))
    def time_passes(self, days: int) -> None:
        self.clock.advance(timedelta(days=days))
        self.ledger.run_contracts(self.clock.now)

    @rule(i=sim_index)
    def resume(self, i: int) -> None:
        answer = self.ledger.resume([self.keys[i]])
        if answer.accepted:
            self.ledger.confirm(answer.operation_id, self.keys[i])

    # ---- invariants ---------------------------------------------------------------------------
    def price_at(self, country: str | None, at: datetime) -> Decimal | None:
        for start, default, per_country in reversed(self.prices):
            if start <= at:
                return per_country.get(country or "", default)
        return None

    @invariant()
    def a_rule_paused_sim_takes_nothing_after_the_record_that_paused_it(self) -> None:
        for key in self.keys:
            pause: sim_rules.RuleTriggered | None = None
            trigger: sim_rules.RuleTriggered | None = None
            last_mb, month, used = Decimal(0), "", Decimal(0)
            caps: dict[str, Decimal] = {}  # the SIM's data caps
            armed: set[str] = set()  # caps a record left the use below, the SIM able to pause
            held = False  # paused by the system for another cause
            for event in self.ledger.events.get(key):
                if isinstance(event, Sim.UsageRecorded):
                    assert pause is None or event.at < pause.at, (key, event.at)
                    last_mb = event.mb
                    if event.at.strftime("%Y-%m") > month:
                        month, used = event.at.strftime("%Y-%m"), Decimal(0)
                    if event.at.strftime("%Y-%m") == month:
                        used += event.mb
                    if not held:
                        armed |= {name for name, limit in caps.items() if used < limit}
                elif isinstance(event, sim_rules.RuleAttached):
                    armed.discard(event.name)
                    if event.kind == sim_rules.DATA_CAP and event.limit is not None:
                        caps[event.name] = event.limit
                elif isinstance(event, sim_rules.RuleDetached):
                    caps.pop(event.name, None)
                    armed.discard(event.name)
                elif isinstance(event, sim_rules.RuleTriggered) and event.action == "pause":
                    # The record that paused the SIM is the one that crossed the cap: the
                    # month's use before it was below the cap.
                    if event.rule in armed:
                        assert event.used - last_mb < event.limit, (key, event)
                    armed.discard(event.rule)
                    trigger = event
                elif isinstance(event, Sim.SuspendedBySystem):
                    if event.cause == "rule":
                        pause = trigger  # the pause the trigger made
                        event_note(f"paused by {trigger.kind if trigger else '?'}")
                    else:
                        held, armed = True, set()
                elif isinstance(event, Sim.SystemPauseCleared | Sim.Resumed):
                    pause, held = None, False

    @invariant()
    def charges_are_priced_as_of_their_time_and_add_up(self) -> None:
        charged: dict[str, Decimal] = {self.clock.now.strftime("%Y-%m"): Decimal(0)}
        for key in self.keys:
            for event in self.ledger.events.get(key):
                if isinstance(event, sim_rules.UsageCharged):
                    assert event.price_per_mb == self.price_at(event.country, event.at)
                    assert event.amount == event.mb * event.price_per_mb
                    month = event.at.strftime("%Y-%m")
                    charged[month] = charged.get(month, Decimal(0)) + event.amount
                    event_note("charged")
        for month, amount in charged.items():
            statement = self.ledger.month_charges(COMPANY, month)
            assert statement.total == amount == sum(line.amount for line in statement.lines)

    @invariant()
    def statuses_move_only_along_the_table(self) -> None:
        for key in self.keys:
            walk = self.walks[key]
            walk.read(self.ledger.events.get(key, gt=walk.version))


TestRules = RulesMachine.TestCase
TestRules.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
