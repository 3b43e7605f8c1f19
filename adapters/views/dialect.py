"""What one SQL database does its own way, for the statements of :mod:`.sql` written once.

A :class:`Dialect` names the database's placeholders, quoting, column types, how a value
of each column type goes in and comes out (:class:`RowCodec`), how a sort key compares,
how a filter reads a list column, and how a batch locks the tracking row. The tables'
columns are declared once here (:data:`SIM_TABLE`, ...) with a portable :class:`ColumnType`
that each dialect maps to its own SQL type.

The tables hold any value an event can carry (:mod:`simledger.projections.sort_keys`):
text is kept in its escaped form (no NUL), decimals as exact text, and the sorted columns
have keys of a bounded size (a text's prefix, a number as a float).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from simledger.projections.listing import Kind, list_key
from simledger.projections.rows import GroupRow, OperationRow, SimRow
from simledger.projections.sort_keys import (
    TEXT_KEY_CHARS,
    escape_text,
    number_key,
    text_key,
    unescape_text,
)


class ColumnType(Enum):
    TEXT = "text"
    BOOL = "bool"
    INT = "int"
    DECIMAL = "decimal"
    TIME = "time"
    LIST = "list"
    """A list of strings (labels, rules)."""
    REAL = "real"
    """A binary float: the sort key of a decimal column."""


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    """NOT NULL."""


def _columns(spec: str) -> tuple[Column, ...]:
    """``"name:type[!]"`` words: ``!`` marks NOT NULL."""
    found = []
    for word in spec.split():
        name, kind = word.split(":")
        found.append(Column(name, ColumnType(kind.rstrip("!")), kind.endswith("!")))
    return tuple(found)


SIM_TABLE = _columns(
    "iccid:text! esim:bool! status:text! operator:text! sim_type:text! in_session:text! "
    "plan:text company:text end_user:text data_left_mb:decimal expires_at:time "
    "usage_month:text usage_month_mb:decimal! note:text rules:list! labels:list! "
    "group_id:text package_id:text copy_id:text copy_left_mb:decimal copy_depleted:text "
    "suspended_reason:text version:int! updated_at:time regular_groups:list! always_on:bool! "
    "cost_month:decimal! "
    "labels_key:text! rules_key:text! "
    "data_left_key:real usage_month_key:real! label_keys:list!"
)
"""The SIM list table: every :class:`SimRow` column, then the keys computed from them
(:data:`SIM_COMPUTED`)."""
GROUP_TABLE = _columns(
    "group_id:text! name:text! package_id:text! package_name:text! data_mb:decimal! "
    "data_left_mb:decimal! expires_at:time member_count:int! depleted:bool! deleted:bool! "
    "version:int! data_left_key:real!"
)
"""The shared groups table: every :class:`GroupRow` column, then :data:`GROUP_COMPUTED`.
The pool's value lives here only: a member's SIM row holds none, and the SIM list shows
and sorts a member by its group's (projections/sim_list.py)."""
GROUP_TABLE_COLUMNS = tuple(c.name for c in GROUP_TABLE)
OPERATION_TABLE = _columns(
    "operation_id:text! kind:text! requested_at:time! deadline:time! requested:int! "
    "confirmed:int! refused:int!"
)
COUNT_TABLE = _columns(
    "status:text! sim_type:text! operator:text! company:text! combination:text! n:int!"
)
"""SIMs per combination; ``combination`` (a hash of the four) is the key: a key of the
texts themselves could exceed a B-tree entry's size."""
LABEL_TABLE = _columns("iccid:text! label:text!")
TRACKING_COLUMNS = _columns("name:text! position:int! version:int!")

Convert = Callable[[Any], Any]
_Row = TypeVar("_Row")

ESCAPED_NOT = frozenset({"iccid"})
"""Text columns kept as they are: the ICCID is the event store's own key (no NUL there)."""


def label_keys(labels: Sequence[str]) -> list[str]:
    """The labels' sort keys: what PostgreSQL's GIN index on labels holds (bounded)."""
    return [text_key(label) for label in labels]


SIM_COMPUTED: tuple[tuple[str, str, ColumnType], ...] = (
    ("labels_key", "(esc(list_key(k)) if (k := row.labels) else '')", ColumnType.TEXT),
    ("rules_key", "(esc(list_key(r)) if (r := row.rules) else '')", ColumnType.TEXT),
    ("data_left_key", "(None if (d := row.data_left_mb) is None else key(d))", ColumnType.REAL),
    ("usage_month_key", "key(row.usage_month_mb)", ColumnType.REAL),
    ("label_keys", "(label_keys(k) if k else [])", ColumnType.LIST),
)
"""The SIM table's columns after the :class:`SimRow` fields: each an expression of the
row (in stored form: escaped text), compiled into the codec's encoder (a function call
per column per row is what a rebuild would pay for them otherwise). ``label_keys`` reuses
the labels ``labels_key`` read (``k``)."""
GROUP_COMPUTED: tuple[tuple[str, str, ColumnType], ...] = (
    ("data_left_key", "key(row.data_left_mb)", ColumnType.REAL),
)
"""The sort key of a group's pool, for the SIM list sorted by data left."""


def escaped(value: str | None) -> str | None:
    return escape_text(value) if value is not None else None


def unescaped(value: str | None) -> str | None:
    return unescape_text(value) if value is not None else None


class RowCodec(Generic[_Row]):
    """A row dataclass to a dialect's parameters and back: ``encode`` gives the values of
    ``columns`` (the dataclass's fields, then the ``computed`` columns), ``decode`` the
    row from the values of its fields as read. Text is escaped on the way in and
    unescaped on the way out (:func:`~simledger.projections.sort_keys.escape_text`).

    Both are compiled once from the column declarations (constant names) into a plain
    function that reads and converts each field in turn, as a hand-written one would: a
    rebuild encodes every row, and a generic loop over the columns costs it several
    times as much per row. Text, the common case, is converted inline: only a value with
    a NUL or U+0001 costs a call."""

    def __init__(
        self,
        row_class: type[_Row],
        columns: Sequence[Column],
        dialect: Dialect,
        computed: Sequence[tuple[str, str, ColumnType]] = (),
    ) -> None:
        fielded = columns[: len(fields(row_class))]  # type: ignore[arg-type]
        names: dict[str, Any] = {
            "row_class": row_class,
            "esc": escape_text,
            "unesc": unescape_text,
            "list_key": list_key,
            "key": number_key,
            "label_keys": label_keys,
        }
        encoded: list[str] = []
        decoded: list[str] = []
        for n, column in enumerate(fielded):
            value, read = f"row.{column.name}", f"values[{n}]"
            if column.type is ColumnType.TEXT and column.name not in ESCAPED_NOT:
                bind = f"(v{n} := {value})"
                clean = f"'\\x00' not in {{}} and '\\x01' not in v{n}"
                test = (
                    clean.format(bind)
                    if column.required
                    else f"{bind} is None or ({clean.format(f'v{n}')})"
                )
                encoded.append(f"(v{n} if {test} else esc(v{n}))")
                decoded.append(
                    f"(u{n} if (u{n} := {read}) is None or '\\x01' not in u{n} else unesc(u{n}))"
                )
                continue
            to_db = dialect.encoders.get(column.type)
            from_db = dialect.decoders.get(column.type)
            names[f"to_{n}"], names[f"from_{n}"] = to_db, from_db
            if to_db is decimal_text:  # inline: str() of a decimal, None kept
                encoded.append(f"(None if (x{n} := {value}) is None else str(x{n}))")
            elif column.type is ColumnType.LIST and to_db is not None:  # most lists are empty
                encoded.append(f"(to_{n}(x{n}) if (x{n} := {value}) else {to_db([])!r})")
            else:
                encoded.append(f"to_{n}({value})" if to_db is not None else value)
            decoded.append(f"from_{n}({read})" if from_db is not None else read)
        for n, (name, expression, kind) in enumerate(computed):
            if name == "label_keys" and not dialect.label_keys:
                encoded.append("'[]'")  # a dialect with a label table: no GIN index to feed
                continue
            if kind is ColumnType.LIST and type(dialect).stored_list is not Dialect.stored_list:
                names[f"convert_{n}"] = dialect.stored_list
                expression = f"convert_{n}({expression})"
            encoded.append(expression)
        self.encode: Callable[[_Row], tuple[Any, ...]] = eval(
            f"lambda row: ({', '.join(encoded)},)", names
        )
        self.decode: Callable[[Sequence[Any]], _Row] = eval(
            f"lambda values: row_class({', '.join(decoded)})", names
        )


class Dialect(ABC):
    """One database's way with the statements of :mod:`.sql`."""

    placeholder = "?"
    chunk_size = 500
    """Keys per ``IN`` list when a batch loads its rows."""
    label_table = False
    """Whether labels are also kept one per row (a table for the label filter)."""
    label_keys = True
    """Whether the SIM table's ``label_keys`` column is filled (PostgreSQL's GIN index on
    it serves the label filter); a dialect with a label table keeps it empty."""
    key_after_fill = False
    """Whether a rebuild's SIM table gets its primary key after its bulk load."""
    lock_suffix = ""
    """What makes the batch's read of the tracking row lock it (``FOR UPDATE``)."""
    log_id = "notification_id"
    """The event table's notification id column."""
    types: ClassVar[Mapping[ColumnType, str]] = {}
    table_options = ""
    sims_options = ""
    encoders: ClassVar[Mapping[ColumnType, Convert]] = {}
    decoders: ClassVar[Mapping[ColumnType, Convert]] = {}
    no_time = ""
    """The lowest time as an SQL literal: "not set" in a time's sort key."""
    analyze_first: tuple[str, ...] = ()
    """Statements before ``ANALYZE`` refreshes the planner's statistics."""

    @abstractmethod
    def q(self, table: str) -> str:
        """The qualified, quoted name of ``table``."""

    def key_param(self, value: Any, kind: Kind) -> Any:
        """A cursor's decoded key (:func:`~simledger.projections.listing.sort_key`: a text's
        key is already in stored form) as a parameter comparable with the sort key."""
        return value

    @abstractmethod
    def label_filter(self, labels_table: str | None, label: str) -> tuple[str, list[Any]]:
        """SQL true when the SIM row has ``label``, and its parameters."""

    def list_contains(self, column: str, item: str) -> tuple[str, list[Any]]:
        """SQL true when the list column (a JSON array here) holds ``item`` (a UUID:
        stored as it is), and its parameters: the regular group filter (R-RG2)."""
        p = self.placeholder
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {p})", [item]

    @abstractmethod
    def contains(self, column: str, needle: str) -> tuple[str, list[Any]]:
        """SQL true when the text column (stored form), lower-cased as Python does, holds
        ``needle`` (lower case, as given: not escaped), and its parameters: the search of
        :func:`~simledger.projections.listing.search_matches`, for a needle of any length."""

    def starts_with(self, column: str, prefix: str) -> tuple[str, list[Any]]:
        """SQL true when ``column`` (kept as it is) starts with ``prefix``, of any length."""
        p = self.placeholder
        return f"substr({column}, 1, {p}) = {p}", [len(prefix), prefix]

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``."""
        marks = ", ".join(self.placeholder for _ in values)
        return f"{column} IN ({marks})", list(values)

    def partition_filter(self) -> str | None:
        """A condition on the event table (bound to: SIM topics, n, p) that keeps only the
        SIM events of part p of n of the SIMs and every other event; None: no partitions."""
        return None

    def stored_list(self, values: list[str]) -> Any:
        """A list already in stored form (escaped) as this dialect's list value."""
        return values

    def prefix(self, expression: str) -> str:
        """The first :data:`TEXT_KEY_CHARS` characters of a text expression."""
        return f"substr({expression}, 1, {TEXT_KEY_CHARS})"

    def sims_codec(self) -> RowCodec[SimRow]:
        return RowCodec(SimRow, SIM_TABLE, self, SIM_COMPUTED)

    def groups_codec(self) -> RowCodec[GroupRow]:
        return RowCodec(GroupRow, GROUP_TABLE, self, GROUP_COMPUTED)

    def operations_codec(self) -> RowCodec[OperationRow]:
        return RowCodec(OperationRow, OPERATION_TABLE, self)


# ---- conversions for dialects that keep values as text ------------------------------------


def as_utc_text(value: datetime | None) -> str | None:
    """A time as fixed-width UTC text: text order is time order."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def from_time_text(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def labels_json(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def escaped_list(values: list[str]) -> list[str]:
    return [escape_text(value) for value in values]


def unescaped_list(values: list[str]) -> list[str]:
    return [unescape_text(value) for value in values]


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as exact text: any ``Decimal`` (``1E+200000`` too) is kept as it is."""
    return str(value) if value is not None else None


def text_decimal(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None
