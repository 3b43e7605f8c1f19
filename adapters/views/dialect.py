"""What one SQL database does its own way, for the statements of :mod:`.sql` written once.

A :class:`Dialect` names the database's placeholders, quoting, column types, how a value
of each column type goes in and comes out (:class:`RowCodec`), how a sort key compares,
how a filter reads a list column, and how a batch locks the tracking row. The tables'
columns are declared once here (:data:`SIM_TABLE`, ...) with a portable :class:`ColumnType`
that each dialect maps to its own SQL type.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from simledger.projections.listing import Kind
from simledger.projections.rows import GroupRow, OperationRow, SimRow


class ColumnType(Enum):
    TEXT = "text"
    BOOL = "bool"
    INT = "int"
    DECIMAL = "decimal"
    TIME = "time"
    LIST = "list"
    """A list of strings (labels, rules)."""


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
    "suspended_reason:text version:int! updated_at:time labels_key:text! rules_key:text!"
)
"""The SIM list table: every :class:`SimRow` column, then the text each list column sorts by."""
GROUP_TABLE = _columns(
    "group_id:text! name:text! package_id:text! package_name:text! data_mb:decimal! "
    "data_left_mb:decimal! expires_at:time member_count:int! depleted:bool! deleted:bool! "
    "version:int!"
)
OPERATION_TABLE = _columns(
    "operation_id:text! kind:text! requested_at:time! deadline:time! requested:int! "
    "confirmed:int! refused:int!"
)
COUNT_TABLE = _columns("status:text! sim_type:text! operator:text! company:text! n:int!")
LABEL_TABLE = _columns("iccid:text! label:text!")
TRACKING_COLUMNS = _columns("name:text! position:int! version:int!")

Convert = Callable[[Any], Any]
_Row = TypeVar("_Row")


class RowCodec(Generic[_Row]):
    """A row dataclass to a dialect's parameters and back: ``encode`` gives the values of
    ``columns`` (the dataclass's fields, then the ``sort_keys`` of its list fields: the
    text each sorts by, as :func:`~simledger.projections.listing.list_key` makes it),
    ``decode`` the row from the values of its fields as read.

    Both are compiled once from the column declarations (constant names) into a plain
    function that reads and converts each field in turn, as a hand-written one would: a
    rebuild encodes every row, and a generic loop over the columns costs it several
    times as much per row."""

    def __init__(
        self,
        row_class: type[_Row],
        columns: Sequence[Column],
        dialect: Dialect,
        sort_keys: Sequence[str] = (),
    ) -> None:
        fielded = columns[: len(fields(row_class))]  # type: ignore[arg-type]
        names: dict[str, Any] = {"row_class": row_class, "join": ",".join}
        encoded: list[str] = []
        decoded: list[str] = []
        for n, column in enumerate(fielded):
            to_db = dialect.encoders.get(column.type)
            from_db = dialect.decoders.get(column.type)
            names[f"to_{n}"], names[f"from_{n}"] = to_db, from_db
            value = f"row.{column.name}"
            encoded.append(f"to_{n}({value})" if to_db is not None else value)
            decoded.append(f"from_{n}(values[{n}])" if from_db is not None else f"values[{n}]")
        encoded += [f"join(row.{name})" for name in sort_keys]
        self.encode: Callable[[_Row], tuple[Any, ...]] = eval(
            f"lambda row: ({', '.join(encoded)},)", names
        )
        self.decode: Callable[[Sequence[Any]], _Row] = (
            eval(f"lambda values: row_class({', '.join(decoded)})", names)
            if any(dialect.decoders.get(c.type) for c in fielded)
            else lambda values: row_class(*values)
        )


class Dialect(ABC):
    """One database's way with the statements of :mod:`.sql`."""

    placeholder = "?"
    chunk_size = 500
    """Keys per ``IN`` list when a batch loads its rows."""
    label_table = False
    """Whether labels are also kept one per row (a table for the label filter)."""
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

    @abstractmethod
    def as_number(self, expression: str) -> str:
        """A decimal column as a number that sorts as one."""

    def key_param(self, value: Any, kind: Kind) -> Any:
        """A cursor's decoded key as a parameter comparable with the sort key."""
        return value

    @abstractmethod
    def label_filter(self, labels_table: str | None) -> str:
        """SQL true when the SIM row has the label bound to the one placeholder."""

    @abstractmethod
    def lower(self, expression: str) -> str: ...

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``."""
        marks = ", ".join(self.placeholder for _ in values)
        return f"{column} IN ({marks})", list(values)

    def partition_filter(self) -> str | None:
        """A condition on the event table (bound to: SIM topics, n, p) that keeps only the
        SIM events of part p of n of the SIMs and every other event; None: no partitions."""
        return None

    def sims_codec(self) -> RowCodec[SimRow]:
        return RowCodec(SimRow, SIM_TABLE, self, sort_keys=("labels", "rules"))

    def groups_codec(self) -> RowCodec[GroupRow]:
        return RowCodec(GroupRow, GROUP_TABLE, self)

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
