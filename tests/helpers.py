"""Small helpers shared by the test modules of every layer folder. Names here are stable: other
test modules import them.

pyproject's ``pythonpath = ["tests"]`` puts this folder on ``sys.path``, so a test module in
any sub-folder imports it as::

    from helpers import FakeClock, event_count, iccids, ready_sim

* :func:`iccids` / :func:`iccid` -- valid ICCIDs (Luhn digit via ``make_iccid``).
* :class:`FakeClock` -- a controllable ``clock=`` for ``SimLedger`` (``advance(timedelta)``).
* :func:`event_count` -- how many events the ledger's store holds.
* :func:`received_sim`, :func:`ready_sim`, :func:`lined_sims`, :func:`sim_in_status`,
  :func:`user_paused_sim` -- drive SIMs through the public commands to a point of their lifecycle.
* :func:`active_sim_aggregate` -- an ``active`` :class:`Sim` from its own methods, no store.
* :func:`store_reads` -- what an application reads from its store (decoded events, snapshots).
* :func:`clean_env` -- the process environment without store settings, for a child process.
* :func:`pg_connect` -- a connection of the test's own to a PostgreSQL store's server.
* ``AGGREGATES``, ``DATETIMES`` -- the aggregate class names; a strategy of event datetimes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from hypothesis import strategies as st
from psycopg import sql

from simledger import InvalidIccid, SimLedger, SimStatus, SimType
from simledger.domain.errors import SimledgerError
from simledger.domain.iccid import make_iccid, normalise_iccid
from simledger.domain.sim import Sim

T0 = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
"""The default start of :class:`FakeClock`."""

OPERATOR = "3UK"
COMPANY = "Acme Logistics"
MSISDN = "+447700900123"

SETTINGS_PREFIXES = ("PERSISTENCE_", "SQLITE_", "POSTGRES_", "SIMLEDGER_", "VIEWS_")
"""Environment variables that choose a store: a child process must get only the test's own."""


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without any store setting, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    return {**base, **(extra or {})}


AGGREGATES = frozenset(
    {"Sim", "Package", "SharedGroup", "SimOrder", "CustomerService", "BulkOperation"}
)
"""The names of every aggregate class the ledger stores."""

DATETIMES = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.datetimes(
        timezones=st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        )
    ),
)
"""Datetimes as events may carry them: naive, in UTC, in a named zone, at a fixed offset."""


@contextlib.contextmanager
def store_reads(app: Application[Any]) -> Iterator[list[tuple[str, int, str]]]:
    """What ``app`` reads from its store meanwhile: (id, version, topic) of every stored event
    and snapshot its mappers decode (each one passes through the public ``decode_row``, or
    ``to_domain_event`` of a mapper without it)."""
    read: list[tuple[str, int, str]] = []
    stores = [app.repository.event_store, app.repository.snapshot_store]
    mappers = {id(s.mapper): s.mapper for s in stores if s is not None}
    with pytest.MonkeyPatch.context() as patch:
        for mapper in mappers.values():
            if hasattr(mapper, "decode_row"):
                decode_row = mapper.decode_row

                def row(
                    i: Any, version: int, topic: str, state: bytes, _d: Any = decode_row
                ) -> Any:
                    read.append((str(i), version, topic))
                    return _d(i, version, topic, state)

                patch.setattr(mapper, "decode_row", row)
            else:
                to_domain_event = mapper.to_domain_event

                def stored(event: StoredEvent, _t: Any = to_domain_event) -> Any:
                    read.append((str(event.originator_id), event.originator_version, event.topic))
                    return _t(event)

                patch.setattr(mapper, "to_domain_event", stored)
        yield read


@contextlib.contextmanager
def store_cursor(env: Mapping[str, str]) -> Iterator[Any]:
    """A cursor on the store of ``env`` (SQLite or PostgreSQL) of its own, outside the
    ledger, its changes committed at the end: to alter stored rows as tampering would."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        with pg_connect(env) as conn:
            yield conn.cursor()
    else:
        lite = sqlite3.connect(env["SQLITE_DBNAME"])
        try:
            with lite:
                yield lite.cursor()
        finally:
            lite.close()


def run_sql(env: Mapping[str, str], template: str, *args: Any) -> list[tuple[Any, ...]]:
    """One statement on the store's event table (``{table}`` in ``template``, ``?`` for
    parameters); its rows, if any."""
    with store_cursor(env) as cur:
        if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
            table = sql.Identifier(env["POSTGRES_SCHEMA"], "simledger_events")
            cur.execute(sql.SQL(template.replace("?", "%s")).format(table=table), args)
        else:
            cur.execute(template.format(table="stored_events"), args)
        return list(cur.fetchall()) if cur.description else []


def pg_connect(env: Mapping[str, str]) -> psycopg.Connection[Any]:
    """A connection of its own (autocommit) to the PostgreSQL server of a store's ``env``: to
    look at or change its tables from outside the ledger."""
    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DBNAME"],
        autocommit=True,
    )


def iccids(n: int, start: int = 0) -> list[str]:
    """``n`` distinct valid 20-digit ICCIDs (``89 44 …`` + Luhn digit), numbered from ``start``."""
    return [make_iccid(f"8944{number:015d}") for number in range(start, start + n)]


def iccid(number: int = 0) -> str:
    """One valid ICCID: ``iccids(1, number)[0]``."""
    return iccids(1, number)[0]


class FakeClock:
    """A clock for ``SimLedger(clock=...)``: returns ``now`` until moved."""

    def __init__(self, start: datetime = T0) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta``; returns the new time."""
        self.now += delta
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


def event_count(ledger: SimLedger) -> int:
    """Number of events stored (every aggregate), read from the store's notification log."""
    return len(ledger.recorder.select_notifications(start=None, limit=10**9))


def refused(
    ledger: SimLedger,
    error: type[SimledgerError],
    rule: str,
    call: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> SimledgerError:
    """Run ``call``; it must raise ``error`` citing ``rule`` and record nothing."""
    before = event_count(ledger)
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    assert info.value.rule == rule
    assert event_count(ledger) == before, "a refused command recorded events"
    return info.value


def new_ledger(
    env: dict[str, str] | None = None,
    *,
    clock: FakeClock | None = None,
    carrier_deadline: timedelta = timedelta(hours=24),
    operators_without_integration: tuple[str, ...] = (),
) -> tuple[SimLedger, FakeClock]:
    """A ledger (in memory unless ``env``) on a :class:`FakeClock`; returns both."""
    clock = clock or FakeClock()
    ledger = SimLedger(
        env,
        clock=clock,
        carrier_deadline=carrier_deadline,
        operators_without_integration=operators_without_integration,
    )
    return ledger, clock


def make_package(
    ledger: SimLedger,
    *,
    data_mb: int = 1000,
    validity_days: int = 30,
    auto_renew: bool = False,
    name: str = "1 GB / 30 days",
) -> UUID:
    return ledger.create_package(
        name, data_mb=data_mb, validity_days=validity_days, auto_renew=auto_renew
    )


def active_sims(ledger: SimLedger, n: int, start: int = 0) -> list[str]:
    """``n`` active SIMs sharing one package (fewer commands than ``ready_sim`` each)."""
    keys = ledger.receive_sims(iccids(n, start), operator=OPERATOR, sim_type="subscription")
    package = make_package(ledger)
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, MSISDN)
        ledger.assign_to_company(key, COMPANY)
        ledger.assign_package(key, package)
        ledger.activate(key)
    return keys


def received_sim(
    ledger: SimLedger,
    number: int = 0,
    *,
    operator: str = OPERATOR,
    sim_type: SimType = SimType.SUBSCRIPTION,
    checked: bool = False,
) -> str:
    """Receive one SIM (``pending``); with ``checked`` pass its integration check (``blank``)."""
    [key] = ledger.receive_sims([iccid(number)], operator=operator, sim_type=sim_type)
    if checked:
        ledger.complete_integration_check(key, ok=True)
    return key


def lined_sims(ledger: SimLedger, n: int, start: int = 0) -> list[str]:
    """``n`` ``blank`` subscription SIMs with a line and a company and no package: ready to
    join a shared group (or to take a package)."""
    keys = ledger.receive_sims(iccids(n, start), operator=OPERATOR, sim_type=SimType.SUBSCRIPTION)
    for key in keys:
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, MSISDN)
        ledger.assign_to_company(key, COMPANY)
    return keys


def ready_sim(
    ledger: SimLedger,
    number: int = 0,
    *,
    activate: bool = True,
    sim_type: SimType = SimType.SUBSCRIPTION,
    package_id: UUID | None = None,
    data_mb: int = 1000,
    validity_days: int = 30,
    auto_renew: bool = False,
) -> str:
    """A SIM with a line, a company and its own package copy: ``activation_ready``, or
    ``active`` when ``activate``. A package is created unless ``package_id`` is given."""
    key = received_sim(ledger, number, sim_type=sim_type, checked=True)
    ledger.assign_line(key, MSISDN)
    ledger.assign_to_company(key, COMPANY)
    if package_id is None:
        package_id = make_package(
            ledger, data_mb=data_mb, validity_days=validity_days, auto_renew=auto_renew
        )
    ledger.assign_package(key, package_id)
    if activate:
        ledger.activate(key)
    return key


def received_sim_aggregate(number: int = 0) -> Sim:
    """A newly received :class:`Sim` (its ``Received`` event pending), without a store."""
    return Sim.receive(
        iccid(number),
        operator=OPERATOR,
        sim_type=SimType.SUBSCRIPTION,
        esim=False,
        activation_code=None,
        integrated=True,
        order_id=None,
    )


def active_sim_aggregate(number: int = 0) -> Sim:
    """An ``active`` :class:`Sim` built by its own methods, without a ledger or a store, its
    events collected (none pending)."""
    sim = received_sim_aggregate(number)
    sim.complete_integration_check(ok=True, reason=None)
    sim.assign_line(MSISDN)
    sim.assign_to_company(COMPANY)
    sim.assign_package(str(uuid4()), str(uuid4()), "1 GB / 30 days")
    sim.activate()
    sim.collect_events()
    return sim


def user_paused_sim(
    ledger: SimLedger, number: int = 0, *, sim_type: SimType = SimType.SUBSCRIPTION
) -> str:
    """An ``active`` SIM (see :func:`ready_sim`) paused by the user: pause + carrier confirm."""
    key = ready_sim(ledger, number, sim_type=sim_type)
    result = ledger.pause([key])
    assert result.accepted == [key], result
    ledger.confirm(result.operation_id, key)
    return key


def sim_in_status(ledger: SimLedger, status: SimStatus, number: int = 0) -> str:
    """A SIM brought to ``status`` through the public commands (``suspended`` = by the user;
    ``not_available`` = marked so after arrival)."""
    if status is SimStatus.PENDING:
        key = received_sim(ledger, number)
    elif status is SimStatus.NOT_AVAILABLE:
        key = received_sim(ledger, number)
        ledger.mark_not_available(key, "operator has no integration")
    elif status is SimStatus.INVALID:
        key = received_sim(ledger, number)
        ledger.complete_integration_check(key, ok=False, reason="unknown to the operator")
    elif status is SimStatus.BLANK:
        key = received_sim(ledger, number, checked=True)
    elif status is SimStatus.ACTIVATION_READY:
        key = ready_sim(ledger, number, activate=False)
    elif status is SimStatus.ACTIVE:
        key = ready_sim(ledger, number)
    elif status is SimStatus.SUSPENDED:
        key = user_paused_sim(ledger, number)
    else:  # pragma: no cover - SimStatus has exactly the values above
        raise AssertionError(status)
    assert ledger.sim(key).status is status
    return key


SIM_LIST_SHARED_COLUMNS = (
    "status",
    "sim_type",
    "operator",
    "esim",
    "company",
    "end_user",
    "note",
    "labels",
    "plan",
    "group_id",
    "package_id",
    "copy_id",
    "data_left_mb",
    "expires_at",
    "days_left",
    "this_month_mb",
    "suspended_reason",
    "version",
    "updated_at",
    "in_session",
    "always_on",
)
"""Columns the SIM list view shares with ``ledger.sim()``: they must be equal."""


def iccid_outcome(raw: object, normalise: Callable[[object], str] = normalise_iccid) -> str:
    """What normalising ``raw`` gives: ``ok <ICCID>`` or ``refused <reason>`` (R-SIM1)."""
    try:
        return "ok " + normalise(raw)
    except InvalidIccid as error:
        return f"refused {error.reason}"


ICCID_LIKE = st.one_of(
    st.text(alphabet="0123456789 -a", max_size=24),
    st.builds(lambda n: make_iccid(f"89{n:017d}"), st.integers(0, 10**17 - 1)),
    st.builds(
        lambda n, k: make_iccid(f"89{n:017d}")[:-1] + str(k), st.integers(0, 99), st.integers(0, 9)
    ),
)
"""Strings that look like ICCIDs: any digits, valid ICCIDs, and ones off by their check digit."""


FAULT_REPORT = os.environ.get("SIMLEDGER_FAULT_REPORT")
"""A file the fault tests append what they saw to (``bench/bench_faults.py`` sets it and
prints the table); read at import, before the tests' environment is scrubbed."""


def fault_record(
    process: str,
    fault: str,
    env: Mapping[str, str],
    *,
    acknowledged: int,
    found: int,
    views_equal: bool,
    whole: bool = True,
) -> None:
    """Note one injected fault: the process kind, the fault, the store, the writes
    acknowledged before it and how many of them were found after it, whether the views
    equalled their rebuild and the killed unit of work was all or nothing (``whole``)."""
    if FAULT_REPORT is None:
        return
    store = "postgres" if env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres" else "sqlite"
    record = {
        "process": process,
        "fault": fault,
        "store": store,
        "acknowledged": acknowledged,
        "found": found,
        "views_equal": views_equal,
        "whole": whole,
    }
    with open(FAULT_REPORT, "a") as out:
        out.write(json.dumps(record) + "\n")


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds (an AssertionError naming ``what`` after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie is dead: its parent is gone, init reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = f"/proc/{pid}/status"
    with contextlib.suppress(FileNotFoundError), open(status) as found:
        return "State:\tZ" not in found.read()
    return False


def staged_tables(env: Mapping[str, str]) -> list[str]:
    """The SIM tables a parallel rebuild staged and left in the store's schema (PostgreSQL;
    none elsewhere)."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return []
    with pg_connect(env) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s "
            "AND tablename LIKE 'view\\_sims\\_staged\\_%%'",
            [env["POSTGRES_SCHEMA"]],
        ).fetchall()
    return [name for (name,) in rows]


def suspended(env: Mapping[str, str], keys: list[str]) -> bool:
    """Whether every SIM of ``keys`` is suspended (the carrier confirmed its pause)."""
    reader = SimLedger({**env, "VIEWS_MODE": "external", "VIEWS_WAIT_SECONDS": "0"})
    try:
        return all(reader.sim(k).status is SimStatus.SUSPENDED for k in keys)
    finally:
        reader.close()
