"""The chain content is the standard encoder's canonical JSON, whichever encoder writes it.

``domain.chain.content`` writes through orjson when that gives the same bytes; these
properties compare it with the standard-library definition on event-like fields, floats,
big integers and odd keys included (those go to the standard encoder).
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from enum import Enum
from typing import Any

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
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.datetimes(
        timezones=st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        )
    ),
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


def standard(topic: str, version: int, fields: dict[str, Any]) -> bytes:
    return chain._standard([topic, "89440", version, 1, fields]).encode("utf8")


@settings(max_examples=500)
@given(st.dictionaries(st.text(max_size=12), values, max_size=8))
def test_content_is_the_standard_canonical_json(fields: dict[str, Any]) -> None:
    fields = {k: v for k, v in fields.items() if k not in chain._NOT_HASHED}
    assert chain.content("t:T", "89440", 3, 1, fields) == standard("t:T", 3, fields)


@given(st.dictionaries(st.integers(), st.text(), min_size=1, max_size=3))
def test_non_string_keys_go_to_the_standard_encoder(inner: dict[int, str]) -> None:
    fields = {"map": inner}
    assert chain.content("t:T", "89440", 1, 1, fields) == standard("t:T", 1, fields)


def test_a_float_is_written_as_the_standard_encoder_writes_it() -> None:
    fields = {"ratio": 1e-05, "x": [0.1]}
    assert b"1e-05" in chain.content("t:T", "89440", 1, 1, fields)
    assert chain.content("t:T", "89440", 1, 1, fields) == standard("t:T", 1, fields)
