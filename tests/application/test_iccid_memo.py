"""A ledger's memo of normalised ICCIDs (application/iccid_memo.py): through it, the outcome
is always normalise_iccid's (R-SIM1); only valid ICCIDs are kept, and at most ``size``."""

from __future__ import annotations

from collections.abc import Callable

from helpers import iccid
from hypothesis import given
from hypothesis import strategies as st

from simledger import InvalidIccid
from simledger.application.iccid_memo import IccidMemo
from simledger.domain.iccid import make_iccid, normalise_iccid


def outcome(raw: object, normalise: Callable[[object], str] = normalise_iccid) -> str:
    try:
        return "ok " + normalise(raw)
    except InvalidIccid as error:
        return f"refused {error.reason}"


ICCID_LIKE = st.one_of(
    st.text(alphabet="0123456789 -a", max_size=24),
    st.builds(lambda n: make_iccid(f"89{n:017d}"), st.integers(0, 10**17 - 1)),
    st.builds(
        lambda n, k: make_iccid(f"89{n:017d}")[:-1] + str(k), st.integers(0, 99), st.integers(0, 9)
    ),
)


@given(st.lists(ICCID_LIKE, max_size=12))
def test_through_the_memo_the_outcome_is_normalise_iccid_s(raws: list[str]) -> None:
    memo = IccidMemo()
    first = [outcome(raw) for raw in raws]
    assert [outcome(raw, memo.normalise) for raw in raws] == first
    assert [outcome(raw, memo.normalise) for raw in raws] == first  # now remembered
    for raw, was in zip(raws, first, strict=True):
        assert (raw in memo) == was.startswith("ok ")  # an invalid one is never kept


def test_the_memo_keeps_at_most_its_size() -> None:
    memo = IccidMemo(size=3)
    keys = [iccid(n) for n in range(10)]
    assert [memo.normalise(k) for k in keys] == keys
    assert len(memo) <= 3
    assert [memo.normalise(k) for k in keys] == keys
