"""API keys (R-KY1, R-KY2): created with a secret shown once and stored only as its hash,
listed, revoked (kept, with its time), and checked by ``authenticate`` on every store; two
ledgers on one store see each other's keys and revocations at once (nothing cached)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from helpers import FakeClock, store_cursor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from simledger import InvalidInput, InvalidValue, SimLedger
from simledger.application.keys import PREFIX, SCOPES, ApiKey, key_id
from simledger.domain.actor import Actor
from simledger.domain.errors import UnknownKey


@pytest.fixture
def ledger_env(store_env: dict[str, str]) -> dict[str, str]:
    return store_env  # memory, SQLite and PostgreSQL


def stored_keys(env: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """Every row of the key table, read outside the ledger."""
    with store_cursor(env) as cur:
        if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
            table = sql.Identifier(env["POSTGRES_SCHEMA"], "simledger_keys")
            cur.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(table))
        else:
            cur.execute("SELECT * FROM simledger_keys ORDER BY id")
        return [tuple(row) for row in cur.fetchall()]


def test_a_key_is_created_listed_authenticated_and_revoked(
    ledger: SimLedger, clock: FakeClock
) -> None:
    key, secret = ledger.keys.create(
        name=" acme app ", company="Acme", scopes=["bulk", "sims:read", "bulk"]
    )
    assert secret.startswith(PREFIX) and len(secret) > 40
    assert key == ApiKey(
        id=key_id(secret),
        name="acme app",
        company="Acme",
        scopes=frozenset({"sims:read", "bulk"}),
        created_at=clock.now,
        revoked_at=None,
    )
    assert not key.operator and key.actor() == Actor(key.id, "acme app")
    clock.advance(timedelta(seconds=1))
    ops, ops_secret = ledger.keys.create(name="staff", operator=True, scopes=SCOPES)
    assert ops.operator and ops.company is None and ops.scopes == frozenset(SCOPES)
    assert ledger.keys.list() == [key, ops]
    assert ledger.keys.authenticate(secret) == key
    assert ledger.keys.authenticate(ops_secret) == ops

    revoked = ledger.keys.revoke(f" {key.id} ")
    assert revoked.revoked_at is not None and revoked.id == key.id
    assert ledger.keys.authenticate(secret) is None
    assert ledger.keys.authenticate(ops_secret) == ops  # the other key still opens
    assert ledger.keys.list() == [revoked, ops]  # kept, with its revocation time
    assert ledger.keys.revoke(key.id) == revoked  # again: the first time is kept
    assert ledger.keys.get(key.id) == revoked


def test_the_store_holds_the_hash_of_the_secret_never_the_secret(
    persistent_store_env: dict[str, str],
) -> None:
    ledger = SimLedger(persistent_store_env)
    try:
        key, secret = ledger.keys.create(name="app", company="Acme", scopes=["sims:read"])
    finally:
        ledger.close()
    [row] = stored_keys(persistent_store_env)
    assert row[0] == key.id
    assert row[1] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(column) for column in row)
    assert secret[len(PREFIX) :] not in repr(row)


def test_two_ledgers_on_one_store_see_each_others_keys_and_revocations(
    persistent_store_env: dict[str, str],
) -> None:
    clock = FakeClock()
    one = SimLedger(persistent_store_env, clock=clock)
    two = SimLedger(persistent_store_env, clock=clock)
    try:
        key, secret = one.keys.create(name="app", company="Acme", scopes=["bulk"])
        assert two.keys.authenticate(secret) == key  # known at once to the other
        assert two.keys.list() == [key]
        two.keys.revoke(key.id)
        assert one.keys.authenticate(secret) is None  # the next check, no cache
        clock.advance(timedelta(seconds=1))
        other, other_secret = two.keys.create(name="ops", operator=True, scopes=["admin"])
        assert one.keys.authenticate(other_secret) == other
    finally:
        one.close()
        two.close()
    again = SimLedger(persistent_store_env)  # a later process: the keys were kept
    try:
        assert [k.id for k in again.keys.list()] == [key.id, other.id]
    finally:
        again.close()


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        ({"company": "Acme", "operator": True}, "R-KY1"),  # both
        ({}, "R-KY1"),  # neither
        ({"company": "  "}, "R-KY1"),  # an empty company is none
        ({"company": "Acme", "scopes": ["sims:delete"]}, "R-KY1"),
        ({"company": "Acme", "scopes": []}, "R-KY1"),
        ({"company": "Acme", "scopes": [None]}, "R-KY1"),
        ({"company": "Acme", "name": ""}, "R-KY1"),
        ({"company": "Acme", "name": "a\x00b"}, "R-IN1"),
        ({"company": "x" * 201}, "R-IN1"),
        ({"operator": "yes"}, "R-IN4"),
        ({"company": "Acme", "scopes": None}, "R-IN4"),
    ],
)
def test_a_bad_key_is_refused_with_its_rule_and_nothing_stored(
    ledger: SimLedger, arguments: dict[str, Any], rule: str
) -> None:
    given = {"name": "app", "scopes": ["bulk"], **arguments}
    with pytest.raises(InvalidInput) as refused:
        ledger.keys.create(**given)
    assert refused.value.rule == rule
    assert ledger.keys.list() == []


@pytest.mark.parametrize("key_id", ["nope", "", "key_000000000000", None, 7])
def test_revoking_an_unknown_key_is_refused(ledger: SimLedger, key_id: Any) -> None:
    ledger.keys.create(name="app", company="Acme", scopes=["bulk"])
    with pytest.raises(UnknownKey) as refused:
        ledger.keys.revoke(key_id)
    assert refused.value.rule == "R-KY2"
    assert [k.revoked_at for k in ledger.keys.list()] == [None]


GARBAGE = st.one_of(
    st.text(),
    st.text().map(lambda rest: PREFIX + rest),
    st.binary(),
    st.none(),
    st.integers(),
    st.lists(st.text()),
    st.sampled_from(["\ud800", PREFIX + "\ud800", PREFIX + "\x00", PREFIX + "x" * 10_000]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=GARBAGE)
def test_no_other_value_authenticates_and_none_raises(ledger: SimLedger, secret: Any) -> None:
    if not ledger.keys.list():
        ledger.keys.create(name="app", company="Acme", scopes=["bulk"])
    assert ledger.keys.authenticate(secret) is None


def test_a_secret_one_character_off_opens_nothing(ledger: SimLedger) -> None:
    _, secret = ledger.keys.create(name="app", company="Acme", scopes=["bulk"])
    last = "A" if secret[-1] != "A" else "B"
    for near in (secret[:-1] + last, secret[:-1], secret + "x", secret.upper(), f" {secret}"):
        assert ledger.keys.authenticate(near) is None


def test_an_actor_is_text_in_the_domain_of_values() -> None:
    assert Actor(" key_1 ", " Alice ") == Actor("key_1", "Alice")
    for bad_id, bad_name, rule in (
        ("", "Alice", "R-IN1"),
        ("k", None, "R-IN1"),
        ("k", "a\nb", "R-IN1"),
        ("k", "x" * 201, "R-IN1"),
    ):
        with pytest.raises(InvalidInput) as refused:
            Actor(bad_id, bad_name)  # type: ignore[arg-type]
        assert refused.value.rule == rule
    with pytest.raises(InvalidValue):
        SimLedger(actor="alice")  # type: ignore[arg-type]
