"""What the HTTP service skips per request, and why that stays true: a key checked once is
trusted for ``max_age`` seconds at most (a revocation counts after it; an unknown secret is
never remembered), and the position header of a read is the one its own freshness check
read, never older than the views were when the read ran (after a save: asked again)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simledger import SimLedger
from simledger.application.keys import ApiKey, KeyCache
from simledger.application.service_reads import (
    position_marks,
    views_position,
    views_position_after,
)
from simledger.domain.iccid import make_iccid


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # memory, SQLite and PostgreSQL


def counted(ledger: SimLedger) -> tuple[Callable[[str], ApiKey | None], list[str]]:
    """``ledger.keys.authenticate``, and the secrets it was asked about."""
    asked: list[str] = []

    def authenticate(secret: str) -> ApiKey | None:
        asked.append(secret)
        return ledger.keys.authenticate(secret)

    return authenticate, asked


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_revocation_counts_once_the_cached_key_is_older_than_max_age(
    ledger: SimLedger,
) -> None:
    clock = Clock()
    authenticate, asked = counted(ledger)
    cache = KeyCache(authenticate, max_age=1.0, clock=clock)
    key, secret = ledger.keys.create(name="k", scopes=["sims:read"], company="acme")
    assert cache.authenticate(secret) == key
    assert cache.authenticate(secret) == key
    assert len(asked) == 1  # the second from the cache
    ledger.keys.revoke(key.id)
    clock.now += 0.999
    assert cache.authenticate(secret) == key  # within the bound: still trusted
    clock.now += 0.001
    assert cache.authenticate(secret) is None  # past it: the store says revoked
    assert cache.authenticate(secret) is None
    assert len(asked) == 3  # a revoked key is not remembered


def test_an_unknown_secret_is_asked_each_time_and_the_cache_is_bounded(
    ledger: SimLedger,
) -> None:
    clock = Clock()
    authenticate, asked = counted(ledger)
    cache = KeyCache(authenticate, max_age=60, size=2, clock=clock)
    unknown = "slk_" + "x" * 43
    assert cache.authenticate(unknown) is None
    assert cache.authenticate(unknown) is None
    assert asked == [unknown, unknown]
    secrets = [
        ledger.keys.create(name=f"k{n}", scopes=["bulk"], operator=True)[1] for n in range(3)
    ]
    for secret in secrets:
        cache.authenticate(secret)
    assert cache.cached(secrets[0]) is None  # the oldest went when the third came
    assert cache.cached(secrets[1]) is not None and cache.cached(secrets[2]) is not None
    off = KeyCache(authenticate, max_age=0, clock=clock)
    off.authenticate(secrets[0])
    assert off.cached(secrets[0]) is None


def test_a_read_reports_the_position_its_check_saw_and_a_save_asks_again(
    ledger: SimLedger,
) -> None:
    ledger.receive_sims([make_iccid("893300000000000001")], operator="Orange", sim_type="prepaid")
    marks = position_marks(ledger)
    ledger.sims(limit=10)
    assert position_marks(ledger) == (marks[0] + 1, marks[1])  # the shortcut's case
    assert views_position_after(ledger, marks) == ledger.views.seen == views_position(ledger)
    # A save in the call: the position is asked of the store, and covers the save.
    marks = position_marks(ledger)
    ledger.sims(limit=10)
    ledger.receive_sims([make_iccid("893300000000000002")], operator="Orange", sim_type="prepaid")
    after = views_position_after(ledger, marks)
    assert after == views_position(ledger) >= ledger.last_saved_position > 0
    assert views_position_after(ledger, None) == views_position(ledger)
