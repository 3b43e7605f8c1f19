"""The SQL view stores are total: any value the event store holds lists, sorts, pages,
searches, rebuilds and verifies (issue 14, items 1 and 8).

The "poison" values (NUL bytes, 3,000 and 100,000 characters of text, ``Decimal("1e200000")``
and other numbers ``numeric`` cannot hold, huge ints) are written as events directly (the
aggregates' own events, triggered without the commands' checks, saved through the ledger):
stores hold such events from before the domain bounded its inputs, and will go on holding
them. The expected answers come from the in-memory store folded from the same events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from helpers import FakeClock, iccid

from simledger import InvalidValue, SimLedger, SimledgerError
from simledger.adapters.views.base import ViewStore
from simledger.adapters.views.memory import MemoryViewStore
from simledger.application.views_compare import differs
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.projections.listing import SORTS, encode_cursor, make_query
from simledger.projections.rows import SimRow

LONG = "L" * 3000
HUGE = "h" * 100_000
TWIN = "T" * 3000
"""Two notes that share their first 3,000 characters: their sort keys tie."""
NUMBERS = (
    Decimal("1e200000"),
    Decimal("-1e200000"),
    Decimal("1e-200000"),
    Decimal(10**40),
    Decimal("0.1000000000000000000000000000000001"),
    Decimal("0.1"),
    Decimal("NaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
)


@pytest.fixture
def ledger_env(persistent_store_env: dict[str, str]) -> dict[str, str]:
    return persistent_store_env


def _sim(number: int, operator: str) -> Sim:
    """A received SIM made from its event, without ``Sim.receive``'s checks."""
    return Sim.start(
        Sim.Received,
        id=iccid(number),
        operator=operator,
        sim_type="prepaid",
        esim=number % 2 == 0,
        activation_code=None,
        status="pending",
        order_id=None,
        service=None,
    )


def _texts(sim: Sim, **values: Any) -> Sim:
    if "company" in values:
        sim.trigger_event(Sim.CompanyAssigned, status="pending", company=values["company"])
    if "note" in values:
        sim.trigger_event(Sim.NoteSet, note=values["note"])
    if "end_user" in values:
        sim.trigger_event(Sim.EndUserSet, end_user=values["end_user"])
    if "labels" in values:
        sim.trigger_event(Sim.LabelsSet, labels=values["labels"])
    return sim


def seed(ledger: SimLedger, clock: FakeClock) -> dict[str, dict[str, Any]]:
    """The poison SIMs (and a few plain ones), a package and a group holding numbers no
    ``numeric`` holds; returns what each SIM was given."""
    given: dict[str, dict[str, Any]] = {
        iccid(1): {"operator": "Op\x00X", "company": "C\x00o", "note": "n\x00ul",
                   "end_user": "a\x00@x.com", "labels": ["l\x00b", "fleet"]},
        iccid(2): {"operator": "O" * 3000, "company": "C" * 3000, "note": LONG,
                   "end_user": "e" * 2990 + "@x.com", "labels": ["L" * 3000]},
        iccid(3): {"operator": "o" * 100_000, "note": HUGE, "labels": ["y" * 100_000, "b"]},
        iccid(4): {"operator": "3UK", "note": "\x01\x02\x00", "end_user": "\x00\x02",
                   "labels": ["\x01", "\x00"]},
        iccid(5): {"operator": "3UK", "note": TWIN + "b", "company": TWIN + "a"},
        iccid(6): {"operator": "3UK", "note": TWIN + "a", "company": TWIN + "b"},
        iccid(7): {"operator": "A1", "note": "plain", "labels": ["fleet"]},
        iccid(8): {"operator": "A1"},
    }  # fmt: skip
    sims = []
    for number, values in enumerate(given.values(), start=1):
        sim = _sim(number, values["operator"])
        sims.append(_texts(sim, **{k: v for k, v in values.items() if k != "operator"}))
    for number, mb in enumerate(NUMBERS, start=20):
        sim = _sim(number, "Nums")
        sim.trigger_event(Sim.UsageRecorded, mb=mb, at=clock.now, country=None)
        given[sim.id] = {"operator": "Nums", "usage": mb}
        sims.append(sim)
    ledger.save(*sims)
    # A package no numeric holds, assigned through the commands: the copy's balance too.
    package = Package.create(
        str(uuid4()),
        name="P\x00" + "p" * 3000,
        data_mb=Decimal("1e200000"),
        validity_days=30,
        auto_renew=False,
        price=Decimal("-1e-200000"),
    )
    ledger.save(package)
    [plain] = ledger.receive_sims([iccid(40)], operator="A1", sim_type="subscription")
    ledger.complete_integration_check(plain, ok=True)
    ledger.assign_line(plain, "+447700900123")
    ledger.assign_to_company(plain, "Acme")
    ledger.assign_package(plain, package.id)
    given[plain] = {"operator": "A1", "data_left_mb": Decimal("1e200000")}
    group = SharedGroup.create(
        str(uuid4()),
        name="G\x00" + "g" * 3000,
        members=[],
        package_id=package.id,
        package_name="P\x00" + "p" * 3000,
        data_mb=Decimal("1e200000"),
        validity_days=30,
        now=clock.now,
        notify_users=False,
    )
    ledger.save(group)
    # The same kinds of value through the commands, while the domain still takes them (a
    # domain that refuses them says so with a SimledgerError and records nothing).
    with contextlib.suppress(SimledgerError):
        ledger.set_note(iccid(8), "c\x00md" + "z" * 3000)
    with contextlib.suppress(SimledgerError):
        ledger.set_labels(iccid(8), ["c\x00md", "k" * 3000])
    with contextlib.suppress(SimledgerError):
        ledger.set_end_user(iccid(8), "u\x00@x.com")
    with contextlib.suppress(SimledgerError):
        ledger.top_up(plain, Decimal("1e-200000"))
    with contextlib.suppress(SimledgerError):
        ledger.pause([iccid(40)])
    clock.advance(timedelta(seconds=1))
    return given


def memory_views(ledger: SimLedger) -> MemoryViewStore:
    """The in-memory store folded from every event (what verify compares with)."""
    built = MemoryViewStore()
    ledger.views._apply_range(built.tx(), 0, ledger.views.store.position())
    return built


def walk(store: ViewStore, clock: FakeClock, limit: int = 3, **filters: Any) -> list[SimRow]:
    """Every row of a listing, page by page through the cursors."""
    rows: list[SimRow] = []
    cursor: str | None = None
    # The text filters go to the store as they are: the public sims() refuses those
    # outside the domain of values (R-IN1), but the store must answer any query.
    texts = {k: filters.pop(k) for k in ("operator", "company", "label", "search") if k in filters}
    for _ in range(1000):
        query = replace(make_query(limit=limit, cursor=cursor, now=clock.now, **filters), **texts)
        page, _total = store.sims_page(query)
        rows += page[:limit]
        if len(page) <= limit:
            return rows
        cursor = encode_cursor(page[limit - 1], query)
    raise AssertionError("the listing does not end")


@pytest.fixture
def poisoned(ledger: SimLedger, clock: FakeClock) -> Iterator[dict[str, dict[str, Any]]]:
    yield seed(ledger, clock)


def test_every_sort_both_ways_pages_through_every_sim_as_in_memory(
    ledger: SimLedger, clock: FakeClock, poisoned: dict[str, dict[str, Any]]
) -> None:
    ledger.catch_up_views()
    expected = memory_views(ledger)
    store = ledger.views.store
    everyone = set(expected.all_sims)
    assert set(poisoned) <= everyone
    for sort in SORTS:
        for descending in (False, True):
            live = walk(store, clock, sort=sort, descending=descending)
            want = walk(expected, clock, sort=sort, descending=descending)
            assert [r.iccid for r in live] == [r.iccid for r in want], (sort, descending)
            assert not any(map(differs, live, want)), (sort, descending)
            assert {r.iccid for r in live} == everyone


def test_values_come_back_as_they_were_written(
    ledger: SimLedger, poisoned: dict[str, dict[str, Any]]
) -> None:
    items = {item.iccid: item for item in ledger.sims(limit=1000).items}
    for key, values in poisoned.items():
        item = items[key]
        assert item.operator == values["operator"]
        for field in ("company", "note", "end_user", "labels"):
            if field in values:
                assert getattr(item, field) == values[field], (key, field)
        if "usage" in values:  # the month's sum: 0 + mb, in the decimal context (NaN too)
            assert str(item.this_month_mb) == str(Decimal(0) + values["usage"])
        if "data_left_mb" in values:
            assert item.data_left_mb == values["data_left_mb"]
    [group] = ledger.shared_groups()
    assert group.name == "G\x00" + "g" * 3000
    assert group.package_name == "P\x00" + "p" * 3000
    assert group.data_mb == Decimal("1e200000")
    ledger.pending_activity()


@pytest.mark.parametrize(
    "filters",
    [
        {"operator": "Op\x00X"},
        {"operator": "O" * 3000},
        {"operator": "o" * 100_000},
        {"company": "C\x00o"},
        {"company": TWIN + "a"},
        {"label": "l\x00b"},
        {"label": "L" * 3000},
        {"label": "y" * 100_000},
        {"label": "\x01"},
        {"search": "\x00"},
        {"search": "N\x00UL"},
        {"search": "\x02"},
        {"search": "\x01"},
        {"search": "\x00\x02"},
        {"search": LONG},
        {"search": HUGE},
        {"search": "H" * 100_001},
        {"search": "8" * 100_000},
        {"search": "x" * 100_000},
        {"search": TWIN + "a", "sort": "note", "descending": True},
        {"search": "plain", "operator": "A1", "sort": "labels"},
    ],
    ids=lambda filters: ",".join(f"{k}={str(v)[:12]!r}" for k, v in filters.items()),
)
def test_filters_and_searches_of_any_value_answer_as_in_memory(
    ledger: SimLedger, clock: FakeClock, poisoned: dict[str, dict[str, Any]], filters: Any
) -> None:
    ledger.catch_up_views()
    expected = memory_views(ledger)
    live = walk(ledger.views.store, clock, limit=2, **filters)
    want = walk(expected, clock, limit=2, **filters)
    assert [r.iccid for r in live] == [r.iccid for r in want]
    assert not any(map(differs, live, want))
    try:
        page = ledger.sims(limit=1000, **filters)
    except InvalidValue as refused:  # outside the domain of values: the API says so
        assert refused.rule == "R-IN1"
        return
    assert [item.iccid for item in page.items] == [row.iccid for row in live]
    assert page.total == len(live)


def test_a_search_of_100000_characters_finds_what_holds_it(
    ledger: SimLedger, clock: FakeClock, poisoned: dict[str, dict[str, Any]]
) -> None:
    """In the store (the public sims() bounds a search to NAME_MAX characters, R-IN1)."""
    ledger.catch_up_views()
    store = ledger.views.store
    assert [r.iccid for r in walk(store, clock, search=HUGE.upper())] == [iccid(3)]
    assert walk(store, clock, search="q" * 100_000) == []
    assert walk(store, clock, search=iccid(3)[:6] + "0" * 100_000) == []
    with pytest.raises(InvalidValue):
        ledger.sims(search="q" * 100_000)


def test_rebuild_and_verify_with_poison_report_no_difference(
    ledger: SimLedger, clock: FakeClock, poisoned: dict[str, dict[str, Any]]
) -> None:
    assert not any(ledger.verify_views().values())
    before = walk(ledger.views.store, clock, sort="note")
    ledger.rebuild_views()
    assert not any(ledger.verify_views().values())
    after = walk(ledger.views.store, clock, sort="note")
    assert [r.iccid for r in after] == [r.iccid for r in before]
    assert not any(map(differs, after, before))
    # A batch after the rebuild changes poison rows in place (upserts, counts).
    ledger.save(_texts(ledger.repository.get(iccid(2)), note=HUGE + "\x00", labels=[]))
    ledger.catch_up_views()
    assert not any(ledger.verify_views().values())
    assert len(walk(ledger.views.store, clock, search="\x00", operator="O" * 3000)) == 1
