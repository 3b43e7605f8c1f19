"""The chain content is the standard encoder's canonical JSON, whichever encoder writes it.

``domain.chain.content`` writes through orjson when that gives the same bytes; these
properties compare it with the standard-library definition on event-like fields, floats,
big integers and odd keys included (those go to the standard encoder).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from helpers import DATETIMES
from hypothesis import given, settings
from hypothesis import strategies as st

from simledger.domain import chain
from simledger.domain.types import SimStatus, SuspendReason


class Colour(Enum):
    RED = "red"


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: orjson refuses, the standard encoder writes them
    st.floats(allow_nan=True),
    st.text(),
    st.decimals(allow_nan=False, allow_infinity=False),
    DATETIMES,
    st.dates(),
    st.uuids(),
    st.sampled_from([*SimStatus, *SuspendReason, Colour.RED]),
    st.frozensets(st.text(max_size=3), max_size=3),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


NOT_HASHED = ("originator_id", "originator_version", "chain", "class_version")
"""Keys a stored state holds that ``content`` leaves out (its docstring)."""


def plain(value: Any) -> Any:
    """The text form of each non-JSON value (the module docstring of domain/chain.py)."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(value)


def standard(topic: str, version: int, fields: dict[str, Any]) -> bytes:
    """The definition: the standard library's canonical JSON (sorted keys, no whitespace)."""
    hashed = {k: v for k, v in fields.items() if k not in NOT_HASHED}
    value = [topic, "89440", version, 1, hashed]
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=plain
    )
    return text.encode("utf8")


@settings(max_examples=500)
@given(st.dictionaries(st.text(max_size=12), values, max_size=8))
def test_content_is_the_standard_canonical_json(fields: dict[str, Any]) -> None:
    assert chain.content("t:T", "89440", 3, 1, fields) == standard("t:T", 3, fields)


@given(st.dictionaries(st.integers(), st.text(), min_size=1, max_size=3))
def test_non_string_keys_go_to_the_standard_encoder(inner: dict[int, str]) -> None:
    fields = {"map": inner}
    assert chain.content("t:T", "89440", 1, 1, fields) == standard("t:T", 1, fields)


def test_a_float_is_written_as_the_standard_encoder_writes_it() -> None:
    fields = {"ratio": 1e-05, "x": [0.1]}
    assert b"1e-05" in chain.content("t:T", "89440", 1, 1, fields)
    assert chain.content("t:T", "89440", 1, 1, fields) == standard("t:T", 1, fields)


def test_integers_beyond_64_bits_are_written_as_their_digits() -> None:
    """orjson refuses them; the standard encoder writes every digit, never a float."""
    for n in (2**64, 10**20, -(2**70), -(2**63) - 1):
        fields = {"quantity": n, "x": [n], "d": {"n": n}}
        written = chain.content("t:T", "89440", 1, 1, fields)
        assert written == standard("t:T", 1, fields)
        assert str(n).encode() in written
        assert b"e+" not in written
    assert b"10000000000000000000000" in chain.content("t:T", "89440", 1, 1, {"n": 10**22})


def test_the_stored_bookkeeping_keys_are_not_hashed() -> None:
    fields: dict[str, Any] = {"note": "x", "at": datetime(2024, 1, 1, tzinfo=UTC)}
    bookkeeping = dict.fromkeys(NOT_HASHED, "anything")
    assert chain.content("t:T", "89440", 1, 1, {**fields, **bookkeeping}) == standard(
        "t:T", 1, fields
    )
