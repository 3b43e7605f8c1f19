"""A guided tour of simledger on a small fleet, stored in a SQLite file.

    python -m simledger.runners.demo [--db PATH]

The file (default ``simledger-demo.db`` in the current directory) is deleted and
recreated on every run. What happens is printed on stdout; the engine's structured
logs (JSON lines from the ``simledger`` logger) go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from simledger.application.ledger import SimLedger
from simledger.domain.errors import SimledgerError
from simledger.domain.iccid import make_iccid
from simledger.domain.types import SimStatus, SimType
from simledger.runners import demo_rules

DEFAULT_DB = "simledger-demo.db"


class Fleet:
    """Short names for the demo's SIMs, so the output stays readable."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def add(self, name: str, iccid: str) -> str:
        self.names[iccid] = name
        return iccid

    def __call__(self, iccid: str) -> str:
        return f"{self.names.get(iccid, '?'):<5} {iccid}"


def _iccids(fleet: Fleet, prefix: str, body: str, numbers: Iterable[int]) -> list[str]:
    return [fleet.add(f"{prefix}{n:02d}", make_iccid(f"{body}{n:013d}")) for n in numbers]


def _section(title: str) -> None:
    print()
    print(f"== {title} " + "=" * max(0, 74 - len(title)))


def _refused(what: str, error: SimledgerError) -> None:
    print(f"  refused as expected: {what}")
    print(f"    {type(error).__name__} [{error.rule}] {error.message}")


def _statuses(ledger: SimLedger, iccids: Sequence[str]) -> str:
    counts = Counter(ledger.sim(i).status.value for i in iccids)
    order = [s.value for s in SimStatus]
    return ", ".join(f"{s}={counts[s]}" for s in order if counts[s])


def _show_sims(ledger: SimLedger, fleet: Fleet, iccids: Iterable[str]) -> None:
    for iccid in iccids:
        sim = ledger.sim(iccid)
        extra = ""
        if sim.suspended_reason is not None:
            cause = f", cause {sim.system_cause}" if sim.system_cause else ""
            extra += f" (by {sim.suspended_reason.value}{cause})"
        if sim.operation_in_flight:
            extra += f" [{sim.operation_in_flight['kind']} in flight]"
        print(f"  {fleet(iccid)}  {sim.status.value:<16}{extra}".rstrip())


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))  # records are JSON already
    logger = logging.getLogger("simledger")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _fresh_sqlite(path: Path) -> dict[str, str]:
    for stale in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        stale.unlink(missing_ok=True)
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


def run(ledger: SimLedger) -> None:
    """The tour itself, on any ledger (the tests may pass an in-memory one)."""
    fleet = Fleet()

    # ---- arrival -----------------------------------------------------------------------
    _section("1. Receive 20 SIMs from two operators")
    orange = ledger.receive_sims(
        _iccids(fleet, "O", "893301", range(1, 11)),
        operator="Orange",
        sim_type=SimType.SUBSCRIPTION,
    )
    orange_esim = ledger.receive_sims(
        _iccids(fleet, "E", "893302", range(1, 5)),
        operator="Orange",
        sim_type=SimType.SUBSCRIPTION,
        esim=True,
    )
    three = ledger.receive_sims(
        _iccids(fleet, "T", "894420", range(1, 7)),
        operator="3UK",
        sim_type=SimType.PREPAID,
    )
    fleet_all = [*orange, *orange_esim, *three]
    print(f"  Orange: {len(orange)} physical + {len(orange_esim)} eSIM (subscription)")
    print(f"  3UK:    {len(three)} physical (prepaid)")
    e1 = ledger.sim(orange_esim[0])
    print(f"  eSIM {fleet(e1.iccid)} activation code {e1.activation_code}")
    print(f"  statuses: {_statuses(ledger, fleet_all)}")

    _section("2. Integration check: one SIM fails, is retried, then passes")
    bad = three[-1]
    for iccid in fleet_all:
        ok = iccid != bad
        ledger.complete_integration_check(
            iccid, ok=ok, reason=None if ok else "IMSI not provisioned at 3UK"
        )
    print(f"  statuses: {_statuses(ledger, fleet_all)}")
    try:
        ledger.assign_line(bad, "+447700900106")
    except SimledgerError as error:
        _refused(f"a line for the invalid SIM {fleet(bad)}", error)
    ledger.retry_integration_check(bad)
    print(f"  retried {fleet(bad)}: {ledger.sim(bad).status.value}")
    ledger.complete_integration_check(bad, ok=True)
    print(f"  checked again:  {fleet(bad)}: {ledger.sim(bad).status.value}")

    _section("3. Lines, packages, companies, activation (R-SIM5)")
    for n, iccid in enumerate([*orange, *orange_esim], 1):
        ledger.assign_line(iccid, f"+3361234{n:04d}")
    for n, iccid in enumerate(three, 1):
        ledger.assign_line(iccid, f"+447700900{n:03d}")
    orange_1gb = ledger.create_package("Orange 1 GB", data_mb=1024, validity_days=30, price=9.9)
    prepaid_2gb = ledger.create_package("3UK prepaid 2 GB", data_mb=2048, validity_days=30)
    print("  packages: Orange 1 GB / 30 days, 3UK prepaid 2 GB / 30 days")
    individual = orange[:8]  # O01..O08; O09, O10, E01, E02 will share a pool
    pooled = [*orange[8:], *orange_esim[:2]]
    store = orange_esim[2:]  # E03, E04: kept in the shop
    for iccid in [*individual, *pooled]:
        ledger.assign_to_company(iccid, "Acme Logistics")
    for iccid in three:
        ledger.assign_to_company(iccid, "Nordwind Rentals")
    for iccid in store:
        ledger.mark_store_use(iccid)
    for iccid in [*individual, *store]:
        ledger.assign_package(iccid, orange_1gb)
    for iccid in three:
        ledger.assign_package(iccid, prepaid_2gb)
    print(f"  statuses: {_statuses(ledger, fleet_all)}")
    try:
        ledger.activate(pooled[0])
    except SimledgerError as error:
        _refused(f"activating {fleet(pooled[0])}, which has no plan yet", error)
    for iccid in [*individual, *three[:4]]:
        ledger.activate(iccid)
    print("  activated O01..O08 and T01..T04; E03, E04 (store use), T05, T06 stay ready")
    print(f"  statuses: {_statuses(ledger, fleet_all)}")

    # ---- partner flow --------------------------------------------------------------------
    _section("4. Partner flow: order, holding service, customer service (R-PF1..4)")
    try:
        ledger.order_sims("A1", 25)
    except SimledgerError as error:
        _refused("an order of 25 A1 SIMs", error)
    order_id = ledger.order_sims("A1", 20)
    print(f"  ordered 20 A1 SIMs: order {order_id}")
    partner = ledger.receive_sims(
        _iccids(fleet, "A", "894301", range(1, 3)),
        operator="A1",
        sim_type=SimType.SUBSCRIPTION,
        order_id=order_id,
    )
    for iccid in partner:
        ledger.complete_integration_check(iccid, ok=True)
        ledger.assign_line(iccid, f"+43664123{partner.index(iccid) + 1:04d}")
        print(f"  delivered {fleet(iccid)} on service {ledger.sim(iccid).service!r}")
    iot = ledger.create_customer_service(
        "IoT 10 GB", data_mb_per_month=10_240, networks=["A1", "Orange"], minimum_term_months=12
    )
    print(f"  customer service 'IoT 10 GB' (10,240 MB a month, 12 months): {iot}")
    try:
        ledger.assign_to_customer(partner[0], "Bergbahn AG", iot)
    except SimledgerError as error:
        _refused(f"assigning {fleet(partner[0])} while on the holding service", error)
    for iccid in partner:
        ledger.migrate_to_partner_service(iccid, "partner-iot")
        ledger.assign_to_customer(iccid, "Bergbahn AG", iot)
        ledger.activate(iccid)
        sim = ledger.sim(iccid)
        print(
            f"  {fleet(iccid)}: service {sim.service}, company {sim.company}, "
            f"plan {sim.plan!r} -> {sim.status.value}"
        )

    # ---- shared group ----------------------------------------------------------------------
    _section("5. A shared group and its pool, used up (R-SG1..3)")
    pool = ledger.create_package("Fleet pool 600 MB", data_mb=600, validity_days=30)
    group_id = ledger.create_shared_group("Acme vans", pooled, pool, notify_users=True)
    for iccid in pooled:
        ledger.activate(iccid)
    group = ledger.shared_group(group_id)
    print(
        f"  group 'Acme vans' {group_id}: {len(group.members)} members, "
        f"pool {group.data_left_mb} MB, locked={group.locked}"
    )
    try:
        ledger.add_to_shared_group(group_id, store[0])
    except SimledgerError as error:
        _refused("adding a member to a locked group", error)
    n = 0
    while not ledger.shared_group(group_id).depleted:
        iccid = pooled[n % len(pooled)]
        ledger.record_usage(iccid, 90, country="FR")
        left = ledger.shared_group(group_id).data_left_mb
        bar = "#" * int(left // 20)
        print(f"  {fleet(iccid)} used  90 MB -> pool {left:>4} MB left |{bar}")
        n += 1
    group = ledger.shared_group(group_id)
    print(f"  SharedGroup.Depleted after {n} usage records: every member paused by the system")
    print(f"  locked={group.locked}: the group may change again (R-SG3)")
    _show_sims(ledger, fleet, pooled)

    # ---- bulk pause ------------------------------------------------------------------------
    _section("6. Bulk pause: answered at once, applied when carriers confirm (R-BK1..3)")
    request: list[str] = [*individual[:6], *three[:2], store[0], pooled[0], "8933 0100 12"]
    result = ledger.pause(request, idempotency_key="demo-pause-1")
    print(f"  operation {result.operation_id}")
    print(f"  accepted ({len(result.accepted)}):")
    for iccid in result.accepted:
        print(f"    {fleet(iccid)}")
    print(f"  rejected ({len(result.rejected)}):")
    for iccid, reason in result.rejected.items():
        print(f"    {fleet(iccid) if iccid in fleet.names else iccid}: {reason}")
    again = ledger.pause(request, idempotency_key="demo-pause-1")
    same = "the same answer" if again == result else "a different answer (bug)"
    print(f"  sent again with idempotency key 'demo-pause-1': {same}, nothing recorded")
    second = ledger.pause([individual[0]])
    print(f"  a second pause of {fleet(individual[0])}: {second.rejected[individual[0]]}")
    print("  before any carrier answer:")
    _show_sims(ledger, fleet, result.accepted[:2])
    refused = three[1]
    for iccid in result.accepted:
        if iccid == refused:
            ledger.confirm(result.operation_id, iccid, ok=False, reason="3UK: SIM busy")
        else:
            ledger.confirm(result.operation_id, iccid)
    print(f"  carriers answered: {len(result.accepted) - 1} confirmed, 1 refused")
    _show_sims(ledger, fleet, result.accepted)
    print(f"  ({fleet.names[refused]} stays active: 3UK refused its pause, 'SIM busy')")
    resume = ledger.resume([individual[0], pooled[0]])
    print(f"  bulk resume: accepted {[fleet.names[i] for i in resume.accepted]}")
    for iccid, reason in resume.rejected.items():
        print(f"    rejected {fleet(iccid)}: {reason}")
    ledger.confirm(resume.operation_id, individual[0])
    _show_sims(ledger, fleet, [individual[0]])

    # ---- audit -----------------------------------------------------------------------------
    _section("7. Histories: every event that touched a SIM, from any aggregate (R-ES3)")
    for iccid in (bad, pooled[0], individual[1], refused):
        print(f"  {fleet(iccid)}")
        print(f"    {'event':<26}{'aggregate':<14}{'version':>7}  time (UTC)")
        for entry in ledger.history(iccid):
            print(
                f"    {entry.event:<26}{entry.aggregate:<14}{entry.version:>7}  "
                f"{entry.at:%H:%M:%S.%f}"
            )

    _section("8. A SIM as it was (sim_as_of)")
    paused = individual[1]
    history = ledger.history(paused)
    requested = next(e for e in history if e.event == "PauseRequested")
    before = ledger.sim_as_of(paused, version=requested.version)
    at_activation = next(e for e in history if e.event == "Activated").at
    then = ledger.sim_as_of(paused, at=at_activation)
    now = ledger.sim(paused)
    print(f"  {fleet(paused)}")
    print(
        f"    at its activation ({at_activation:%H:%M:%S.%f}): {then.status.value}, "
        f"{then.data_left_mb} MB left, version {then.version}"
    )
    in_flight = before.operation_in_flight or {}
    print(
        f"    at version {before.version}: {before.status.value}, "
        f"{in_flight.get('kind')} waiting for the carrier"
    )
    print(
        f"    now (version {now.version}): {now.status.value} "
        f"(by {now.suspended_reason.value if now.suspended_reason else '-'})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simledger.runners.demo",
        description="Build a small SIM fleet in a fresh SQLite file and show what happened.",
    )
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"SQLite file to (re)create (default: {DEFAULT_DB} in the current directory)",
    )
    args = parser.parse_args(argv)
    _configure_logging()
    path = Path(args.db).resolve()
    started = time.perf_counter()
    print("simledger demo")
    print(f"  store: SQLite file {path} (deleted and recreated fresh on every run)")
    print("  engine logs: JSON lines on stderr")
    ledger = SimLedger(env=_fresh_sqlite(path))
    try:
        run(ledger)
        demo_rules.run(ledger, _section)
    finally:
        ledger.close()
    print()
    print(f"done in {time.perf_counter() - started:.2f} s; every event is in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
