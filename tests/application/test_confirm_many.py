"""Carrier answers applied in bulk: ``confirm_many`` (R-BK3), on every store."""

from __future__ import annotations

from helpers import event_count, iccid, new_ledger, ready_sim

from simledger import BulkLimitExceeded, SimStatus


def test_confirm_many_applies_each_answer_once(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    sims = [ready_sim(ledger, n) for n in range(4)]
    answer = ledger.pause(sims)
    assert answer.accepted == sims

    first = ledger.confirm_many(answer.operation_id, {sims[0]: True, sims[1]: False, sims[2]: True})
    assert first.applied == [sims[0], sims[1], sims[2]]
    assert first.skipped == {}
    assert ledger.sim(sims[0]).status is SimStatus.SUSPENDED
    assert ledger.sim(sims[1]).status is SimStatus.ACTIVE  # refused by the carrier
    assert ledger.sim(sims[1]).operation_in_flight is None
    assert ledger.sim(sims[3]).operation_in_flight is not None  # still waiting

    # The same answers again (a restarted forwarder): nothing applies twice.
    before = event_count(ledger)
    again = ledger.confirm_many(answer.operation_id, [(sims[0], True), (sims[3], True)])
    assert again.applied == [sims[3]]
    assert set(again.skipped) == {sims[0]}
    assert "R-BK3" in again.skipped[sims[0]]
    assert event_count(ledger) == before + 1
    assert ledger.sim(sims[3]).status is SimStatus.SUSPENDED


def test_confirm_many_skips_bad_and_unknown_iccids_without_recording() -> None:
    ledger, _ = new_ledger()
    sim = ready_sim(ledger, 0)
    answer = ledger.pause([sim])
    before = event_count(ledger)
    result = ledger.confirm_many(answer.operation_id, {"12345": True, iccid(99): True})
    assert result.applied == []
    assert set(result.skipped) == {"12345", iccid(99)}
    assert result.skipped["12345"].startswith("R-SIM1")
    assert event_count(ledger) == before


def test_confirm_many_refuses_more_than_the_bulk_limit_whole() -> None:
    ledger, _ = new_ledger()
    sim = ready_sim(ledger, 0)
    answer = ledger.pause([sim])
    before = event_count(ledger)
    answers = {iccid(n): True for n in range(10_001)}
    try:
        ledger.confirm_many(answer.operation_id, answers)
    except BulkLimitExceeded as error:
        assert error.rule == "R-BK1"
    else:
        raise AssertionError("10,001 answers were accepted")
    assert event_count(ledger) == before
