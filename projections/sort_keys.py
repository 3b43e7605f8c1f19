"""How the SIM list's values sort, and the text form the SQL stores keep them in.

Every store must hold and sort any value an event can carry, including those written
before the domain bounded its inputs (a NUL byte, 100,000 characters of text, a number
like ``Decimal("1e200000")``), so the keys are bounded and total:

* **Stored text** (:func:`escape_text`): PostgreSQL cannot keep NUL in text (and SQLite's
  text functions stop at one), so the SQL stores keep every text with NUL written as
  U+0001 U+0001 and U+0001 as U+0001 U+0002. The code is reversible, NUL-free and keeps
  code-point order (NUL's code sorts below every other character, U+0001's right above).
* **Text sort key** (:func:`text_key`): the first :data:`TEXT_KEY_CHARS` characters of the
  stored text, ties broken by ICCID. A B-tree entry has a size limit (2,704 bytes on
  PostgreSQL): a key of a whole 3,000-character note would not fit, a prefix always does,
  and a cursor holds the prefix, not the note.
* **Number sort key** (:func:`number_key`): the number as a binary float (beyond its range
  ±infinity, below it zero, NaN as +infinity), ties broken by ICCID: a fixed-size key for
  any ``Decimal``.
"""

from __future__ import annotations

import math
from decimal import Decimal

TEXT_KEY_CHARS = 200
"""Characters of a text's stored form that its sort key keeps (4 bytes each at most in
UTF-8: a key with an ICCID stays far below PostgreSQL's B-tree limit)."""

_ESCAPES = str.maketrans({"\x00": "\x01\x01", "\x01": "\x01\x02"})


def escape_text(value: str) -> str:
    """``value`` without NUL, reversibly (see the module's docstring)."""
    if "\x00" in value or "\x01" in value:
        return value.translate(_ESCAPES)
    return value


def unescape_text(value: str) -> str:
    """The text :func:`escape_text` was given."""
    if "\x01" not in value:
        return value
    out: list[str] = []
    pending = False
    for char in value:
        if pending:
            out.append("\x00" if char == "\x01" else "\x01")
            pending = False
        elif char == "\x01":
            pending = True
        else:
            out.append(char)
    return "".join(out)


def text_key(value: str) -> str:
    """How a text sorts: the first :data:`TEXT_KEY_CHARS` characters of its stored form."""
    return escape_text(value)[:TEXT_KEY_CHARS]


def number_key(value: Decimal) -> float:
    """How a number sorts: as a binary float (exact below 2**53, rounded beyond); NaN
    (which orders against nothing, and which SQLite keeps as NULL) as +infinity."""
    if value.is_nan():
        return math.inf
    return float(value)
