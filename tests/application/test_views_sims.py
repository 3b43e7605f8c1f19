"""The SIM list view (``SimLedger.sims``, R-SIM2) on every store: rows, filters, sorts, cursors.

Expected results are computed from the aggregates (``ledger.sim(iccid)``), never from the
view itself: the view must agree with the write side on every column it shares with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from helpers import SIM_LIST_SHARED_COLUMNS as SHARED
from helpers import FakeClock, iccid, new_ledger, pg_connect

from simledger import InvalidInput, SimLedger, SimStatus, SimType, SimView
from simledger.projections.listing import SORTS
from simledger.projections.models import Page, SimListItem

OPERATORS = ("3UK", "Orange", "A1")
TYPES = (SimType.PREPAID, SimType.SUBSCRIPTION, SimType.PAYGO)
COMPANIES = ("Acme", "Globex", None)
NOTES = ("Truck 7", "spare", None, "100% spare_part", None)
USERS = ("ALICE@example.com", "bob@example.com", None, None)
LABELS: tuple[list[str], ...] = (["fleet"], ["fleet", "eu"], [], ["eu"], [])


def build_fleet(ledger: SimLedger, clock: FakeClock, size: int = 18) -> list[str]:
    """SIMs in every status, with varied operators, companies, labels, notes, end users,
    packages of different validity, usage this month and last month, and a shared group
    whose pool some members drew."""
    short = ledger.create_package("500 MB / 10 days", data_mb=500, validity_days=10)
    long = ledger.create_package("1 GB / 30 days", data_mb=1000, validity_days=30)
    pool = ledger.create_package("Pool 2 GB", data_mb=2000, validity_days=20)
    keys: list[str] = []
    for n in range(size):
        [key] = ledger.receive_sims(
            [iccid(n * 7 + 1)],
            operator=OPERATORS[n % 3],
            sim_type=TYPES[n % 3],
            esim=n % 4 == 0,
        )
        keys.append(key)
    members: list[str] = []
    for n, key in enumerate(keys):
        stage = n % 9
        if stage == 0:
            pass  # pending
        elif stage == 1:
            ledger.complete_integration_check(key, ok=False, reason="unknown to the operator")
        elif stage == 2:
            ledger.mark_not_available(key, "no integration")
        else:
            ledger.complete_integration_check(key, ok=True)
        if stage >= 4:
            ledger.assign_line(key, "+447700900123")
        company = COMPANIES[n % 3]
        if stage >= 4 and company is not None:
            ledger.assign_to_company(key, company)
        elif stage >= 4:
            ledger.mark_store_use(key)
        if stage in (5, 6, 7):
            ledger.assign_package(key, short if n % 2 else long)
        if stage == 8:
            members.append(key)
        if stage in (6, 7):
            ledger.activate(key)
            ledger.record_usage(key, Decimal(n) + Decimal("0.5"))
        if stage == 7:
            ledger.record_usage(key, 3, at=clock.now - timedelta(days=40))  # last month
            paused = ledger.pause([key])
            ledger.confirm(paused.operation_id, key)
    for n, key in enumerate(keys):
        if LABELS[n % 5]:
            ledger.set_labels(key, LABELS[n % 5])
        if NOTES[n % 5] is not None:
            ledger.set_note(key, NOTES[n % 5])
        if USERS[n % 4] is not None:
            ledger.set_end_user(key, USERS[n % 4])
    if members:
        ledger.create_shared_group("Drivers", members, pool)
        for member in members:
            ledger.activate(member)
        ledger.record_usage(members[0], 120)
    clock.advance(timedelta(days=2, hours=3))
    return keys


def all_items(ledger: SimLedger, **kwargs: Any) -> list[SimListItem]:
    """Every row of a query, following the cursors page by page."""
    items: list[SimListItem] = []
    page = ledger.sims(**kwargs)
    total = page.total
    while True:
        items.extend(page.items)
        assert page.total == total
        if page.next_cursor is None:
            break
        page = ledger.sims(**kwargs, cursor=page.next_cursor)
    assert len(items) == total
    return items


def _shared(item: SimListItem | SimView) -> dict[str, Any]:
    return {name: getattr(item, name) for name in SHARED}


@pytest.fixture
def fleet(store_env: dict[str, str]) -> tuple[SimLedger, FakeClock, dict[str, SimView]]:
    ledger, clock = new_ledger(store_env)
    keys = build_fleet(ledger, clock)
    return ledger, clock, {key: ledger.sim(key) for key in keys}


def test_rows_equal_the_aggregates(fleet: tuple[SimLedger, FakeClock, dict[str, SimView]]) -> None:
    ledger, _, sims = fleet
    page = ledger.sims(limit=1000)
    assert page.total == len(sims) and page.next_cursor is None
    assert {item.iccid for item in page.items} == set(sims)
    for item in page.items:
        assert _shared(item) == _shared(sims[item.iccid])
        assert item.in_session == "n/a" and item.rules == []
    statuses = {item.status for item in page.items}
    assert statuses == set(SimStatus), "the fleet covers every status"
    in_group = [item for item in page.items if item.group_id is not None]
    assert len(in_group) >= 2 and len({item.data_left_mb for item in in_group}) == 1
    assert in_group[0].data_left_mb == Decimal(1880)  # the pool, drawn by one member


FILTERS: list[tuple[dict[str, Any], Callable[[SimView], bool]]] = [
    ({"status": "active"}, lambda s: s.status is SimStatus.ACTIVE),
    (
        {"status": [SimStatus.SUSPENDED, "blank"]},
        lambda s: s.status in (SimStatus.SUSPENDED, SimStatus.BLANK),
    ),
    ({"sim_type": "prepaid"}, lambda s: s.sim_type is SimType.PREPAID),
    ({"operator": "Orange"}, lambda s: s.operator == "Orange"),
    ({"company": "Acme"}, lambda s: s.company == "Acme"),
    ({"label": "eu"}, lambda s: "eu" in s.labels),
    ({"search": "alice@"}, lambda s: (s.end_user or "").lower().startswith("alice@")),
    ({"search": "SPARE"}, lambda s: "spare" in (s.note or "").lower()),
    ({"search": "100%"}, lambda s: "100%" in (s.note or "")),
    ({"search": "e_p"}, lambda s: "e_p" in (s.note or "")),
    ({"search": "8944 0000 0000 0000 0"}, lambda s: s.iccid.startswith("89440000000000000")),
    ({"search": "894400000000000001"}, lambda s: s.iccid.startswith("894400000000000001")),
    ({"search": iccid(8)}, lambda s: s.iccid == iccid(8)),
    (
        {"status": "active", "operator": "3UK", "company": "Globex"},
        lambda s: s.status is SimStatus.ACTIVE and s.operator == "3UK" and s.company == "Globex",
    ),
    (
        {"label": "fleet", "sim_type": ["paygo", "subscription"], "search": "example.com"},
        lambda s: (
            "fleet" in s.labels
            and s.sim_type in (SimType.PAYGO, SimType.SUBSCRIPTION)
            and "example.com" in (s.end_user or "")
        ),
    ),
]


def test_each_filter_and_their_combination(
    fleet: tuple[SimLedger, FakeClock, dict[str, SimView]],
) -> None:
    ledger, _, sims = fleet
    group_ids = {s.group_id for s in sims.values() if s.group_id is not None}
    [group_id] = group_ids
    cases = [
        *FILTERS,
        ({"group_id": group_id}, lambda s: s.group_id == group_id),
        ({"group_id": str(group_id), "status": "active"}, lambda s: s.group_id == group_id),
    ]
    nonempty = 0
    for filters, predicate in cases:
        expected = sorted(k for k, s in sims.items() if predicate(s))
        got = [item.iccid for item in all_items(ledger, limit=4, **filters)]
        assert got == expected, filters
        nonempty += bool(expected)
        assert ledger.sims(limit=1, **filters).total == len(expected)
    assert nonempty >= len(cases) - 1, "the fleet exercises the filters"
    assert ledger.sims(operator="Nobody").total == 0
    assert ledger.sims(operator="Nobody").items == []


NOT_SET = {"number": Decimal(-1), "time": datetime.min.replace(tzinfo=UTC), "text": ""}
"""The documented order: a column that is not set sorts lowest."""


def _expected_key(sim: SimView, sort: str) -> Any:
    column, kind = SORTS[sort]
    if column in ("in_session", "rules"):
        return ""  # one value for every SIM (no event fills them yet)
    if column == "labels":
        return ",".join(sim.labels)
    value = getattr(sim, column)
    if value is None:
        return NOT_SET[kind]
    return str(value) if isinstance(value, UUID) else value


def _order(sims: dict[str, SimView], sort: str, descending: bool) -> list[str]:
    keys = [k for k, s in sorted(sims.items(), key=lambda kv: (_expected_key(kv[1], sort), kv[0]))]
    return keys[::-1] if descending else keys


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_every_column_sorts_both_ways_and_pages_by_cursor(
    fleet: tuple[SimLedger, FakeClock, dict[str, SimView]], descending: bool
) -> None:
    ledger, _, sims = fleet
    for sort in SORTS:
        expected = _order(sims, sort, descending)
        full = [i.iccid for i in ledger.sims(sort=sort, descending=descending, limit=1000).items]
        assert full == expected, sort
        paged = [i.iccid for i in all_items(ledger, sort=sort, descending=descending, limit=5)]
        assert paged == expected, sort


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_filters_and_sorts_combine_the_sort_on_the_filtered_column_too(
    fleet: tuple[SimLedger, FakeClock, dict[str, SimView]], descending: bool
) -> None:
    """Each filter with a sort on every column, paged: the filtered SIMs in the sort's
    order. A filter that fixes the sort key (operator filter, operator sort) is read in
    ICCID order by the SQL stores: the same order, since the key is one value."""
    ledger, _, sims = fleet
    operator = max({s.operator for s in sims.values()}, key=lambda o: (o == "3UK", o))
    companies = sorted({s.company for s in sims.values() if s.company})
    filters: list[tuple[dict[str, Any], Callable[[SimView], bool]]] = [
        ({"operator": operator}, lambda s: s.operator == operator),
        ({"status": "active"}, lambda s: s.status is SimStatus.ACTIVE),
        ({"sim_type": "prepaid"}, lambda s: s.sim_type is SimType.PREPAID),
        ({"company": companies[0]}, lambda s: s.company == companies[0]),
    ]
    for filtered, predicate in filters:
        chosen = {k: s for k, s in sims.items() if predicate(s)}
        assert len(chosen) >= 2, filtered
        for sort in ("iccid", "status", "operator", "sim_type", "company", "note", "days_left"):
            expected = _order(chosen, sort, descending)
            paged = all_items(ledger, sort=sort, descending=descending, limit=2, **filtered)
            assert [i.iccid for i in paged] == expected, (filtered, sort)


def test_sort_follows_values_not_insertion(
    fleet: tuple[SimLedger, FakeClock, dict[str, SimView]],
) -> None:
    ledger, _, _ = fleet
    usage = [i.this_month_mb for i in ledger.sims(sort="this_month_mb", limit=1000).items]
    assert usage == sorted(usage) and usage[-1] > usage[0]
    days = [i.days_left for i in ledger.sims(sort="days_left", descending=True).items]
    known = [d for d in days if d is not None]
    assert known == sorted(known, reverse=True) and len(set(known)) > 1
    assert days.index(None) == len(known), "SIMs without a package come last, descending"


def test_cursor_is_stable_while_sims_change(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    originals = ledger.receive_sims(
        [iccid(n * 10) for n in range(12)], operator="3UK", sim_type="paygo"
    )
    ledger.receive_sims([iccid(n * 10 + 5) for n in range(3)], operator="A1", sim_type="paygo")
    page = ledger.sims(sort="operator", limit=4)
    seen = [i.iccid for i in page.items]
    # Between pages: new SIMs before and after the cursor, and changes that keep the sort key.
    before = ledger.receive_sims([iccid(1)], operator="3UK", sim_type="paygo")  # sorts first
    after = ledger.receive_sims([iccid(999)], operator="3UK", sim_type="paygo")
    for key in originals[:6]:
        ledger.set_note(key, "changed while paging")
    cursor = page.next_cursor
    while cursor is not None:
        page = ledger.sims(sort="operator", limit=4, cursor=cursor)
        seen += [i.iccid for i in page.items]
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)), "no SIM twice"
    assert set(originals) <= set(seen), "no SIM skipped"
    assert after[0] in seen and before[0] not in seen
    assert page.total == 17


def test_arguments_are_checked() -> None:
    ledger, _ = new_ledger()
    ledger.receive_sims([iccid(1), iccid(2)], operator="3UK", sim_type="paygo")
    for limit in (0, 1001, -5, "0", 2.5):
        with pytest.raises(InvalidInput) as error:
            ledger.sims(limit=limit)
        assert error.value.rule == "R-SIM2"
    # the domain of values (R-IN2): a number is an int, a Decimal, numeric text or a finite
    # float, never a bool
    for bad in (True, None, float("nan"), [1]):
        with pytest.raises(InvalidInput) as error:
            ledger.sims(limit=bad)  # type: ignore[arg-type]
        assert error.value.rule == "R-IN2"
    assert len(ledger.sims(limit="1").items) == 1
    assert len(ledger.sims(limit=1000).items) == 2 and len(ledger.sims(limit=1).items) == 1
    with pytest.raises(InvalidInput, match="sort"):
        ledger.sims(sort="colour")
    with pytest.raises(InvalidInput) as error:
        ledger.sims(status="sleeping")
    assert error.value.rule == "R-SIM3"
    with pytest.raises(InvalidInput):
        ledger.sims(sim_type="postpaid")
    with pytest.raises(InvalidInput):
        ledger.sims(group_id="not-a-uuid")
    for cursor in ("garbage", "", "eyJ4IjogMX0"):
        with pytest.raises(InvalidInput) as error:
            ledger.sims(cursor=cursor)
        assert error.value.rule == "R-SIM2"
    page = ledger.sims(sort="status", limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInput, match="sort order"):
        ledger.sims(sort="status", descending=True, cursor=page.next_cursor)
    assert isinstance(ledger.sims(sort="status", cursor=page.next_cursor), Page)


def test_read_time_columns_follow_the_clock(store_env: dict[str, str]) -> None:
    ledger, clock = new_ledger(store_env)
    package = ledger.create_package("10 days", data_mb=100, validity_days=10)
    [key] = ledger.receive_sims([iccid(3)], operator="3UK", sim_type="paygo")
    ledger.complete_integration_check(key, ok=True)
    ledger.assign_line(key, "+447700900123")
    ledger.assign_to_company(key, "Acme")
    ledger.assign_package(key, package)
    ledger.activate(key)
    ledger.record_usage(key, 7)
    ledger.receive_sims([iccid(4)], operator="3UK", sim_type="paygo")
    [item] = ledger.sims(status="active").items
    assert (item.days_left, item.this_month_mb, item.data_left_mb) == (10, Decimal(7), Decimal(93))
    page = ledger.sims(sort="this_month_mb", limit=1)
    assert page.next_cursor is not None
    clock.advance(timedelta(days=3, hours=1))
    [item] = ledger.sims(status="active").items
    assert item.days_left == 7 and item.this_month_mb == 7
    clock.advance(timedelta(days=30))  # into the next month, past the expiry
    [item] = ledger.sims(status="active").items
    assert item.days_left == 0 and item.this_month_mb == 0
    assert _shared(item) == _shared(ledger.sim(key))
    with pytest.raises(InvalidInput, match="month"):
        ledger.sims(sort="this_month_mb", cursor=page.next_cursor)


def test_views_survive_reopening(persistent_store_env: dict[str, str]) -> None:
    first, _ = new_ledger(persistent_store_env)
    keys = first.receive_sims([iccid(n) for n in range(5)], operator="3UK", sim_type="paygo")
    first.set_labels(keys[0], ["eu"])
    position = first.views.store.position()
    assert position > 0
    second, _ = new_ledger(persistent_store_env)
    assert second.views.store.position() == position, "the views were not refolded"
    assert second.sims(label="eu").total == 1
    second.set_note(keys[1], "from the second ledger")
    # The first ledger reads what the second one wrote (its query catches up first).
    [item] = first.sims(search="second ledger").items
    assert item.iccid == keys[1]
    assert first.verify_views() == {"sims": [], "pending_activity": [], "shared_groups": []}


def test_group_ids_in_rows_are_uuids(
    fleet: tuple[SimLedger, FakeClock, dict[str, SimView]],
) -> None:
    ledger, _, _ = fleet
    grouped = ledger.sims(sort="group_id", descending=True).items[0]
    assert isinstance(grouped.group_id, UUID)
    assert ledger.sims(group_id=grouped.group_id).total >= 2


def _month_indexes(ledger: SimLedger, env: dict[str, str]) -> list[str]:
    store: Any = ledger.views.store
    with pg_connect(env) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'view_sims' AND indexname LIKE %s",
            (store.schema, "%_month_%"),
        ).fetchall()
    return sorted(f"{name} {definition}" for name, definition in rows)


@pytest.mark.postgres
def test_postgres_sorts_this_months_mb_by_an_index_of_that_month(
    postgres_env: dict[str, str],
) -> None:
    """The key of "this month's MB" changes with the month, so each month has its own
    expression index: created on the first page sorted by it, kept for the month before,
    dropped after that; the pages are the same as without it."""
    ledger, clock = new_ledger(postgres_env)
    package = ledger.create_package("1 GB", data_mb=1000, validity_days=365)
    keys = ledger.receive_sims([iccid(n) for n in range(6)], operator="3UK", sim_type="paygo")
    for n, key in enumerate(keys[:4]):
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, f"+4477009001{n:02d}")
        ledger.assign_to_company(key, "Acme")
        ledger.assign_package(key, package)
        ledger.activate(key)
        if n % 3:
            ledger.record_usage(key, 10 * (n % 3))
    month = clock().strftime("%Y-%m")

    def order(descending: bool) -> list[tuple[Decimal, str]]:
        page = ledger.sims(sort="this_month_mb", descending=descending, limit=1000)
        return [(item.this_month_mb, item.iccid) for item in page.items]

    ascending = order(False)
    assert ascending == sorted(ascending)
    assert order(True) == sorted(ascending, reverse=True)
    [index] = _month_indexes(ledger, postgres_env)
    assert f"_month_{month.replace('-', '_')}_" in index and f"'{month}'" in index

    seen = [month]
    for _ in range(2):  # two months later: the first month's index is gone
        clock.advance(timedelta(days=31))
        seen.append(clock().strftime("%Y-%m"))
        assert {mb for mb, _ in order(False)} == {Decimal(0)}  # nothing used this month
    indexes = _month_indexes(ledger, postgres_env)
    assert [m for m in seen if any(f"'{m}'" in i for i in indexes)] == seen[1:]


def test_pages_equal_validated_models(
    fleet: tuple[SimLedger, FakeClock, dict[str, SimView]],
) -> None:
    """Items and pages are built without validation (a speed path): each must be
    exactly what validating its own fields gives, types included."""
    ledger, _, _ = fleet
    page = ledger.sims(limit=5)
    assert page.next_cursor is not None and len(page.items) == 5
    for item in ledger.sims(limit=1000).items:
        fields = {name: getattr(item, name) for name in SimListItem.model_fields}
        validated = SimListItem(**fields)
        assert validated == item
        assert validated.model_dump() == item.model_dump()
        assert [type(v) for v in vars(validated).values()] == [type(v) for v in vars(item).values()]
        assert item.model_fields_set == validated.model_fields_set
        with pytest.raises(ValueError, match="frozen"):
            item.note = "changed"
    assert Page(items=page.items, next_cursor=page.next_cursor, total=page.total) == page


@pytest.mark.postgres
def test_postgres_rebuild_indexes_the_rare_statuses_for_every_sort(
    postgres_env: dict[str, str],
) -> None:
    """A rebuild adds status-led partial indexes over the SIMs whose status few SIMs have:
    a filter on such a status, sorted by any column, reads them (not a walk of the whole
    column's index), and pages as before."""
    ledger, _ = new_ledger(postgres_env)
    package = ledger.create_package("1 GB", data_mb=1000, validity_days=30)
    keys = ledger.receive_sims([iccid(n) for n in range(40)], operator="3UK", sim_type="paygo")
    for n, key in enumerate(keys[:4]):  # 4 active SIMs of 40: a minority status
        ledger.complete_integration_check(key, ok=True)
        ledger.assign_line(key, f"+4477009002{n:02d}")
        ledger.assign_to_company(key, "Acme")
        ledger.assign_package(key, package)
        ledger.activate(key)
    ledger.rebuild_views()
    store: Any = ledger.views.store
    with pg_connect(postgres_env) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
                (store.schema, "%\\_few\\_%"),
            ).fetchall()
        ]
        assert len(names) >= 10
        conn.execute("SET enable_sort = off")  # a tiny table: an ordered read, as for a big one
        from simledger.adapters.views.sql import LIVE

        query = make_query_for(ledger, status="active", sort="days_left")
        statement, params = store.page_statement(query, LIVE)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + statement, params).fetchall())
        conn.execute("RESET enable_sort")
    assert "_few_" in plan, plan
    expected = sorted(keys[:4])
    paged = all_items(ledger, status="active", sort="days_left", limit=3)
    assert sorted(i.iccid for i in paged) == expected
    days = [i.days_left for i in paged]
    assert None not in days
    assert days == sorted(d for d in days if d is not None)
    ledger.close()


def make_query_for(ledger: SimLedger, **arguments: Any) -> Any:
    from simledger.projections.listing import make_query

    defaults: dict[str, Any] = dict.fromkeys(
        ("status", "sim_type", "operator", "company", "label", "group_id", "search", "cursor")
    )
    return make_query(**{**defaults, **arguments}, descending=False, limit=100, now=ledger.clock())
