"""The SIM list query (``SimLedger.sims``): validated filters, sort, and keyset cursors.

Every store sorts on the same key: the column's value with "not set" as the lowest value
(empty text, -1 MB, the beginning of time), ties broken by ICCID; a text by its first 200
characters and a number as a binary float (:mod:`.sort_keys`: keys of a bounded size, for
any value an event holds). A page's cursor holds
the last row's key and ICCID; the next page starts strictly after that pair, so paging is
stable while SIMs change: a SIM whose sort value does not change is returned exactly once.
``days_left`` sorts by the package's expiry (the same order); ``this_month_mb`` by this
month's MB as of the ledger's clock; ``rules`` by the rules' names joined. ``regular_group_id``
filters on the SIM's regular groups (R-RG2, ``regular_group_id``), a list column that does
not sort.
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

from simledger.domain.errors import InvalidInput, InvalidValue, shown
from simledger.domain.types import SimStatus, SimType
from simledger.domain.values import NAME_MAX, clean_text, collection, flag, number, uuid_text
from simledger.projections.rows import SimRow
from simledger.projections.sort_keys import number_key, text_key

MAX_LIMIT = 1000
CURSOR_MAX = 4096
"""Characters of a cursor: its key is a bounded value (R-IN1) and an ICCID."""
CURSOR_DIGITS = 1000
"""The largest decimal exponent of a cursor's number key (a stored number is far below)."""
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
    "always_on": ("always_on", Kind.BOOL),
}
"""Every column of the SIM list (R-SIM2) sorts, both ways (``days_left`` by the expiry)."""

CONSTANT_COLUMNS: frozenset[str] = frozenset()
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
    regular_group: str | None = None
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
        return (
            self.label is None
            and self.group_id is None
            and self.search is None
            and self.regular_group is None
        )

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
    items: list[Any] = [value] if isinstance(value, str) else collection(value, what)
    try:
        return tuple(dict.fromkeys(enum(v).value for v in items))
    except (ValueError, TypeError):
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(f"unknown {what} {shown(value)}; one of {allowed}", rule=rule) from None


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text: {shown(value)}", rule=RULE)
    return clean_text(value.strip(), what, limit=NAME_MAX) or None


def make_query(
    *,
    status: Any = None,
    sim_type: Any = None,
    operator: Any = None,
    company: Any = None,
    label: Any = None,
    group_id: Any = None,
    search: Any = None,
    regular_group_id: Any = None,
    sort: Any = "iccid",
    descending: Any = False,
    limit: Any = 100,
    cursor: Any = None,
    now: datetime,
) -> SimQuery:
    """Validate the arguments of ``sims()``; refusals are ``InvalidInput`` (R-SIM2)."""
    size = number(limit, "limit")
    if size != size.to_integral_value() or not 1 <= size <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be a whole number from 1 to {MAX_LIMIT}: {shown(limit)}", rule=RULE
        )
    if not isinstance(sort, str) or sort not in SORTS:
        raise InvalidInput(f"cannot sort by {shown(sort)}; one of {', '.join(SORTS)}", rule=RULE)
    group: str | None = None
    if group_id is not None:
        group = uuid_text(group_id, lambda v: InvalidInput(f"not a group id: {v}", rule="R-SG1"))
    regular: str | None = None
    if regular_group_id is not None:
        regular = uuid_text(
            regular_group_id, lambda v: InvalidInput(f"not a regular group id: {v}", rule="R-RG1")
        )
    query = SimQuery(
        statuses=_one_or_many(status, SimStatus, "status", "R-SIM3"),
        sim_types=_one_or_many(sim_type, SimType, "SIM type", "R-SIM7"),
        operator=_text(operator, "operator"),
        company=_text(company, "company"),
        label=_text(label, "label"),
        group_id=group,
        search=_text(search, "search"),
        regular_group=regular,
        sort=sort,
        descending=flag(descending, "descending"),
        limit=int(size),
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
        return when.astimezone(UTC)  # OverflowError for year 1 east of UTC: not a cursor
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if not isinstance(value, str) or len(value) > CURSOR_MAX or "\x00" in value:
        # A text key is stored text's escaped prefix (sort_keys.py): never a NUL, though
        # it may hold U+0001 and any character events held before the domain's bounds.
        raise ValueError(value)
    value.encode("utf-8")  # a lone surrogate: no store can compare it (UnicodeEncodeError)
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
    bad = InvalidInput(f"not a cursor of this SIM list: {shown(cursor)}", rule=RULE)
    if not isinstance(cursor, str) or not cursor or len(cursor) > CURSOR_MAX:
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
        if not isinstance(iccid, str) or not (iccid.isascii() and iccid.isdigit()):
            raise ValueError(iccid)
        return _key_from_json(payload["k"], query.kind), iccid
    except InvalidValue:  # text in it a store cannot hold (R-IN1): a forged cursor
        raise bad from None
    except InvalidInput:
        raise
    except (ValueError, KeyError, TypeError, OverflowError, InvalidOperation, binascii.Error):
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
    if query.regular_group is not None and query.regular_group not in row.regular_groups:
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
