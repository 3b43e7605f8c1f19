"""The ledger's JSON transcoder: eventsourcing's ``JSONTranscoder``, decoding with orjson.

Reading is what bulk commands, rebuilds and audits spend their time on: every SIM load
decodes all of its stored events. The standard library's decoder calls the transcoder's
``object_hook`` (a Python function) for every JSON object; orjson parses in C and the
custom-typed values (``{"_type_": ..., "_data_": ...}``, at most a few per event: the
timestamp, a Decimal) are restored by one walk afterwards. The result is the same objects
(``tests/test_transcoder.py`` checks it against the standard decoder on stored events of
every kind).

Encoding goes through orjson too when the state holds only what orjson writes as the
standard encoder does, to the same decoded values: strings (enum members of ``StrEnum``
included), 64-bit integers, booleans, None, finite floats, lists, tuples and string-keyed
dicts of those, and datetimes and Decimals (handed back to the registered transcodings).
Anything else (a UUID, which orjson would write as a plain string; NaN, which it would
write as null; sets, dates, custom types) goes to the standard encoder, which applies the
transcodings or refuses as eventsourcing's does. Either way the stored JSON is what
eventsourcing's decoder reads back into the same objects.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

_PLAIN = (str, int, bool, type(None))
_HANDED_BACK = (datetime, Decimal)
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _orjson_safe(value: Any) -> bool:
    """Whether orjson writes ``value`` to JSON that decodes to the same objects as the
    standard encoder's (see the module docstring)."""
    kind = type(value)
    if kind in _PLAIN or kind in _HANDED_BACK:
        return kind is not int or -(2**63) <= value < 2**64
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(k) is str and _orjson_safe(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_orjson_safe(item) for item in value)
    return isinstance(value, StrEnum)


class LedgerTranscoder(JSONTranscoder):
    """``JSONTranscoder`` that parses with orjson, and writes with it when that is safe."""

    def encode(self, obj: Any) -> bytes:
        if _orjson_safe(obj):
            return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            # Not strict JSON for orjson (NaN, Infinity), or not JSON at all: the standard
            # decoder accepts the first and raises its usual error for the second.
            return super().decode(bytes(data))
        return self._restore(parsed)

    def _restore(self, value: Any) -> Any:
        """``value`` with every transcoded object decoded, innermost first, as the standard
        decoder's ``object_hook`` does."""
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                if type(item) is dict or type(item) is list:
                    value[key] = self._restore(item)
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                name = value["_type_"]
                try:
                    transcoding = self.names[name]
                except KeyError:
                    msg = (
                        f"Data serialized with name '{name}' is not deserializable. "
                        "Please register a custom transcoding for this type."
                    )
                    raise TranscodingNotRegisteredError(msg) from None
                return transcoding.decode(value["_data_"])
            return value
        if kind is list:
            return [
                self._restore(item) if type(item) is dict or type(item) is list else item
                for item in value
            ]
        return value
