"""The demo's section on rules, PAYGO prices and prepaid refills (issue 17): a monthly data
cap pauses a SIM at the very usage record that crosses it, in that record's save."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from simledger.application.ledger import SimLedger
from simledger.domain.errors import SimledgerError
from simledger.domain.iccid import make_iccid
from simledger.domain.types import SimType


def run(ledger: SimLedger, section: Callable[[str], None]) -> None:
    section("9. A data cap acts at the record that crosses it (R-RU1..5, R-PR1..3, R-PP1)")
    paygo, prepaid = (make_iccid(f"8933019{n:013d}") for n in (901, 902))
    ledger.receive_sims([paygo], operator="Orange", sim_type=SimType.PAYGO)
    ledger.receive_sims([prepaid], operator="Orange", sim_type=SimType.PREPAID)
    plan = ledger.create_package("Orange 500 MB", data_mb=500, validity_days=30)
    for n, iccid in enumerate((paygo, prepaid)):
        ledger.complete_integration_check(iccid, ok=True)
        ledger.assign_line(iccid, f"+3361299{n:04d}")
        ledger.assign_to_company(iccid, "Acme Logistics")
        ledger.assign_package(iccid, plan)
        ledger.activate(iccid)
    start = datetime.now(UTC).replace(microsecond=0)
    ledger.set_prices(
        "Orange", default_per_mb="0.02", per_country={"US": "0.10"}, effective_from=start
    )
    print("  Orange's PAYGO prices from now: 0.02 a MB, 0.10 in the US")
    ledger.attach_rule("cap 100 MB", kind="data_cap", limit=100, iccid=paygo)
    ledger.attach_rule("80% alert", kind="alert", percent=80, of="data_cap", iccid=paygo)
    print(f"  {paygo}: rules {ledger.sims(company='Acme Logistics', search=paygo).items[0].rules}")
    for n, (mb, country) in enumerate(((40, "FR"), (45, "US"), (30, "FR")), 1):
        at = start + timedelta(minutes=n)
        ledger.record_usage(paygo, mb, at=at, country=country)
        item = ledger.sims(search=paygo).items[0]
        print(
            f"  record {n}: {mb:>3} MB in {country} -> this month {item.this_month_mb} MB, "
            f"cost {item.cost_month}, {item.status.value}"
        )
    print("  the SIM's history from record 2 (the alert) and record 3 (the cap), one save each:")
    history = ledger.history(paygo)
    second = [i for i, e in enumerate(history) if e.event == "UsageRecorded"][-2]
    for entry in history[second:]:
        detail = entry.data.get("rule") or entry.data.get("cause") or entry.data.get("mb")
        print(f"    v{entry.version:<3} {entry.event:<20} {detail}")
    try:
        ledger.record_usage(paygo, 5, at=start + timedelta(minutes=9))
    except SimledgerError as error:
        print(f"  refused: a record after the pause [{error.rule}]")
    answer = ledger.resume([paygo])
    print(f"  resume refused: {answer.rejected[paygo]}")
    ledger.attach_rule("cap 100 MB", kind="data_cap", limit=200, iccid=paygo)
    print(f"  cap raised to 200 MB: {ledger.sim(paygo).status.value} again")
    month = start.strftime("%Y-%m")
    print(f"  Acme Logistics' charges of {month}:")
    for line in ledger.export_charges_csv("Acme Logistics", month).splitlines():
        print(f"    {line}")
    ledger.set_auto_refill(prepaid, amount=250, threshold=50)
    ledger.record_usage(prepaid, 480, at=start + timedelta(minutes=5))
    left = ledger.sims(search=prepaid).items[0].data_left_mb
    print(f"  prepaid {prepaid}: 480 of 500 MB used, auto-refill +250 MB -> {left} MB left")
