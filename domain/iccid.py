"""ICCID normalisation and validation (R-SIM1, ITU-T E.118)."""

from __future__ import annotations

from simledger.domain.errors import InvalidIccid

_SEPARATORS = str.maketrans("", "", " -")


_DOUBLED = bytes.maketrans(
    bytes(range(10)), bytes(2 * d - 9 if d > 4 else 2 * d for d in range(10))
)
"""Maps a digit to its double, minus 9 when that is above 9 (Luhn)."""
_AS_DIGITS = bytes.maketrans(b"0123456789", bytes(range(10)))


def luhn_check_digit(digits: str) -> int:
    """The Luhn check digit to append to ``digits`` (ASCII digits): the rightmost digit and
    every second one leftwards are doubled."""
    values = digits.encode("ascii").translate(_AS_DIGITS)
    total = sum(values[-2::-2]) + sum(values[-1::-2].translate(_DOUBLED))
    return (10 - total % 10) % 10


def normalise_iccid(raw: object) -> str:
    """Return the ICCID as a string of digits, or raise ``InvalidIccid`` naming the reason."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 <= raw < 10**22:  # str() of an int above 4,300 digits raises ValueError
            raise InvalidIccid(raw, "an ICCID has 18 to 22 digits")
        raw = str(raw)
    if not isinstance(raw, str):
        raise InvalidIccid(raw, "an ICCID is a string of digits")
    iccid = raw.strip().translate(_SEPARATORS)
    if not iccid.isascii() or not iccid.isdigit():
        raise InvalidIccid(raw, "only digits, spaces and dashes are allowed")
    if not 18 <= len(iccid) <= 22:
        raise InvalidIccid(raw, f"{len(iccid)} digits; an ICCID has 18 to 22")
    if not iccid.startswith("89"):
        raise InvalidIccid(raw, "an ICCID starts with 89 (telecom industry prefix)")
    if luhn_check_digit(iccid[:-1]) != int(iccid[-1]):
        raise InvalidIccid(raw, "the Luhn check digit does not match")
    return iccid


def make_iccid(body: str) -> str:
    """Complete ``body`` (digits, starting with 89) with its Luhn check digit."""
    if not (body.isascii() and body.isdigit()):
        raise InvalidIccid(body, "only digits make an ICCID body")
    return body + str(luhn_check_digit(body))
