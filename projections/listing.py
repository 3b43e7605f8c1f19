"""The SIM list query (``SimLedger.sims``): validated filters, sort, and keyset cursors.

Every store sorts on the same key: the column's value with "not set" as the lowest value
(empty text, -1 MB, the beginning of time), ties broken by ICCID; a text by its first 200
characters and a number as a binary float (:mod:`.sort_keys`: keys of a bounded size, for
any value an event holds). A page's cursor holds
the last row's key and ICCID; the next page starts strictly after that pair, so paging is
stable while SIMs change: a SIM whose sort value does not change is returned exactly once.
``days_left`` sorts by the package's expiry (the same order); ``this_month_mb`` by this
month's MB as of the ledger's clock. ``in_session`` and ``rules`` carry no data yet (no event
reports sessions or rules: every SIM has the same value), so they sort by ICCID alone.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from uuid import UUID

from simledger.domain.errors import InvalidInput
from simledger.domain.types import SimStatus, SimType
from simledger.projections.rows import SimRow
from simledger.projections.sort_keys import number_key, text_key

MAX_LIMIT = 1000
RULE = "R-SIM2"


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    TIME = "time"
    BOOL = "bool"


SORTS: dict[str, tuple[str, Kind]] = {
    # sort name: (stored column it orders by, kind)
    "iccid": ("iccid", Kind.TEXT),
    "esim": ("esim", Kind.BOOL),
    "status": ("status", Kind.TEXT),
    "in_session": ("in_session", Kind.TEXT),
    "operator": ("operator", Kind.TEXT),
    "plan": ("plan", Kind.TEXT),
    "company": ("company", Kind.TEXT),
    "end_user": ("end_user", Kind.TEXT),
    "data_left_mb": ("data_left_mb", Kind.NUMBER),
    "days_left": ("expires_at", Kind.TIME),
    "expires_at": ("expires_at", Kind.TIME),
    "this_month_mb": ("this_month_mb", Kind.NUMBER),
    "note": ("note", Kind.TEXT),
    "rules": ("rules", Kind.TEXT),
    "labels": ("labels", Kind.TEXT),
    "sim_type": ("sim_type", Kind.TEXT),
    "group_id": ("group_id", Kind.TEXT),
}
"""Every column of the SIM list (R-SIM2) sorts, both ways (``days_left`` by the expiry)."""

CONSTANT_COLUMNS = frozenset({"in_session", "rules"})
"""Columns no event fills yet: one value for every SIM, so their order is the ICCID's."""

NO_NUMBER = Decimal(-1)
NO_TIME = datetime.min.replace(tzinfo=UTC)


def list_key(values: Iterable[str]) -> str:
    """How a list column (labels, rules) sorts: its items joined by commas."""
    return ",".join(values)


@dataclass(frozen=True)
class SimQuery:
    """A validated ``sims()`` call."""

    statuses: tuple[str, ...] | None = None
    sim_types: tuple[str, ...] | None = None
    operator: str | None = None
    company: str | None = None
    label: str | None = None
    group_id: str | None = None
    search: str | None = None
    sort: str = "iccid"
    descending: bool = False
    limit: int = 100
    after: tuple[Any, str] | None = None
    """The cursor's (sort key, ICCID), decoded into this module's key types."""
    month: str = ""
    """``YYYY-MM`` of the ledger's clock, for ``this_month_mb``."""

    @property
    def column(self) -> str:
        return SORTS[self.sort][0]

    @property
    def kind(self) -> Kind:
        return SORTS[self.sort][1]

    @property
    def only_counted_filters(self) -> bool:
        """True when ``total`` can come from the per-combination counts."""
        return self.label is None and self.group_id is None and self.search is None

    @property
    def search_digits(self) -> str | None:
        """The search text as an ICCID prefix (spaces and dashes dropped), if it is one."""
        if self.search is None:
            return None
        digits = self.search.replace(" ", "").replace("-", "")
        return digits if digits.isdigit() else None


def _one_or_many(value: Any, enum: type[StrEnum], what: str, rule: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    try:
        return tuple(dict.fromkeys(enum(v).value for v in values))
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(f"unknown {what} {value!r}; one of {allowed}", rule=rule) from None


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text: {value!r}", rule=RULE)
    return value.strip() or None


def make_query(
    *,
    status: Any = None,
    sim_type: Any = None,
    operator: Any = None,
    company: Any = None,
    label: Any = None,
    group_id: Any = None,
    search: Any = None,
    sort: Any = "iccid",
    descending: Any = False,
    limit: Any = 100,
    cursor: Any = None,
    now: datetime,
) -> SimQuery:
    """Validate the arguments of ``sims()``; refusals are ``InvalidInput`` (R-SIM2)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be a whole number from 1 to {MAX_LIMIT}: {limit!r}", rule=RULE
        )
    if sort not in SORTS:
        raise InvalidInput(f"cannot sort by {sort!r}; one of {', '.join(SORTS)}", rule=RULE)
    group: str | None = None
    if group_id is not None:
        try:
            group = str(group_id if isinstance(group_id, UUID) else UUID(str(group_id)))
        except ValueError:
            raise InvalidInput(f"not a group id: {group_id!r}", rule="R-SG1") from None
    query = SimQuery(
        statuses=_one_or_many(status, SimStatus, "status", "R-SIM3"),
        sim_types=_one_or_many(sim_type, SimType, "SIM type", "R-SIM7"),
        operator=_text(operator, "operator"),
        company=_text(company, "company"),
        label=_text(label, "label"),
        group_id=group,
        search=_text(search, "search"),
        sort=sort,
        descending=bool(descending),
        limit=limit,
        month=now.strftime("%Y-%m"),
    )
    if cursor is None:
        return query
    return SimQuery(**{**query.__dict__, "after": decode_cursor(cursor, query)})


# ---- sort keys ----------------------------------------------------------------------------------


def sort_key(row: SimRow, query: SimQuery) -> Any:
    """The row's sort value, "not set" mapped to the lowest value of its kind; text and
    numbers as :func:`~.sort_keys.text_key` and :func:`~.sort_keys.number_key` make them."""
    column, kind = query.column, query.kind
    if column in CONSTANT_COLUMNS:
        return ""
    if column == "this_month_mb":
        return number_key(this_month_value(row, query.month))
    if column in ("labels", "rules"):
        return text_key(list_key(getattr(row, column)))
    value = getattr(row, column)
    if value is None:
        value = {Kind.TEXT: "", Kind.NUMBER: NO_NUMBER, Kind.TIME: NO_TIME, Kind.BOOL: False}[kind]
    if kind is Kind.NUMBER:
        return number_key(value)
    if kind is Kind.TEXT:
        return text_key(value)
    return value


def this_month_value(row: SimRow, month: str) -> Decimal:
    return row.usage_month_mb if row.usage_month == month else Decimal(0)


def _key_to_json(value: Any, kind: Kind) -> Any:
    if kind is Kind.NUMBER:
        return str(value)
    if kind is Kind.TIME:
        return value.isoformat()
    if kind is Kind.BOOL:
        return bool(value)
    return str(value)


def _key_from_json(value: Any, kind: Kind) -> Any:
    if kind is Kind.NUMBER:
        number = float(str(value))  # "inf": a number beyond a float's range sorts as one
        if number != number:
            raise ValueError(value)
        return number
    if kind is Kind.TIME:
        when = datetime.fromisoformat(str(value))
        if when.tzinfo is None:
            raise ValueError(value)
        return when
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def encode_cursor(row: SimRow, query: SimQuery) -> str:
    payload = {
        "s": query.sort,
        "d": query.descending,
        "k": _key_to_json(sort_key(row, query), query.kind),
        "i": row.iccid,
    }
    if query.sort == "this_month_mb":
        payload["m"] = query.month
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any, query: SimQuery) -> tuple[Any, str]:
    bad = InvalidInput(f"not a cursor of this SIM list: {cursor!r}", rule=RULE)
    if not isinstance(cursor, str) or not cursor:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if payload["s"] != query.sort or payload["d"] != query.descending:
            raise InvalidInput(
                "the cursor belongs to another sort order; start again without a cursor",
                rule=RULE,
            )
        if query.sort == "this_month_mb" and payload.get("m") != query.month:
            raise InvalidInput(
                "the month changed since this cursor was made; start again without a cursor",
                rule=RULE,
            )
        iccid = payload["i"]
        if not isinstance(iccid, str):
            raise ValueError(iccid)
        return _key_from_json(payload["k"], query.kind), iccid
    except InvalidInput:
        raise
    except (ValueError, KeyError, TypeError, InvalidOperation, binascii.Error):
        raise bad from None


# ---- filters (the in-memory store's; the SQL stores say the same in SQL) ------------------------


def matches(row: SimRow, query: SimQuery) -> bool:
    if query.statuses is not None and row.status not in query.statuses:
        return False
    if query.sim_types is not None and row.sim_type not in query.sim_types:
        return False
    if query.operator is not None and row.operator != query.operator:
        return False
    if query.company is not None and row.company != query.company:
        return False
    if query.label is not None and query.label not in row.labels:
        return False
    if query.group_id is not None and row.group_id != query.group_id:
        return False
    return query.search is None or search_matches(row, query)


def search_matches(row: SimRow, query: SimQuery) -> bool:
    """ICCID prefix, or end user / note containing the text, ignoring case."""
    assert query.search is not None
    digits = query.search_digits
    if digits is not None and row.iccid.startswith(digits):
        return True
    needle = query.search.lower()
    return any(value is not None and needle in value.lower() for value in (row.end_user, row.note))
