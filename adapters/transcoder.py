"""The ledger's JSON transcoder: eventsourcing's ``JSONTranscoder``, decoding with orjson.

Reading is what bulk commands, rebuilds and audits spend their time on: every SIM load
decodes all of its stored events. The standard library's decoder calls the transcoder's
``object_hook`` (a Python function) for every JSON object; orjson parses in C and the
custom-typed values (``{"_type_": ..., "_data_": ...}``, at most a few per event: the
timestamp, a Decimal) are restored by one walk afterwards. The result is the same objects
(``tests/test_transcoder.py`` checks it against the standard decoder on stored events of
every kind).

Encoding is left to the standard library: the stored bytes stay exactly what
eventsourcing's own transcoder writes (orjson would write some floats differently and turn
NaN into null), so a store stays readable by any eventsourcing application.
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError


class LedgerTranscoder(JSONTranscoder):
    """``JSONTranscoder`` whose ``decode`` parses with orjson (same results)."""

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
