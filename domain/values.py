"""The domain of values: what every argument of a command or query may be, checked at the
boundary before any event exists (docs/rules.md, "Input values", R-IN1..4).

Each check returns the clean value or raises :class:`InvalidValue` (R-IN1..4) for a value
outside the domain every input shares, or :class:`InvalidInput` naming the command's own
rule for a value the domain holds but the rule refuses (an empty name, a negative amount).

* **Text** (R-IN1): a ``str`` of valid Unicode (no lone surrogates: they cannot be encoded
  for any store), without control characters (a NUL stops PostgreSQL; a newline or an
  escape breaks the table output), at most :data:`NAME_MAX` characters for a name,
  :data:`NOTE_MAX` for a note, :data:`EMAIL_MAX` for an e-mail address. A note alone may
  hold line breaks and tabs: it is a person's free text.
* **Numbers** (R-IN2): one set of types for every numeric argument: ``int``, ``Decimal``,
  numeric text, and a finite ``float`` (taken through its shortest repr, so ``0.1`` is
  ``Decimal("0.1")``); never ``bool``; never NaN or infinity; at most
  :data:`DECIMAL_PLACES` decimal places; each argument has its own range.
* **Times** (R-IN3; a missing zone stays R-ES3): a ``datetime`` with a zone. A time a
  command records lies in :data:`EARLIEST` .. :data:`LATEST` and is kept in UTC, so a
  validity of up to :data:`DAYS_MAX` days after it is still a representable time; a time
  a query asks about may be any.
* **Flags and collections** (R-IN4): a flag is ``True`` or ``False``; a list (of ICCIDs,
  labels, networks, answers) is a collection, not a string, ``None`` or a number.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from simledger.domain.errors import InvalidInput, InvalidValue, SimledgerError, shown
from simledger.domain.iccid import normalise_iccid
from simledger.domain.types import LABEL_SEPARATOR

Number = int | float | Decimal | str
"""What every numeric argument takes (R-IN2): a finite float, numeric text included."""

NAME_MAX = 200
"""Characters of a name: operator, company, package, group, service, label, reason, cause,
country, network, idempotency key, activation code, and a query's text filters."""
NOTE_MAX = 2000
"""Characters of a SIM's note."""
EMAIL_MAX = 254
"""Characters of an e-mail address (RFC 5321's limit on a forward path, less the <>)."""
LABELS_MAX = 50
"""Labels of one SIM."""
NETWORKS_MAX = 100
"""Networks of one customer service."""

MB_MAX = Decimal(10) ** 12
"""MB of one amount (an allowance, a usage record, a top-up): a million TB."""
PRICE_MAX = Decimal(10) ** 12
DAYS_MAX = 36_500
"""Days of a package's validity: a hundred years."""
MONTHS_MAX = 1_200
"""Months of a customer service's minimum term: a hundred years."""
COUNT_MAX = 10**9
"""SIMs of one order."""
PAGE_MAX = 1_000_000
"""Events of one page an audit reads."""
VERSION_MAX = 2**62
"""Versions of an aggregate a query may name (a store holds 64-bit versions)."""
DECIMAL_PLACES = 6
"""Decimal places of a number (MB to the byte)."""
NUMBER_TEXT_MAX = 64
"""Characters of a number given as text."""

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9899, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""The times a command records: a validity of :data:`DAYS_MAX` days after :data:`LATEST`,
renewed once more, still ends before the year 10000."""

_LAYOUT_CONTROLS = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Line and paragraph separators, and the bidirectional embeddings, overrides and isolates:
not control characters to Unicode (Zl, Zp, Cf) but they break or reorder what a terminal
shows (a name that reads as another)."""
_MSISDN = re.compile(r"^\+?[1-9][0-9]{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PLACES = Decimal(1).scaleb(-DECIMAL_PLACES)
_NOTE_CONTROLS = frozenset("\n\t")
"""The control characters a note may hold: it is a person's free text, with line breaks and
tabs (CRLF is kept as LF); any other would move the cursor of a terminal."""


# ---- R-IN1 text ---------------------------------------------------------------------------------


def clean_text(value: str, what: str, *, limit: int, allowed: frozenset[str] = frozenset()) -> str:
    """``value`` (a ``str``) if it is valid Unicode, without control characters other than
    ``allowed``, and at most ``limit`` characters; else :class:`InvalidValue` (R-IN1)."""
    if len(value) > limit:
        raise InvalidValue(
            f"{what} holds at most {limit} characters, not {len(value)}", rule="R-IN1"
        )
    if value.isprintable():  # the common case, in C: no control character, no surrogate
        return value
    for char in value:
        if char in allowed or char.isprintable():
            continue
        category = unicodedata.category(char)
        if category == "Cs":
            raise InvalidValue(
                f"{what} is not valid Unicode (a lone surrogate U+{ord(char):04X}): {shown(value)}",
                rule="R-IN1",
            )
        if category == "Cc" or char in _LAYOUT_CONTROLS:
            raise InvalidValue(
                f"{what} cannot hold the control character U+{ord(char):04X}: {shown(value)}",
                rule="R-IN1",
            )
    return value


def text(value: object, what: str, *, rule: str, limit: int = NAME_MAX) -> str:
    """A non-empty string, stripped (``rule`` refuses anything else), in the domain of text."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string: {shown(value)}", rule=rule)
    return clean_text(value.strip(), what, limit=limit)


def optional_text(value: object, what: str, *, limit: int = NAME_MAX) -> str | None:
    """``text`` (R-IN1 for a value that is not one), or None; empty text is None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{what} is text or None: {shown(value)}", rule="R-IN1")
    return clean_text(value.strip(), what, limit=limit) or None


def note(value: object) -> str | None:
    """A SIM's note: text, or None to clear it (R-SIM2); line breaks kept (as ``\\n``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"a note is text: {shown(value)}", rule="R-SIM2")
    return clean_text(value.replace("\r\n", "\n"), "a note", limit=NOTE_MAX, allowed=_NOTE_CONTROLS)


def msisdn(value: object) -> str:
    """An E.164 number, spaces removed (R-SIM5)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**15:
        value = str(value)
    number = value.replace(" ", "") if isinstance(value, str) and len(value) <= 64 else ""
    if not _MSISDN.match(number):
        raise InvalidInput(f"not an E.164 MSISDN: {shown(value)}", rule="R-SIM5")
    return number


def end_user(email: object) -> str | None:
    """An end user's e-mail address, stripped, or None to clear it (R-SIM2)."""
    if email is None:
        return None
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise InvalidInput(f"the end user is an e-mail address: {shown(email)}", rule="R-SIM2")
    return clean_text(email.strip(), "an e-mail address", limit=EMAIL_MAX) or None


def labels(values: object) -> list[str]:
    """Labels stripped, each once, in their order; none may hold the CSV list separator
    (R-SIM2, R-BK4)."""
    if isinstance(values, str):
        raise InvalidInput("labels are a list of strings", rule="R-SIM2")
    items = collection(values, "labels", limit=LABELS_MAX)
    clean = list(dict.fromkeys(text(label, "label", rule="R-SIM2") for label in items))
    for label in clean:
        if LABEL_SEPARATOR in label:
            raise InvalidInput(
                f"a label cannot hold {LABEL_SEPARATOR!r}, which separates labels in CSV "
                f"exports: {label!r}",
                rule="R-SIM2",
            )
    return clean


# ---- R-IN2 numbers ------------------------------------------------------------------------------


def number(value: object, what: str) -> Decimal:
    """``value`` as a finite ``Decimal`` of at most :data:`DECIMAL_PLACES` places, below
    10**18 in size (each argument then has its own range); else R-IN2."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str, float)):
        raise InvalidValue(
            f"{what} is a number (int, Decimal, numeric text or a finite float), not "
            f"{shown(value)}",
            rule="R-IN2",
        )
    if isinstance(value, int):
        if value.bit_length() > 64:
            raise InvalidValue(f"{what} is out of range: {shown(value)}", rule="R-IN2")
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue(f"{what} must be finite: {value!r}", rule="R-IN2")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            if len(value) > NUMBER_TEXT_MAX:
                raise InvalidOperation
            amount = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            raise InvalidValue(f"{what} is not a number: {shown(value)}", rule="R-IN2") from None
    else:
        amount = value
    if not amount.is_finite():
        raise InvalidValue(f"{what} must be finite: {shown(value)}", rule="R-IN2")
    if amount and amount.adjusted() >= 18:
        raise InvalidValue(f"{what} is out of range: {shown(value)}", rule="R-IN2")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > 0:
        amount = amount.quantize(Decimal(1))  # 1E+3 as 1000: one form in the store
    elif exponent < -DECIMAL_PLACES:
        rounded = amount.quantize(_PLACES)
        if rounded != amount:
            raise InvalidValue(
                f"{what} has at most {DECIMAL_PLACES} decimal places: {shown(value)}",
                rule="R-IN2",
            )
        amount = rounded
    return amount


def _at_most(amount: Decimal, limit: Decimal | int, what: str, value: object) -> None:
    if amount > limit:
        raise InvalidValue(f"{what} is at most {limit}: {shown(value)}", rule="R-IN2")


def mb(value: object, *, rule: str, allow_zero: bool = False) -> Decimal:
    """A positive (or, with ``allow_zero``, non-negative) number of MB, at most
    :data:`MB_MAX`."""
    amount = number(value, "an amount of MB")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(f"MB must be a positive number: {shown(value)}", rule=rule)
    _at_most(amount, MB_MAX, "an amount of MB", value)
    return amount


def price(value: object) -> Decimal | None:
    """A package's price: None, or a number not below zero, at most :data:`PRICE_MAX`."""
    if value is None:
        return None
    amount = number(value, "a price")
    if amount < 0:
        raise InvalidInput(f"a price cannot be negative: {shown(value)}", rule="R-PK1")
    _at_most(amount, PRICE_MAX, "a price", value)
    return amount


def whole(value: object, what: str, *, rule: str, low: int, high: int) -> int:
    """A whole number from ``low`` (``rule`` refuses less, or a fraction) to ``high``
    (R-IN2 above it)."""
    amount = number(value, what)
    if amount != amount.to_integral_value() or amount < low:
        raise InvalidInput(
            f"{what} must be a whole number of at least {low}: {shown(value)}", rule=rule
        )
    _at_most(amount, high, what, value)
    return int(amount)


def validity_days(value: object) -> int:
    """A package's validity: a positive whole number of days, at most :data:`DAYS_MAX`
    (R-PK1)."""
    amount = number(value, "a validity")
    if amount != amount.to_integral_value() or amount <= 0:
        raise InvalidInput(
            f"validity must be a positive number of days: {shown(value)}", rule="R-PK1"
        )
    _at_most(amount, DAYS_MAX, "a validity in days", value)
    return int(amount)


def version(value: object) -> int | None:
    """A version a query names, or None: a whole number (R-ES3 refuses a fraction; one
    below 1 or past the aggregate's last is the query's own refusal), at most
    :data:`VERSION_MAX`."""
    if value is None:
        return None
    amount = number(value, "a version")
    if amount != amount.to_integral_value():
        raise InvalidInput(f"a version is a whole number: {shown(value)}", rule="R-ES3")
    _at_most(amount, VERSION_MAX, "a version", value)
    return int(amount)


# ---- R-IN3 times --------------------------------------------------------------------------------


def moment(value: object, what: str = "a time") -> datetime:
    """A ``datetime`` with a zone (R-ES3 without one; R-IN3 for anything else), any year."""
    if not isinstance(value, datetime):
        raise InvalidValue(
            f"{what} is a datetime with a time zone, not {shown(value)}", rule="R-IN3"
        )
    if value.utcoffset() is None:
        raise InvalidInput(f"timestamps must carry a time zone: {value!r}", rule="R-ES3")
    return value


def event_time(value: object, default: datetime) -> datetime:
    """A time a command records, in UTC: ``value`` (see :func:`moment`) within
    :data:`EARLIEST` .. :data:`LATEST`, or ``default`` when it is None."""
    if value is None:
        return default
    at = moment(value)
    if not EARLIEST <= at <= LATEST:
        raise InvalidValue(
            f"a recorded time lies from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC): {at!r}",
            rule="R-IN3",
        )
    return at.astimezone(UTC)


def aware(at: object, default: datetime) -> datetime:
    """:func:`event_time` (its former name)."""
    return event_time(at, default)


# ---- R-IN4 flags, collections, ids --------------------------------------------------------------


def flag(value: object, what: str) -> bool:
    """``True`` or ``False``, nothing else (not 1, not ``"no"``)."""
    if value is True or value is False:
        return value
    raise InvalidValue(f"{what} is True or False, not {shown(value)}", rule="R-IN4")


def collection(value: object, what: str, *, limit: int | None = None) -> list[object]:
    """The items of a list, tuple, set or other finite iterable (not text, bytes, a mapping
    or None), at most ``limit`` of them."""
    if (
        value is None
        or isinstance(value, (str, bytes, bytearray, Mapping))
        or not isinstance(value, Iterable)
    ):
        raise InvalidValue(f"{what} is a list, not {shown(value)}", rule="R-IN4")
    items = value if isinstance(value, list) else list(value)
    if limit is not None and len(items) > limit:
        raise InvalidValue(f"at most {limit} {what}, not {len(items)}", rule="R-IN4")
    return items


def distinct(items: Iterable[object], what: str) -> list[object]:
    """``items`` each once, in order; R-IN4 if one cannot be compared (a list in a list)."""
    try:
        return list(dict.fromkeys(items))
    except TypeError:
        raise InvalidValue(f"{what}: each item is text or a number", rule="R-IN4") from None


def item_key(raw: object) -> str:
    """How a refused item of a bulk request is named in its answer: as given when it is
    short printable text, else its shortened repr (no control character or 100 KB key is
    recorded)."""
    if isinstance(raw, str) and len(raw) <= 64 and raw.isprintable():
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() <= 128:
        return str(raw)
    return shown(raw)


def uuid_text(value: object, error: Callable[[object], SimledgerError]) -> str:
    """``value`` as the text of a UUID; ``error(value)`` if it is not one."""
    if isinstance(value, UUID):
        return str(value)
    if not isinstance(value, str) or len(value) > 64:
        raise error(item_key(value))
    try:
        return str(UUID(value))
    except ValueError:
        raise error(item_key(value)) from None


def iccids(values: object, *, rule: str = "R-SIM1") -> list[str]:
    """Normalised ICCIDs of a list (one string is refused: it is not a list)."""
    if isinstance(values, str):
        raise InvalidInput("pass a list of ICCIDs, not one string", rule=rule)
    return [normalise_iccid(i) for i in collection(values, "ICCIDs")]


def names(values: object, what: str, *, limit: int) -> list[str]:
    """A list of names (R-IN1 each), at most ``limit``."""
    out: list[str] = []
    for item in collection(values, what, limit=limit):
        if not isinstance(item, str) or not item.strip():
            raise InvalidValue(f"{what}: each is non-empty text, not {shown(item)}", rule="R-IN1")
        out.append(clean_text(item.strip(), what, limit=NAME_MAX))
    return out


def view_names(views: object) -> list[str] | None:
    """None (every view), or the view names given, one or a list: each text (R-ES3 then
    refuses a name it does not know)."""
    if views is None:
        return None
    items = [views] if isinstance(views, str) else collection(views, "views")
    for name in items:
        if not isinstance(name, str):
            raise InvalidInput(f"a view is named by its text, not {shown(name)}", rule="R-ES3")
    return [str(name) for name in items]
