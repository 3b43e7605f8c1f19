"""Pause and resume of data usage (seed 003): R-BK1, R-BK2, R-BK3, R-BK6.

R-BK5 ("paused SIMs are still charged the monthly platform fee") has no test here: the
engine keeps no fees, invoices or charges at all, so there is no behaviour of simledger
that the rule could constrain. A pause does not remove a SIM from its company or package
(checked by the R-BK3 tests, which compare the whole SIM state), so billing built on the
ledger still sees every paused SIM as a billable SIM of its company.

R-BK4 (CSV export) belongs with the import/export tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from helpers import (
    OPERATOR,
    event_count,
    iccid,
    iccids,
    new_ledger,
    ready_sim,
    received_sim,
    user_paused_sim,
)

from simledger import (
    BulkLimitExceeded,
    InvalidInput,
    NoOperationInFlight,
    SimLedger,
    SimStatus,
    SuspendReason,
)

S = SimStatus


# --------------------------------------------------------------------------- R-BK1


def test_r_bk1_ten_thousand_sims_are_one_request(ledger: SimLedger) -> None:
    """Exactly 10,000 SIMs are accepted as one request (in memory, to stay fast)."""
    active = [ready_sim(ledger, n) for n in range(3)]
    others = ledger.receive_sims(iccids(10_000 - 3, 100), operator=OPERATOR, sim_type="prepaid")
    requested = active + others
    assert len(requested) == 10_000
    result = ledger.pause(requested)
    assert result.accepted == active
    assert set(result.rejected) == set(others)
    assert all(reason.startswith("R-SIM4") for reason in result.rejected.values())
    for key in active:
        assert ledger.sim(key).operation_in_flight is not None


def test_r_bk1_more_than_ten_thousand_is_refused(ledger: SimLedger) -> None:
    key = user_paused_sim(ledger)
    before, state = event_count(ledger), ledger.sim(key)
    with pytest.raises(BulkLimitExceeded) as caught:
        ledger.resume([key, *iccids(10_000, 100)])  # 10,001 SIMs
    assert caught.value.rule == "R-BK1"
    assert "10000" in str(caught.value)
    assert event_count(ledger) == before
    assert ledger.sim(key) == state


# --------------------------------------------------------------------------- R-BK2


def test_r_bk2_answer_lists_accepted_and_rejected_with_reasons(ledger: SimLedger) -> None:
    active = ready_sim(ledger, 1)
    blank = received_sim(ledger, 2, checked=True)
    unknown = iccid(3)
    malformed = iccid(4)[:-1] + "x"
    spaced = f"{active[:10]} {active[10:]}"
    result = ledger.pause([spaced, blank, unknown, malformed])
    assert isinstance(result.operation_id, UUID)
    assert result.kind == "pause"
    assert result.accepted == [active]
    assert set(result.rejected) == {blank, unknown, malformed}
    assert result.rejected[blank].startswith("R-SIM4") and "blank" in result.rejected[blank]
    assert result.rejected[unknown].startswith("R-SIM1") and unknown in result.rejected[unknown]
    assert result.rejected[malformed].startswith("R-SIM1")
    assert ledger.sim(blank).operation_in_flight is None


# --------------------------------------------------------------------------- R-BK3


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, Mapping) else getattr(item, name)


def test_r_bk3_status_changes_only_when_the_carrier_confirms(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    first, second = ready_sim(ledger, 1), ready_sim(ledger, 2)
    state = {k: ledger.sim(k) for k in (first, second)}
    result = ledger.pause([first, second])
    assert result.accepted == [first, second]
    for key in (first, second):
        view = ledger.sim(key)
        assert view.status is S.ACTIVE  # sent to the carrier, not yet paused
        assert view.operation_in_flight is not None
        assert view.operation_in_flight["operation_id"] == str(result.operation_id)
        assert view.operation_in_flight["kind"] == "pause"
        assert (view.company, view.package_id, view.copy_id) == (
            state[key].company,
            state[key].package_id,
            state[key].copy_id,
        )
    ledger.confirm(result.operation_id, first)
    assert ledger.sim(first).status is S.SUSPENDED
    assert ledger.sim(first).suspended_reason is SuspendReason.USER
    assert ledger.sim(first).operation_in_flight is None
    assert ledger.sim(second).status is S.ACTIVE
    ledger.confirm(result.operation_id, second)
    assert ledger.sim(second).status is S.SUSPENDED


def test_r_bk3_carrier_refusal_leaves_the_status(ledger: SimLedger) -> None:
    key = ready_sim(ledger)
    result = ledger.pause([key])
    ledger.confirm(result.operation_id, key, ok=False, reason="barring not supported")
    view = ledger.sim(key)
    assert view.status is S.ACTIVE
    assert view.operation_in_flight is None
    events = [h for h in ledger.history(key) if h.event == "PauseRefused"]
    assert [e.data["reason"] for e in events] == ["barring not supported"]
    # the carrier answered: a new request is accepted (R-BK6)
    assert ledger.pause([key]).accepted == [key]


def test_r_bk3_a_late_yes_for_a_sim_that_moved_meanwhile_changes_nothing(
    ledger: SimLedger,
) -> None:
    """Pause sent, then the system pauses the SIM before the carrier answers: the carrier's
    yes is kept on record (superseded) and the SIM is no longer waiting for it."""
    key = ready_sim(ledger)
    result = ledger.pause([key])
    ledger.suspend_by_system(key, "operator action")
    ledger.confirm(result.operation_id, key)
    view = ledger.sim(key)
    assert (view.status, view.suspended_reason) == (S.SUSPENDED, SuspendReason.SYSTEM)
    assert view.operation_in_flight is None
    assert [h.event for h in ledger.history(key)][-1] == "OperationSuperseded"


def test_r_bk3_confirm_for_a_wrong_operation_is_refused(ledger: SimLedger) -> None:
    key, other = ready_sim(ledger, 1), ready_sim(ledger, 2)
    result = ledger.pause([key])
    second = ledger.pause([other])
    before, state = event_count(ledger), ledger.sim(key)
    for wrong_op, sim in ((uuid4(), key), (second.operation_id, key), (result.operation_id, other)):
        with pytest.raises(NoOperationInFlight) as caught:
            ledger.confirm(wrong_op, sim)
        assert caught.value.rule == "R-BK3"
        assert sim in str(caught.value)
    assert event_count(ledger) == before
    assert ledger.sim(key) == state
    ledger.confirm(result.operation_id, key)
    with pytest.raises(NoOperationInFlight):  # answered already
        ledger.confirm(result.operation_id, key)


def test_r_bk3_confirm_for_a_sim_never_requested_is_refused(ledger: SimLedger) -> None:
    key = ready_sim(ledger)
    with pytest.raises(NoOperationInFlight) as caught:
        ledger.confirm(uuid4(), key)
    assert caught.value.rule == "R-BK3"


def test_r_bk3_pending_activity_lists_requests_until_confirmed() -> None:
    ledger, clock = new_ledger()
    a, b, c = ready_sim(ledger, 1), ready_sim(ledger, 2), ready_sim(ledger, 3)
    first = ledger.pause([a, b, c])
    ledger.confirm(first.operation_id, a)
    ledger.confirm(first.operation_id, b, ok=False)
    clock.advance(timedelta(minutes=1))  # requests are ordered by the ledger's clock
    second = ledger.resume([a])
    listed = list(ledger.pending_activity())
    assert [_field(op, "operation_id") for op in listed] == [
        second.operation_id,
        first.operation_id,
    ]
    newest, oldest = listed
    assert _field(newest, "kind") == "resume"
    assert [_field(oldest, f) for f in ("requested", "confirmed", "refused", "pending")] == [
        3,
        1,
        1,
        1,
    ]
    assert _field(oldest, "overdue") == 0


# --------------------------------------------------------------------------- R-BK6


def test_r_bk6_second_request_in_flight_is_rejected_for_that_sim() -> None:
    ledger, clock = new_ledger(carrier_deadline=timedelta(minutes=30))
    busy, free = ready_sim(ledger, 1), ready_sim(ledger, 2)
    first = ledger.pause([busy])
    state = ledger.sim(busy)
    for again in (ledger.pause, ledger.resume):
        result = again([busy, free]) if again == ledger.pause else again([busy])
        assert busy not in result.accepted
        assert result.rejected[busy].startswith("R-BK6")
        assert str(first.operation_id) in result.rejected[busy]
        assert ledger.sim(busy) == state
    # ``free`` was accepted by the second pause: both now wait for the carrier
    assert ledger.sim(free).operation_in_flight is not None
    clock.advance(timedelta(minutes=29))
    assert ledger.pause([busy]).rejected[busy].startswith("R-BK6")
    # the deadline passes without an answer: a new request is allowed
    clock.advance(timedelta(minutes=1))
    retry = ledger.pause([busy])
    assert retry.accepted == [busy]
    with pytest.raises(NoOperationInFlight):  # the stale request can no longer be confirmed
        ledger.confirm(first.operation_id, busy)
    ledger.confirm(retry.operation_id, busy)
    assert ledger.sim(busy).status is S.SUSPENDED


def test_r_bk6_same_idempotency_key_returns_the_first_answer(store_env: dict[str, str]) -> None:
    ledger, _ = new_ledger(store_env)
    a, blank = ready_sim(ledger, 1), received_sim(ledger, 2, checked=True)
    first = ledger.pause([a, blank], idempotency_key="req-2024-001")
    before = event_count(ledger)
    again = ledger.pause([blank, f"{a[:6]} {a[6:]}"], idempotency_key="req-2024-001")
    assert again == first
    assert event_count(ledger) == before
    # still the first answer after the carrier confirmed it
    ledger.confirm(first.operation_id, a)
    before = event_count(ledger)
    assert ledger.pause([a, blank], idempotency_key="req-2024-001") == first
    assert event_count(ledger) == before
    assert ledger.sim(a).status is S.SUSPENDED


def test_r_bk6_reused_key_for_a_different_request_is_refused(ledger: SimLedger) -> None:
    a, b = ready_sim(ledger, 1), ready_sim(ledger, 2)
    ledger.pause([a], idempotency_key="k-1")
    before, state = event_count(ledger), ledger.sim(b)
    for different in (
        lambda: ledger.pause([a, b], idempotency_key="k-1"),
        lambda: ledger.pause([b], idempotency_key="k-1"),
        lambda: ledger.resume([a], idempotency_key="k-1"),
    ):
        with pytest.raises(InvalidInput) as caught:
            different()
        assert caught.value.rule == "R-BK6"
        assert "k-1" in str(caught.value)
    assert event_count(ledger) == before
    assert ledger.sim(b) == state
    assert ledger.pause([b], idempotency_key="k-2").accepted == [b]
