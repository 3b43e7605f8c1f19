"""The value checks of the commands' inputs: each returns the clean value or raises
:class:`InvalidInput` (or the given error) naming the rule, before any event exists."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from simledger.domain.errors import InvalidInput, SimledgerError
from simledger.domain.iccid import normalise_iccid
from simledger.domain.types import LABEL_SEPARATOR

_MSISDN = re.compile(r"^\+?[1-9][0-9]{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def uuid_text(value: object, error: Callable[[object], SimledgerError]) -> str:
    """``value`` as the text of a UUID; ``error(value)`` if it is not one."""
    try:
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    except ValueError:
        raise error(value) from None


def mb(value: object, *, rule: str, allow_zero: bool = False) -> Decimal:
    """A positive (or, with ``allow_zero``, non-negative) finite number of MB."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"not a number of MB: {value!r}", rule=rule) from None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(f"MB must be a positive number: {value!r}", rule=rule)
    return amount


def text(value: object, what: str, *, rule: str) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string: {value!r}", rule=rule)
    return value.strip()


def aware(at: datetime | None, default: datetime) -> datetime:
    """``at`` (which must carry a time zone), or ``default`` when it is None."""
    if at is None:
        return default
    if at.tzinfo is None:
        raise InvalidInput(f"timestamps must carry a time zone: {at!r}", rule="R-ES3")
    return at


def msisdn(value: object) -> str:
    """An E.164 number, spaces removed (R-SIM5)."""
    number = str(value).replace(" ", "")
    if not _MSISDN.match(number):
        raise InvalidInput(f"not an E.164 MSISDN: {value!r}", rule="R-SIM5")
    return number


def end_user(email: object) -> str | None:
    """An end user's e-mail address, stripped, or None to clear it (R-SIM2)."""
    if email is None:
        return None
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise InvalidInput(f"the end user is an e-mail address: {email!r}", rule="R-SIM2")
    return email.strip() or None


def note(value: object) -> str | None:
    """A SIM's note: text, or None to clear it (R-SIM2)."""
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"a note is text: {value!r}", rule="R-SIM2")
    return value


def labels(values: Iterable[str]) -> list[str]:
    """Labels stripped, each once, in their order; none may hold the CSV list separator
    (R-SIM2, R-BK4)."""
    if isinstance(values, str):
        raise InvalidInput("labels are a list of strings", rule="R-SIM2")
    clean = list(dict.fromkeys(text(label, "label", rule="R-SIM2") for label in values))
    for label in clean:
        if LABEL_SEPARATOR in label:
            raise InvalidInput(
                f"a label cannot hold {LABEL_SEPARATOR!r}, which separates labels in CSV "
                f"exports: {label!r}",
                rule="R-SIM2",
            )
    return clean


def validity_days(value: object) -> int:
    """A package's validity: a positive whole number of days (R-PK1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"validity must be a positive number of days: {value!r}", rule="R-PK1")
    return value


def iccids(values: Iterable[object], *, rule: str = "R-SIM1") -> list[str]:
    """Normalised ICCIDs of a list (one string is refused: it is not a list)."""
    if isinstance(values, str):
        raise InvalidInput("pass a list of ICCIDs, not one string", rule=rule)
    return [normalise_iccid(i) for i in values]
