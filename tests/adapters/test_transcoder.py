"""The ledger's transcoder decodes exactly as eventsourcing's JSONTranscoder does.

``LedgerTranscoder`` parses with orjson and restores the custom-typed values afterwards;
these tests compare it with the standard decoder on every stored event of the first
release and on generated values, errors included.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from helpers import DATETIMES
from hypothesis import given, settings
from hypothesis import strategies as st

from simledger.adapters.store.transcoder import LedgerTranscoder
from simledger.domain.types import SimStatus, SimType

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "first_release_events.json"


def transcoders() -> tuple[JSONTranscoder, LedgerTranscoder]:
    standard, ours = JSONTranscoder(), LedgerTranscoder()
    for transcoder in (standard, ours):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(transcoding)
    return standard, ours


def same(left: Any, right: Any) -> bool:
    """Equal, of the same types all the way down (1 == 1.0 == True would hide a change)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, datetime):  # == would let another zone for the same instant pass
        return bool(left.isoformat() == right.isoformat())
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


def test_every_stored_event_of_the_first_release_decodes_the_same() -> None:
    standard, ours = transcoders()
    events = json.loads(FIXTURES.read_text())["events"]
    assert len(events) > 20
    for stored in events:
        state = stored["state"].encode()
        expected = standard.decode(state)
        assert isinstance(expected["timestamp"], datetime)
        assert same(ours.decode(state), expected), stored["topic"]


def test_memoryview_and_bytearray_states_decode_too() -> None:
    """PostgreSQL and SQLite drivers may hand the state over as either."""
    standard, ours = transcoders()
    state = standard.encode({"at": datetime(2026, 1, 2, tzinfo=UTC), "mb": Decimal("1.5")})
    for form in (bytearray(state), memoryview(state)):
        assert same(ours.decode(form), standard.decode(state))  # type: ignore[arg-type]


def test_nan_and_infinity_written_by_the_standard_encoder_still_decode() -> None:
    standard, ours = transcoders()
    state = standard.encode({"a": float("nan"), "b": [float("inf"), -float("inf")]})
    assert same(ours.decode(state), standard.decode(state))


def test_unknown_transcoding_is_refused_as_by_the_standard_decoder() -> None:
    standard, ours = transcoders()
    for state in (
        b'{"x":[{"_type_":"nonesuch","_data_":1}]}',
        b'{"x":{"_type_":"nonesuch","_data_":"text data"}}',
    ):
        for transcoder in (standard, ours):
            with pytest.raises(TranscodingNotRegisteredError, match="nonesuch"):
                transcoder.decode(state)


def test_a_custom_transcoding_registered_later_decodes_as_the_standard_decoder() -> None:
    class Upper(str):
        pass

    class UpperAsText(Transcoding):
        type = Upper
        name = "upper"

        def encode(self, obj: Upper) -> str:
            return str(obj)

        def decode(self, data: str) -> Upper:
            return Upper(data.upper())

    standard, ours = transcoders()
    for transcoder in (standard, ours):
        transcoder.register(UpperAsText())
    state = b'{"a":{"_type_":"upper","_data_":"x"},"b":[{"_type_":"upper","_data_":"y"}]}'
    assert same(ours.decode(state), standard.decode(state))
    assert ours.decode(state)["a"] == "X"


def test_not_json_fails_as_the_standard_decoder_fails() -> None:
    standard, ours = transcoders()
    for transcoder in (standard, ours):
        with pytest.raises(ValueError):
            transcoder.decode(b'{"unterminated": ')


def test_a_three_key_object_with_type_and_data_is_kept_as_a_dict() -> None:
    standard, ours = transcoders()
    state = b'{"v":{"_type_":"decimal_str","_data_":"1","extra":0}}'
    assert same(ours.decode(state), standard.decode(state))
    assert ours.decode(state)["v"] == {"_type_": "decimal_str", "_data_": "1", "extra": 0}


BIG_INTS = (2**64, 10**20, -(2**70), -(2**63) - 1, 2**63, 2**64 - 1, -(2**63))


def test_integers_beyond_64_bits_round_trip_as_the_same_int() -> None:
    """orjson neither writes nor parses them as ints; the ledger's transcoder must keep them."""
    standard, ours = transcoders()
    at = datetime(2026, 1, 2, tzinfo=UTC)
    for n in BIG_INTS:
        for state in ({"n": n}, {"x": [n], "at": at}, {"d": {"n": [[n]], "mb": Decimal("1.5")}}):
            encoded = ours.encode(state)
            assert same(ours.decode(encoded), state), (n, encoded)
            assert same(standard.decode(encoded), state)
            assert same(ours.decode(standard.encode(state)), state)
    assert b"100000000000000000000" in ours.encode({"quantity": 10**20})
    assert same(ours.decode(b"[18446744073709551616]"), [2**64])
    assert same(ours.decode(b"-1180591620717411303424"), -(2**70))


def test_a_float_beyond_64_bits_still_decodes_as_that_float() -> None:
    standard, ours = transcoders()
    state = {"big": 1e20, "x": [-(2.0**70), 2.0**63], "small": 1.5, "n": 2**63 - 1}
    encoded = standard.encode(state)
    assert same(ours.decode(encoded), state)
    assert same(ours.decode(ours.encode(state)), state)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: orjson parses those as floats
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    DATETIMES,
    st.sampled_from([*SimStatus, *SimType]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_any_encoded_state_decodes_the_same(state: dict[str, Any]) -> None:
    standard, ours = transcoders()
    encoded = standard.encode(state)
    assert same(ours.decode(encoded), standard.decode(encoded))


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_any_state_encodes_to_what_the_standard_decoder_reads_back_the_same(
    state: dict[str, Any],
) -> None:
    """orjson writes it when that is safe, the standard encoder otherwise: either way the
    standard decoder (any eventsourcing application) reads back the same objects."""
    standard, ours = transcoders()
    assert same(standard.decode(ours.encode(state)), standard.decode(standard.encode(state)))


def test_values_orjson_would_change_go_to_the_standard_encoder() -> None:
    standard, ours = transcoders()
    uid = UUID("12345678-1234-5678-1234-567812345678")
    for state in (
        {"id": uid},  # orjson: a plain string; the transcoding: uuid_hex
        {"x": [float("nan")]},  # orjson: null
        {"n": 2**70},  # beyond 64 bits
        {"s": SimStatus.ACTIVE, "t": {SimType.PREPAID: 1}},  # an enum as a key
    ):
        assert ours.encode(state) == standard.encode(state)
    decoded = standard.decode(ours.encode({"id": uid, "at": datetime(2026, 1, 2, tzinfo=UTC)}))
    assert decoded == {"id": uid, "at": datetime(2026, 1, 2, tzinfo=UTC)}
    event_like = {"status": SimStatus.ACTIVE, "mb": Decimal("1.50"), "labels": ["a", "b"]}
    assert ours.encode(event_like) == standard.encode(event_like)  # the same bytes, faster
    for at in (
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 6),
        datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=5, seconds=7))),
    ):  # orjson writes UTC and naive ones itself, the same text as isoformat
        assert ours.encode({"at": at, "d": [at]}) == standard.encode({"at": at, "d": [at]})
