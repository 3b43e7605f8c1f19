"""The SIM list's columns: which fields of ``SimListItem`` the page shows, under what
heading, and how a value reads.

The table is drawn from :func:`shown_columns`, which takes every field of ``SimListItem`` in
its order: a column added to the model later appears by itself (its heading made from its
name) unless it is listed in :data:`HIDDEN`; a heading of its own is one line in
:data:`HEADINGS`. A column sorts when the list query knows it (``listing.SORTS``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from html import escape as html_escape
from typing import Any

from markupsafe import Markup

from simledger.projections.listing import SORTS
from simledger.projections.models import SimListItem

HEADINGS: dict[str, str] = {
    "iccid": "ICCID",
    "esim": "eSIM",
    "status": "Status",
    "in_session": "In session",
    "operator": "Operator",
    "plan": "Plan",
    "company": "Company",
    "end_user": "End user",
    "data_left_mb": "Data left (MB)",
    "days_left": "Days left",
    "this_month_mb": "This month (MB)",
    "note": "Note",
    "rules": "Rules",
    "labels": "Labels",
    "sim_type": "SIM type",
    "group_id": "Group",
    "cost_month": "Cost this month",
    "groups": "Groups",
    "always_on": "Always on",
}

HIDDEN = frozenset(
    {"package_id", "copy_id", "expires_at", "suspended_reason", "version", "updated_at"}
)
"""Fields of ``SimListItem`` the list does not show (the SIM's own page does)."""

STATUS_NAMES: dict[str, str] = {
    "not_available": "Not available",
    "pending": "Pending",
    "blank": "Blank",
    "activation_ready": "Activation ready",
    "active": "Active",
    "suspended": "Suspended",
    "invalid": "Invalid",
}


@dataclass(frozen=True)
class Column:
    name: str
    heading: str
    sortable: bool
    numeric: bool


def _heading(name: str) -> str:
    return HEADINGS.get(name) or name.replace("_", " ").capitalize()


def shown_columns() -> list[Column]:
    """Every shown column of the list, in the model's order."""
    columns = []
    for name, field in SimListItem.model_fields.items():
        if name in HIDDEN:
            continue
        annotation = str(field.annotation)
        numeric = any(kind in annotation for kind in ("Decimal", "int"))
        columns.append(Column(name, _heading(name), name in SORTS, numeric))
    return columns


def cell(value: Any) -> str:
    """How one value reads in the table (and on a SIM's page)."""
    if value is None:
        return "—"
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return STATUS_NAMES.get(str(value.value), str(value.value).replace("_", " "))
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(cell(item) for item in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items()) or "—"
    return str(value)


def field(item: object, name: str) -> Any:
    """A column's value of a list item (None when the item has no such field)."""
    return getattr(item, name, None)


def row_cells(item: object, columns: list[Column]) -> Markup:
    """The ``<td>`` cells of one list row, escaped. Drawn here rather than in the template: a
    page of 100 rows of 17 columns is 1,700 cells, and Jinja's per-cell lookups were most of
    the page's drawing time (bench/README.md, the console); text, the common case, takes the
    short way."""
    parts = []
    values = item.__dict__
    for column in columns:
        name = column.name
        value = values.get(name)
        if type(value) is str and name != "iccid":
            parts.append(f"<td>{html_escape(value)}</td>")
            continue
        text = html_escape(cell(value))
        if name == "iccid":
            tag = ' <span class="tag">eSIM</span>' if values.get("esim") else ""
            parts.append(f'<td><a href="/ui/sims/{text}">{text}</a>{tag}</td>')
        elif name == "status" and value is not None:
            kind = html_escape(str(getattr(value, "value", value)))
            parts.append(f'<td><span class="status s-{kind}">{text}</span></td>')
        elif name == "group_id" and value is not None:
            parts.append(f'<td><a href="/ui/groups#g-{text}"><code>{text[:8]}</code></a></td>')
        elif column.numeric:
            parts.append(f'<td class="num">{text}</td>')
        else:
            parts.append(f"<td>{text}</td>")
    return Markup("".join(parts))  # every piece escaped above
