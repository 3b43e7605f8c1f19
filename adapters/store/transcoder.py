"""The ledger's JSON transcoder: eventsourcing's ``JSONTranscoder``, decoding with orjson.

Reading is what bulk commands, rebuilds and audits spend their time on: every SIM load
decodes all of its stored events. The standard library's decoder calls the transcoder's
``object_hook`` (a Python function) for every JSON object; orjson parses in C and the
custom-typed values (``{"_type_": ..., "_data_": ...}``, at most a few per event: the
timestamp, a Decimal) are restored by one walk afterwards. The result is the same objects
(``tests/adapters/test_transcoder.py`` checks it against the standard decoder on stored events of
every kind).

Encoding goes through orjson too when the state holds only what orjson writes as the
standard encoder does, to the same decoded values: strings (enum members of ``StrEnum``
included), 64-bit integers, booleans, None, finite floats, lists, tuples and string-keyed
dicts of those, and datetimes and Decimals, which one walk first replaces by their
registered transcodings' objects (a UTC or naive datetime is left for orjson to write
inside its ``datetime_iso`` object: the same text as ``isoformat``, written in C).
Anything else (a UUID, which orjson would write as a plain string; NaN, which it would
write as null; sets, dates, custom types) goes to the standard encoder, which applies the
transcodings or refuses as eventsourcing's does. Either way the stored JSON is what
eventsourcing's decoder reads back into the same objects.

Integers beyond 64 bits: orjson refuses to write them (so the standard encoder does) and
parses them as floats, losing their type and digits. orjson parses every integer inside
the 64-bit range as an int, so a float of magnitude 2**63 or more in its result may have
been such an integer: the walk that restores the transcoded values checks each float it
passes, and on one that large the document is parsed again by the standard decoder, which
keeps every integer exact (a genuine float that large decodes the same either way).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    TranscodingNotRegisteredError,
)

_PLAIN = (str, bool, type(None))
_HANDED_BACK = (datetime, Decimal)


# orjson parses an integer at or beyond this magnitude as a float (2**63, exact as a float)
_BIG = float(2**63)


class _NotForOrjson(Exception):
    """Raised inside :meth:`LedgerTranscoder._prepared`: the standard encoder must write it."""


class _NotFromOrjson(Exception):
    """Raised inside :meth:`LedgerTranscoder._restore`: orjson may have parsed an integer
    beyond 64 bits as a float; the standard decoder must parse the document."""


class LedgerTranscoder(JSONTranscoder):
    """``JSONTranscoder`` that parses with orjson, and writes with it when that is safe."""

    def encode(self, obj: Any) -> bytes:
        try:
            prepared = self._prepared(obj)
        except _NotForOrjson:
            return super().encode(obj)
        return orjson.dumps(prepared)

    def _prepared(self, value: Any) -> Any:
        """``value`` with each datetime and Decimal replaced by its registered transcoding's
        ``{"_type_": ..., "_data_": ...}`` object, as the standard encoder writes it (done
        here in one walk, not by orjson calling back into Python for each). Raises
        :class:`_NotForOrjson` for anything orjson would write differently (see the module
        docstring)."""
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is int:
            if -(2**63) <= value < 2**64:
                return value
            raise _NotForOrjson
        if kind is dict:
            prepared = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotForOrjson
                prepared[key] = item if type(item) in _PLAIN else self._prepared(item)
            return prepared
        if kind is list or kind is tuple:
            return [item if type(item) in _PLAIN else self._prepared(item) for item in value]
        if kind in _HANDED_BACK:
            transcoding = self.types[kind]
            if type(transcoding) is DatetimeAsISO and (value.tzinfo is None or value.tzinfo is UTC):
                # orjson writes these datetimes exactly as ``isoformat`` does, in C
                return {"_type_": transcoding.name, "_data_": value}
            return {"_type_": transcoding.name, "_data_": transcoding.encode(value)}
        if kind is float:
            if math.isfinite(value):
                return value
            raise _NotForOrjson
        if isinstance(value, StrEnum):
            return value  # orjson writes a str subclass as the str it is
        raise _NotForOrjson

    def decode(self, data: bytes) -> Any:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            # Not strict JSON for orjson (NaN, Infinity), or not JSON at all: the standard
            # decoder accepts the first and raises its usual error for the second.
            return super().decode(bytes(data))
        try:
            return self._restore(parsed)
        except _NotFromOrjson:
            return super().decode(bytes(data))

    def __init__(self) -> None:
        super().__init__()
        # Per name, what decodes a transcoded object whose data is a string: the standard
        # transcodings' own conversion called directly (no method frame, no assert).
        self._leaf_decoders: dict[str, Callable[[str], Any]] = {}

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        self._leaf_decoders = {
            name: (
                datetime.fromisoformat
                if type(t) is DatetimeAsISO
                else Decimal
                if type(t) is DecimalAsStr
                else t.decode
            )
            for name, t in self.names.items()
        }

    def _restore(self, value: Any) -> Any:
        """``value`` with every transcoded object decoded, innermost first, as the standard
        decoder's ``object_hook`` does. A transcoded object whose data is a string (a
        datetime, a Decimal: most of them) is decoded in its parent's loop."""
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                kind = type(item)
                if kind is dict:
                    if len(item) == 2 and type(item.get("_data_")) is str and "_type_" in item:
                        value[key] = self._leaf(item["_type_"], item["_data_"])
                    else:
                        value[key] = self._restore(item)
                elif kind is list:
                    value[key] = self._restore(item)
                elif kind is float and (item >= _BIG or item <= -_BIG):
                    raise _NotFromOrjson
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self._transcoding(value["_type_"]).decode(value["_data_"])
            return value
        if kind is list:
            return [
                self._restore(item)
                if (k := type(item)) is dict or k is list or k is float
                else item
                for item in value
            ]
        if kind is float and (value >= _BIG or value <= -_BIG):
            raise _NotFromOrjson
        return value

    def _leaf(self, name: str, data: str) -> Any:
        decode = self._leaf_decoders.get(name)
        if decode is None:
            return self._transcoding(name).decode(data)  # raises: not registered
        return decode(data)

    def _transcoding(self, name: str) -> Transcoding:
        try:
            return self.names[name]
        except KeyError:
            msg = (
                f"Data serialized with name '{name}' is not deserializable. "
                "Please register a custom transcoding for this type."
            )
            raise TranscodingNotRegisteredError(msg) from None
