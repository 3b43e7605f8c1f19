"""The pauses between reconnection attempts, and which errors are a lost connection."""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import OperationalError

from simledger.application.reconnect import Backoff, connection_lost
from simledger.domain.errors import InvalidInput, StoreUnreachable


def test_pauses_double_up_to_the_cap_and_start_again_after_a_success() -> None:
    backoff = Backoff(first=0.25, cap=5.0)
    assert [backoff.next() for _ in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff.attempts == 8
    for _ in range(2000):  # no overflow however long the outage
        assert backoff.next() == 5.0
    backoff.reset()
    assert backoff.next() == 0.25


def test_lost_connections_are_told_from_other_errors() -> None:
    wrapped = RuntimeError("a round failed")
    wrapped.__cause__ = psycopg.OperationalError("terminating connection")
    assert connection_lost(wrapped)
    assert connection_lost(OperationalError("server closed the connection"))
    assert connection_lost(StoreUnreachable("Connection refused"))
    assert not connection_lost(InvalidInput("bad", rule="R-ES3"))
    assert not connection_lost(ValueError("a bug"))
