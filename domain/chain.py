"""Tamper evidence: every event carries a hash chained to the previous event of its aggregate.

``chain(v) = sha256(chain(v-1) + "\\n" + content(v))`` with ``chain(0) = ""``, where
``content`` is a canonical JSON text (sorted keys, no whitespace) of the event's topic,
aggregate id, version, class version and every stored field but ``chain`` itself (the
timestamp included). Decimals, datetimes, dates, UUIDs and enums are written as strings
(``str``, ISO 8601, ``str``, ``.value``) and tuples as lists, so the content computed from the
event object when it is triggered equals the content computed from the stored JSON state when
it is read back (eventsourcing's transcoder stores Decimals as ``str``, datetimes as ISO 8601
and UUIDs as hex, and gives lists back). The content is taken from the stored state BEFORE
any upcasting, so a later class version of an event does not invalidate old chains.

What the chain proves, and its limit: editing, deleting, inserting or reordering any event
that has a successor breaks a link and is found by :class:`ChainCheck`. Editing the LAST event
of an aggregate and recomputing its hash, or deleting it, leaves a valid (shorter) chain:
nothing inside the store can tell. ``simledger verify`` anchors what it can: an aggregate's
snapshot keeps the chain of the version it was taken at, so an edit or truncation at or
before the latest snapshot is still found (see :mod:`simledger.application.audit`). Full
protection of the tail needs an anchor outside the store (publish ``VerifyReport.digest``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic

_NOT_HASHED = frozenset(("originator_id", "originator_version", "chain", "class_version"))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"cannot hash a {type(value).__name__}: {value!r}")


_standard = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
).encode
_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _orjson_writes_it(values: Any) -> bool:
    """Whether orjson writes every value in ``values`` (nested ones too) as the standard
    encoder does: no float (orjson writes ``1e-05`` as ``0.00001``), and datetimes naive or
    in UTC (orjson writes those as ``isoformat`` does; another zone could differ, an offset
    with seconds for one)."""
    for v in values:
        kind = type(v)
        if kind is float:
            return False
        if kind is list or kind is tuple:
            if not _orjson_writes_it(v):
                return False
        elif kind is dict:
            if not _orjson_writes_it(v.values()):
                return False
        elif isinstance(v, datetime) and v.tzinfo is not None and v.tzinfo is not UTC:
            return False
    return True


def _encode(value: list[Any], fields: Mapping[str, Any]) -> bytes:
    """``value`` as the standard encoder above writes it (the definition of the content),
    through orjson when that gives the same bytes (:func:`_orjson_writes_it`; subclasses of
    built-in types, ``StrEnum`` members among them, go to ``_plain`` too, and a float inside
    a list subclass is written by the standard encoder: orjson refuses it there). UUIDs,
    dates and enums orjson writes as ``str``, ``isoformat`` and ``.value`` do. Anything
    orjson refuses (a non-string key, an int beyond 64 bits) goes to the standard encoder.
    ``tests/test_chain.py`` compares the two."""
    if _orjson_writes_it(fields.values()):
        try:
            return orjson.dumps(value, default=_plain, option=_FAST)
        except TypeError:
            pass
    return _standard(value).encode("utf8")


def content(
    topic: str, originator_id: str, version: int, class_version: int, state: Mapping[str, Any]
) -> bytes:
    """The canonical bytes hashed for one event; ``state`` may still hold the keys
    ``originator_id``, ``originator_version``, ``chain`` and ``class_version`` (ignored)."""
    fields = {k: v for k, v in state.items() if k not in _NOT_HASHED}
    return _encode([topic, str(originator_id), version, class_version, fields], fields)


def link(previous: str, event_content: bytes) -> str:
    """The chain hash of an event whose predecessor's chain is ``previous``."""
    digest = hashlib.sha256(previous.encode("ascii"))
    digest.update(b"\n")
    digest.update(event_content)
    return digest.hexdigest()


_identities: dict[type[Any], tuple[str, int]] = {}


def _identity(cls: type[Any]) -> tuple[str, int]:
    """An event class's topic and class version, as the content names them (looked up once)."""
    identity = _identities.get(cls)
    if identity is None:
        identity = _identities[cls] = (get_topic(cls), getattr(cls, "class_version", 1))
    return identity


def seal(event: Any, previous: str) -> str:
    """The chain hash of ``event`` (a new event object, not stored yet)."""
    topic, class_version = _identity(type(event))
    return link(
        previous,
        content(topic, event.originator_id, event.originator_version, class_version, vars(event)),
    )


@dataclass
class ChainProblem:
    """The first thing wrong with one aggregate's chain."""

    kind: str  # "altered", "missing", "out-of-sequence", "unsealed"
    version: int
    detail: str


class ChainCheck:
    """Checks one aggregate's stored events, fed in version order as they are read.

    :meth:`add` returns the FIRST problem found (and every later call returns None: once a
    chain is broken, what follows cannot be judged).
    """

    __slots__ = ("head", "problem", "unsealed", "version")

    def __init__(self) -> None:
        self.version = 0
        self.head = ""
        self.unsealed = 0
        """Events recorded before chains existed: accepted only as a prefix of the history
        (an event without a hash after a sealed one is a problem)."""
        self.problem: ChainProblem | None = None

    def add(
        self, version: int, stored_chain: str | None, event_content: bytes
    ) -> ChainProblem | None:
        if self.problem is not None:
            return None
        expected_version = self.version + 1
        if version > expected_version:
            missing = (
                f"version {expected_version}"
                if version == expected_version + 1
                else f"versions {expected_version} to {version - 1}"
            )
            return self._fail("missing", expected_version, f"{missing} missing before {version}")
        if version < expected_version:
            return self._fail(
                "out-of-sequence",
                version,
                f"version {version} recorded after version {self.version} (inserted or reordered)",
            )
        if not stored_chain:
            if self.head:
                return self._fail("unsealed", version, "event carries no chain hash")
            self.unsealed += 1
            self.version = version
            return None
        recomputed = link(self.head, event_content)
        if recomputed != stored_chain:
            if version == 1:
                detail = "content does not match its chain hash (altered)"
            else:
                detail = (
                    "content does not match its chain hash, or it does not follow from "
                    f"version {version - 1} (this event altered, or version {version - 1} "
                    "rewritten with a new hash)"
                )
            return self._fail("altered", version, detail)
        self.version = version
        self.head = stored_chain
        return None

    def _fail(self, kind: str, version: int, detail: str) -> ChainProblem:
        self.problem = ChainProblem(kind, version, detail)
        return self.problem
