"""R-SIM1 on the ICCID functions alone (domain/iccid.py), no ledger: the Luhn check digit,
normalising, and what normalising remembers. The ledger's side of R-SIM1 (identity, refusals)
is in tests/application/test_rules_sim.py."""

from __future__ import annotations

import tracemalloc

import pytest
from helpers import ICCID_LIKE, iccid, iccid_outcome, iccids
from hypothesis import given
from hypothesis import strategies as st

from simledger.domain.errors import InvalidIccid
from simledger.domain.iccid import luhn_check_digit, make_iccid, normalise_iccid


def _textbook_luhn(payload: str) -> int:
    """The check digit as E.118 / ISO 7812 spell it out, digit by digit."""
    total = 0
    for position, digit in enumerate(reversed(payload)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


@given(st.text(alphabet="0123456789", max_size=24))
def test_r_sim1_check_digit_is_luhns(payload: str) -> None:
    assert luhn_check_digit(payload) == _textbook_luhn(payload)


def test_r_sim1_check_digit_of_known_numbers() -> None:
    assert luhn_check_digit("7992739871") == 3  # ISO/IEC 7812's worked example
    assert make_iccid("8901410321111851072") == "89014103211118510720"  # a published ICCID
    with pytest.raises(InvalidIccid):
        make_iccid("8931a")


@given(st.lists(ICCID_LIKE, max_size=12))
def test_r_sim1_a_string_normalised_again_gives_the_sameiccid_outcome(raws: list[str]) -> None:
    """Whatever normalising remembers, a string gives the same outcome every time: an
    invalid one is refused again, a valid one gives the same ICCID."""
    first = [iccid_outcome(raw) for raw in raws]
    assert [iccid_outcome(raw) for raw in raws] == first
    for raw, outcome in zip(raws, first, strict=True):
        digits = raw.replace(" ", "").replace("-", "")
        valid = (
            digits.isdigit()
            and 18 <= len(digits) <= 22
            and digits.startswith("89")
            and _textbook_luhn(digits[:-1]) == int(digits[-1])
        )
        assert (
            outcome == (f"ok {digits}" if valid else outcome) and outcome.startswith("ok ") == valid
        )


def test_r_sim1_normalising_remembers_nothing() -> None:
    """normalise_iccid is a pure function: normalising 20,000 distinct strings keeps well
    under the memory 20,000 remembered ones take (about 1.8 MB), and every answer is right.
    (A ledger's memo is its own: application/iccid_memo.py.)"""
    spaced = [" " + k for k in iccids(20_000, 5_000_000)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        assert [normalise_iccid(s) for s in spaced] == [s[1:] for s in spaced]
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert kept < 600_000, kept
    keys = [iccid(n) for n in range(10)]
    assert [normalise_iccid(k) for k in keys] == keys
