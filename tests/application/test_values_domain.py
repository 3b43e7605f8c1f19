"""The domain of values (docs/rules.md, "Input values", R-IN1..4; issue 14 item 11).

Every public call of ``SimLedger``, driven with arbitrary Python values for each of its
arguments (``None``, wrong types, huge integers, NaN, control characters, lone surrogates,
100 KB strings, mixed with plausible values so that calls also get past their first
check), either succeeds or raises a ``SimledgerError`` that recorded nothing; afterwards
the SIM list, a rebuild of every view and the audit of the whole store still work, on
SQLite and PostgreSQL. Then one explicit test per R-IN rule, and the reproductions of the
issue.
"""

# mypy: disable-error-code="arg-type, assignment"
# (the tests below pass values of the wrong type on purpose)

from __future__ import annotations

import base64
import inspect
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from helpers import COMPANY, MSISDN, T0, event_count, iccid, iccids, ready_sim, received_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simledger import InvalidInput, SimLedger, SimledgerError, SimNotYetReceived, SimType
from simledger.adapters.views.base import ALL_VIEWS
from simledger.application.ledger import _Delegate
from simledger.domain import values
from simledger.domain.types import SimStatus
from simledger.projections.listing import SORTS

PUBLIC = sorted(name for name, attr in vars(SimLedger).items() if isinstance(attr, _Delegate))
"""Every public call of the facade (docs/api.md)."""

HUGE_TEXT = "x" * 100_000


@pytest.fixture
def ledger_env(persistent_store_env: dict[str, str]) -> dict[str, str]:
    return persistent_store_env


# ---- what the calls are given ---------------------------------------------------------------

WILD_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**20, -(10**30), 2**64, 10**5000, 0, -1]),
    st.floats(),
    st.decimals(),
    st.sampled_from([Decimal("1e200000"), Decimal("-1e-200000"), Decimal("sNaN")]),
    st.text(max_size=30),
    st.text(st.characters(codec=None, categories=["Cc", "Cs", "Zl", "Cf"]), max_size=5),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "Op\x00X",
            "\ud800",
            "a\udcffb",
            "line\nbreak",
            "\x1b[31mred",
            "=cmd|' /C calc'!A0",
            HUGE_TEXT,
            "é" * 2700,
            "NaN",
            "inf",
            "1e200000",
            "10",
            "-5",
            "2020-01-01",
            str(uuid4()),
            iccid(1),
        ]
    ),
    st.binary(max_size=10),
    st.sampled_from(
        [
            object(),
            date(2020, 1, 1),
            datetime(2020, 1, 1),
            datetime.min.replace(tzinfo=UTC),
            datetime.max.replace(tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),
            uuid4(),
            SimStatus.ACTIVE,
        ]
    ),
)
WILD = st.one_of(
    WILD_SCALARS,
    st.lists(WILD_SCALARS, max_size=4),
    st.tuples(WILD_SCALARS, WILD_SCALARS),
    st.dictionaries(st.text(max_size=5), WILD_SCALARS, max_size=3),
    st.lists(st.lists(st.integers(), max_size=2), max_size=2),
)
"""Values a caller may pass by mistake, or on purpose."""


@dataclass
class Fleet:
    """What the seed made: ids the plausible values name."""

    sims: list[str]
    fresh: list[str]
    package: UUID
    group: UUID
    order: UUID
    service: UUID
    operation: UUID


def seed(ledger: SimLedger) -> Fleet:
    active = ready_sim(ledger, 1)
    blank = received_sim(ledger, 2, checked=True)
    ledger.assign_line(blank, MSISDN)
    ledger.assign_to_company(blank, COMPANY)
    pending = received_sim(ledger, 3)
    package = ledger.create_package("shared", data_mb=100, validity_days=30)
    group = ledger.create_shared_group("G", [blank], package)
    order = ledger.order_sims("A1", 20)
    service = ledger.create_customer_service("IoT", data_mb_per_month=1000)
    operation = ledger.pause([active]).operation_id
    return Fleet(
        sims=[active, blank, pending, iccid(99)],
        fresh=iccids(30, 1000),
        package=package,
        group=group,
        order=order,
        service=service,
        operation=operation,
    )


def plausible(fleet: Fleet, name: str, method: str) -> st.SearchStrategy[Any]:
    """Values a careful caller would pass as ``name`` (so a call may get past its checks)."""
    times = st.datetimes(
        min_value=datetime(2023, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
    )
    some_text = st.one_of(st.sampled_from(["3UK", "A1", "Acme", "eu"]), st.text(max_size=12))
    amounts = st.one_of(st.integers(0, 10**6), st.decimals(0, 10**6, places=2), st.floats(0, 1e6))
    by_name: dict[str, st.SearchStrategy[Any]] = {
        "iccid": st.sampled_from(fleet.sims),
        "iccids": st.lists(st.sampled_from(fleet.sims + fleet.fresh), max_size=4),
        "operator": st.sampled_from(["3UK", "A1", "Orange"]),
        "sim_type": st.sampled_from([*SimType, "prepaid"]),
        "order_id": st.sampled_from([fleet.order, None]),
        "activation_codes": st.sampled_from([None, {}]),
        "msisdn": st.just(MSISDN),
        "labels": st.lists(some_text, max_size=3),
        "note": st.one_of(st.none(), st.text(max_size=40)),
        "email": st.sampled_from(["a@b.co", None]),
        "package_id": st.sampled_from([fleet.package, uuid4()]),
        "group_id": st.sampled_from([fleet.group, str(fleet.group), None]),
        "move_to": st.sampled_from([fleet.group, None]),
        "operation_id": st.sampled_from([fleet.operation]),
        "answers": st.dictionaries(st.sampled_from(fleet.sims), st.booleans(), max_size=3),
        "at": times,
        "now": times,
        "version": st.integers(1, 12),
        "quantity": st.sampled_from([20, 40, "60", 20.0]),
        "validity_days": st.integers(1, 400),
        "minimum_term_months": st.integers(0, 24),
        "networks": st.lists(some_text, max_size=3),
        "status": st.sampled_from([*SimStatus, None]),
        "sort": st.sampled_from(list(SORTS)),
        "limit": st.integers(1, 20),
        "cursor": st.none(),
        "view": st.sampled_from(ALL_VIEWS),
        "views": st.sampled_from([None, list(ALL_VIEWS), True]),
        "view_names": st.none(),
        "page": st.just(1000),
        "parallel": st.just(False),
    }
    if name in by_name:
        return by_name[name]
    if name in ("data_mb", "mb", "amount", "price", "data_mb_per_month"):
        return amounts
    if name in ("esim", "ok", "auto_renew", "notify_users", "descending", "locked"):
        return st.booleans()
    if name == "stream" and method == "import_sims_csv":
        return st.lists(st.sampled_from(fleet.fresh), max_size=3).map(
            lambda keys: io.StringIO(
                "iccid,operator,sim_type,esim\n" + "".join(f"{k},3UK,prepaid,no\n" for k in keys)
            )
        )
    if name == "stream":
        return st.builds(io.StringIO)
    return some_text


@st.composite
def calls(draw: st.DrawFn, fleet: Fleet) -> tuple[str, list[Any], dict[str, Any]]:
    """A public call and its arguments: each plausible, wild, or left to its default."""
    method = draw(st.sampled_from(PUBLIC))
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for parameter in list(inspect.signature(getattr(SimLedger, method)).parameters.values())[1:]:
        if parameter.kind is parameter.VAR_KEYWORD:
            kwargs.update(draw(st.dictionaries(st.sampled_from(list(SORTS)), WILD, max_size=2)))
            continue
        how = draw(st.sampled_from(["plausible", "wild", "default"]))
        if how == "default" and parameter.default is not parameter.empty:
            continue
        value = draw(WILD if how == "wild" else plausible(fleet, parameter.name, method))
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[parameter.name] = value
    if method == "verify_store":
        kwargs["parallel"] = False  # a second process per call would make the test slow
    return method, args, kwargs


def test_every_public_call_succeeds_or_refuses_with_a_rule(ledger: SimLedger) -> None:
    fleet = seed(ledger)
    seen: set[str] = set()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(calls(fleet), min_size=1, max_size=4))
    def run(batch: list[tuple[str, list[Any], dict[str, Any]]]) -> None:
        for method, args, kwargs in batch:
            seen.add(method)
            before = event_count(ledger)
            try:
                getattr(ledger, method)(*args, **kwargs)
            except SimledgerError as refusal:
                assert refusal.rule.startswith("R-"), refusal
                assert str(refusal).startswith(f"{refusal.rule}: ")
                assert event_count(ledger) == before, f"{method} refused but recorded"

    run()
    assert len(seen) > len(PUBLIC) // 2
    # the fleet still lists, rebuilds and verifies
    for sort in SORTS:
        ledger.sims(sort=sort, limit=1000)
    ledger.pending_activity()
    ledger.shared_groups()
    for key in fleet.sims[:3]:
        ledger.history(key)
    ledger.rebuild_view("sims")
    ledger.rebuild_views()
    assert all(not diffs for diffs in ledger.verify_views().values())
    report = ledger.verify_store(parallel=False)
    assert report.problems == []


# ---- one test per rule ----------------------------------------------------------------------


def refused(ledger: SimLedger, rule: str, call: Any, error: type[Exception] = InvalidInput) -> str:
    """``call()`` raises ``error`` with ``rule``, recording nothing; returns the message."""
    before = event_count(ledger)
    with pytest.raises(error) as caught:
        call()
    assert getattr(caught.value, "rule", None) == rule, caught.value
    assert event_count(ledger) == before
    return str(caught.value)


def test_r_in1_text_is_bounded_printable_unicode(ledger: SimLedger) -> None:
    key = received_sim(ledger, 1, checked=True)
    for bad in ("a\x00b", "\ud800", "Op\nX", "\x1b[31m", "a\u202eb", "x" * 201, HUGE_TEXT):
        refused(ledger, "R-IN1", lambda bad=bad: ledger.assign_to_company(key, bad))
        refused(ledger, "R-IN1", lambda bad=bad: ledger.set_labels(key, [bad]))
        refused(
            ledger,
            "R-IN1",
            lambda bad=bad: ledger.receive_sims([iccid(5)], operator=bad, sim_type="prepaid"),
        )
        refused(ledger, "R-IN1", lambda bad=bad: ledger.sims(search=bad))
    for bad in ("a\x00b", "\udcff", "a\rb", "x" * (values.NOTE_MAX + 1)):
        refused(ledger, "R-IN1", lambda bad=bad: ledger.set_note(key, bad))
    refused(ledger, "R-IN1", lambda: ledger.set_end_user(key, "a" * 250 + "@b.co"))
    # the bounds themselves are in the domain; a note keeps its line breaks and tabs
    ledger.assign_to_company(key, "C" * values.NAME_MAX)
    ledger.set_note(key, "first line\r\nsecond\tcolumn " + "n" * 1900)
    assert ledger.sim(key).note == "first line\nsecond\tcolumn " + "n" * 1900
    assert ledger.sims(search="second").total == 1


def test_r_in2_numbers_take_one_set_of_types_and_a_range(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    for bad in (True, None, "lots", float("nan"), float("inf"), Decimal("NaN"), [1], b"1"):
        refused(ledger, "R-IN2", lambda bad=bad: ledger.record_usage(key, bad))
        refused(
            ledger,
            "R-IN2",
            lambda bad=bad: ledger.create_package("p", data_mb=10, validity_days=bad),
        )
    for bad in (Decimal("1e200000"), 10**20, values.MB_MAX + 1, "1" * 65, Decimal("0.0000001")):
        refused(ledger, "R-IN2", lambda bad=bad: ledger.record_usage(key, bad))
    refused(ledger, "R-IN2", lambda: ledger.create_package("p", data_mb=1, validity_days=36_501))
    refused(
        ledger,
        "R-IN2",
        lambda: ledger.create_customer_service("s", data_mb_per_month=math.nan),
    )
    # one set of types for every number: int, Decimal, numeric text, a finite float
    for days in (10, Decimal(10), "10", 10.0):
        ledger.create_package("p", data_mb=days, validity_days=days, price=days)
    ledger.record_usage(key, "0.5")
    ledger.record_usage(key, 0.25)
    assert ledger.sim(key).data_left_mb == Decimal("999.25")
    message = refused(
        ledger, "R-PK1", lambda: ledger.create_package("p", data_mb=1, validity_days=1, price=-1)
    )
    assert "price" in message and "MB" not in message


def test_r_in3_times_carry_a_zone_and_a_representable_year(ledger: SimLedger) -> None:
    key = ready_sim(ledger, 1)
    for bad in ("2020-01-01", "x", date(2024, 1, 1), 0, 1.5):
        refused(ledger, "R-IN3", lambda bad=bad: ledger.record_usage(key, 1, at=bad))
        refused(ledger, "R-IN3", lambda bad=bad: ledger.expire_packages(bad))
        refused(ledger, "R-IN3", lambda bad=bad: ledger.sim_as_of(key, at=bad))
    for far in (datetime(9950, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)):
        refused(ledger, "R-IN3", lambda far=far: ledger.record_usage(key, 1, at=far))
        refused(ledger, "R-IN3", lambda far=far: ledger.expire_packages(far))
    refused(ledger, "R-ES3", lambda: ledger.record_usage(key, 1, at=datetime(2024, 1, 1)))
    # a time a command records is kept in UTC
    east = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))
    ledger.record_usage(key, 1, at=east)
    recorded = ledger.history(key)[-1].data["at"]
    assert recorded == east and recorded.utcoffset() == timedelta(0)
    # a query may ask about any year: before the SIM existed is said so
    for early in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        T0 - timedelta(seconds=1),
    ):
        message = refused(
            ledger, "R-ES3", lambda early=early: ledger.sim_as_of(key, at=early), SimNotYetReceived
        )
        assert "did not exist yet" in message
    assert ledger.sim_as_of(key, at=datetime(9999, 12, 31, tzinfo=UTC)).iccid == key


def test_r_in4_flags_are_bools_and_lists_are_collections(ledger: SimLedger) -> None:
    key = received_sim(ledger, 1)
    for bad in ("no", 1, None, [True]):
        refused(
            ledger,
            "R-IN4",
            lambda bad=bad: ledger.receive_sims(
                [iccid(5)], operator="3UK", sim_type="prepaid", esim=bad
            ),
        )
        refused(ledger, "R-IN4", lambda bad=bad: ledger.complete_integration_check(key, ok=bad))
    for bad in (None, 5, {"a": 1}, b"89", object()):
        refused(ledger, "R-IN4", lambda bad=bad: ledger.pause(bad))
        refused(ledger, "R-IN4", lambda bad=bad: ledger.set_labels(key, bad))
        refused(ledger, "R-IN4", lambda bad=bad: ledger.import_sims_csv(bad))
    refused(ledger, "R-IN4", lambda: ledger.pause([[iccid(1)]]))
    refused(ledger, "R-IN4", lambda: ledger.set_labels(key, [f"l{n}" for n in range(51)]))
    refused(ledger, "R-IN4", lambda: ledger.sims(status=5))
    refused(ledger, "R-IN4", lambda: ledger.sims(descending="yes"))
    refused(ledger, "R-IN4", lambda: ledger.export_sims_csv(None))
    # a bulk answer names a refused item by a short, printable key
    answer = ledger.pause([key, "\x00" * 10, HUGE_TEXT, 10**5000])
    assert answer.accepted == [] or answer.accepted == [key]
    assert all(len(k) <= 80 and k.isprintable() for k in answer.rejected)


def test_the_issue_reproductions_are_refusals_or_work(ledger: SimLedger) -> None:
    """Issue 14 item 11, one by one."""
    key = ready_sim(ledger, 1)
    for call in (
        lambda: ledger.receive_sims(None, operator="3UK", sim_type="prepaid"),
        lambda: ledger.pause(None),
        lambda: ledger.set_labels(key, None),
        lambda: ledger.import_sims_csv(None),
        lambda: ledger.sims(status=5),
        lambda: ledger.sim_as_of(key, at="2020-01-01"),
        lambda: ledger.record_usage(key, 1, at="x"),
        lambda: ledger.expire_packages("x"),
        lambda: ledger.create_customer_service("s", data_mb_per_month=math.nan),
        lambda: ledger.set_note(key, "\ud800"),
        lambda: ledger.receive_sims([iccid(7)], operator="Op\nX", sim_type="prepaid"),
        lambda: ledger.assign_to_company(key, "Acme\x07"),
        lambda: ledger.create_package("p", data_mb=1, validity_days=10**20),
        lambda: ledger.set_note(key, "a\x00b"),
        lambda: ledger.set_note(key, "é" * 2700),
        lambda: ledger.record_usage(key, Decimal("1e200000")),
    ):
        refused_with_any_rule(ledger, call)
    with pytest.raises(SimNotYetReceived):
        ledger.sim_as_of(key, at=datetime(1, 1, 1, tzinfo=UTC))
    ledger.sims()
    ledger.rebuild_views()


def refused_with_any_rule(ledger: SimLedger, call: Any) -> None:
    before = event_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.rule.startswith("R-")
    assert event_count(ledger) == before


def test_a_forged_cursor_is_refused_not_sent_to_the_store(ledger: SimLedger) -> None:
    """A cursor is the caller's text too: a key with a NUL, an ICCID of letters or a time
    beyond UTC's year 1 is no cursor of the list (R-SIM2), on every store."""
    received_sim(ledger, 1)

    def forged(sort: str, key: Any, iccid: Any = "8944") -> str:
        raw = json.dumps({"s": sort, "d": False, "k": key, "i": iccid}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    for sort, cursor in (
        ("operator", forged("operator", "a\x00b")),
        ("operator", forged("operator", "\udc80")),
        ("operator", forged("operator", "3UK", "89\x0044")),
        ("days_left", forged("days_left", "0001-01-01T00:00:00+14:00")),
        # a number beyond a float's range is a key (it sorts as infinity); NaN is none
        ("data_left_mb", forged("data_left_mb", "nan")),
    ):
        refused(
            ledger, "R-SIM2", lambda sort=sort, cursor=cursor: ledger.sims(sort=sort, cursor=cursor)
        )
