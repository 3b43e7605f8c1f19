"""A ledger's memo of normalised ICCIDs (application/iccid_memo.py): through it, the outcome
is always normalise_iccid's (R-SIM1); only valid ICCIDs are kept, and at most ``size``."""

from __future__ import annotations

from helpers import ICCID_LIKE, iccid, iccid_outcome
from hypothesis import given
from hypothesis import strategies as st

from simledger.application.iccid_memo import IccidMemo


@given(st.lists(ICCID_LIKE, max_size=12))
def test_through_the_memo_the_outcome_is_normalise_iccid_s(raws: list[str]) -> None:
    memo = IccidMemo()
    first = [iccid_outcome(raw) for raw in raws]
    assert [iccid_outcome(raw, memo.normalise) for raw in raws] == first
    assert [iccid_outcome(raw, memo.normalise) for raw in raws] == first  # now remembered
    for raw, was in zip(raws, first, strict=True):
        assert (raw in memo) == was.startswith("ok ")  # an invalid one is never kept


def test_the_memo_keeps_at_most_its_size() -> None:
    memo = IccidMemo(size=3)
    keys = [iccid(n) for n in range(10)]
    assert [memo.normalise(k) for k in keys] == keys
    assert len(memo) <= 3
    assert [memo.normalise(k) for k in keys] == keys
