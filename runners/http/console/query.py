"""The SIM list's query as the page's URL holds it, and the API's list call that answers it.

Every filter, the sort and the cursor live in the URL (shareable; the back button works);
the same parameters travel in a hidden field of the bulk forms, so "select all N matching"
means the SIMs of that query. The page is fetched by the API's own route function
(``routes_reads.list_sims``): the company confinement, the checks and the answer are the
API's, not a copy of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode

from simledger.domain.errors import InvalidInput, shown
from simledger.domain.types import SimStatus, SimType
from simledger.projections.models import Page, SimListItem
from simledger.runners.http import routes_reads
from simledger.runners.http.auth import Caller

PAGE_SIZE = 50
TEXT_FILTERS = ("operator", "company", "label", "group_id", "search")
MAX_TEXT = 1000


@dataclass(frozen=True)
class ListQuery:
    status: tuple[str, ...] = ()
    sim_type: tuple[str, ...] = ()
    operator: str = ""
    company: str = ""
    label: str = ""
    group_id: str = ""
    search: str = ""
    sort: str = "iccid"
    descending: bool = False
    cursor: str = ""
    page: int = 1
    limit: int = PAGE_SIZE

    @classmethod
    def parse(cls, pairs: Any) -> ListQuery:
        """From ``(name, value)`` pairs (a URL's query, or a form); unknown names are left
        out, values are cut to a bounded length (the ledger checks the rest)."""
        items = pairs.multi_items() if hasattr(pairs, "multi_items") else list(pairs)
        values: dict[str, list[str]] = {}
        for name, value in items:
            if isinstance(value, str):
                values.setdefault(name, []).append(value[:MAX_TEXT])

        def one(name: str, default: str = "") -> str:
            return (values.get(name) or [default])[0].strip()

        def number(name: str, default: int, low: int, high: int) -> int:
            raw = one(name)
            return min(high, max(low, int(raw))) if raw.isdigit() else default

        return cls(
            status=tuple(v for v in values.get("status", []) if v),
            sim_type=tuple(v for v in values.get("sim_type", []) if v),
            operator=one("operator"),
            company=one("company"),
            label=one("label"),
            group_id=one("group_id"),
            search=one("search"),
            sort=one("sort", "iccid") or "iccid",
            descending=one("descending") in ("1", "true", "on"),
            cursor=one("cursor"),
            page=number("page", 1, 1, 10**9),
            limit=number("limit", PAGE_SIZE, 1, 1000),
        )

    @classmethod
    def from_text(cls, text: str) -> ListQuery:
        return cls.parse(parse_qsl(text[:20_000], keep_blank_values=False))

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        query = replace(self, **changes) if changes else self
        pairs: list[tuple[str, str]] = [("status", s) for s in query.status]
        pairs += [("sim_type", t) for t in query.sim_type]
        pairs += [(name, getattr(query, name)) for name in TEXT_FILTERS if getattr(query, name)]
        if query.sort != "iccid":
            pairs.append(("sort", query.sort))
        if query.descending:
            pairs.append(("descending", "1"))
        if query.limit != PAGE_SIZE:
            pairs.append(("limit", str(query.limit)))
        if query.cursor:
            pairs += [("cursor", query.cursor), ("page", str(query.page))]
        return pairs

    def url(self, path: str = "/ui/sims", **changes: Any) -> str:
        """This query (with ``changes``) as a URL; any change but the cursor's starts at the
        first page again."""
        if "cursor" not in changes:
            changes = {**changes, "cursor": "", "page": 1}
        text = urlencode(self.params(**changes))
        return f"{path}?{text}" if text else path

    def selection(self) -> str:
        """The filters alone (no cursor): what "all matching" means."""
        return urlencode(self.params(cursor="", page=1))

    def toggled_status(self, status: str) -> ListQuery:
        chosen = set(self.status)
        chosen ^= {status}
        return replace(self, status=tuple(s for s in STATUS_ORDER if s in chosen))


STATUS_ORDER = tuple(s.value for s in SimStatus)


def _enum_values(raw: tuple[str, ...], kind: type[StrEnum], what: str) -> list[Any]:
    known: dict[str, Any] = {m.value: m for m in kind}
    unknown = [value for value in raw if value not in known]
    if unknown:
        raise InvalidInput(
            f"unknown {what} {shown(unknown[0])}: one of {', '.join(known)}", rule="R-SIM2"
        )
    return [known[value] for value in raw]


def fetch(caller: Caller, query: ListQuery, **changes: Any) -> Page:
    """One page of the list, answered by the API's route function."""
    if changes:
        query = replace(query, **changes)
    response = routes_reads.list_sims(
        caller,
        status=_enum_values(query.status, SimStatus, "status") or None,
        sim_type=_enum_values(query.sim_type, SimType, "SIM type") or None,
        operator=query.operator or None,
        company=query.company or None,
        label=query.label or None,
        group_id=query.group_id or None,
        search=query.search or None,
        sort=query.sort,
        descending=query.descending,
        limit=query.limit,
        cursor=query.cursor or None,
        min_position=None,
    )
    return Page.model_validate_json(bytes(response.body))


def status_counts(caller: Caller, query: ListQuery) -> dict[str, int]:
    """How many SIMs each status chip would show, under the page's other filters."""
    return {
        status: fetch(caller, query, status=(status,), cursor="", limit=1).total
        for status in STATUS_ORDER
    }


def every_item(caller: Caller, query: ListQuery, cap: int | None = None) -> Iterator[SimListItem]:
    """Every SIM the query selects, page by page (1000 a page), at most ``cap``."""
    cursor, given = "", 0
    while True:
        page = fetch(caller, query, cursor=cursor, limit=1000)
        for item in page.items:
            if cap is not None and given >= cap:
                return
            given += 1
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def checked(form: Mapping[str, Any], name: str) -> bool:
    return str(form.get(name, "")).lower() in ("1", "true", "on", "yes")
