"""``simledger keys create | list | revoke`` (R-KY1, R-KY2), and the actor in what
``history --format json`` and ``export-audit`` print (R-KY3): each command in its own
process, on a SQLite file and a PostgreSQL schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import FakeClock, clean_env, ready_sim, run_sql

from simledger import SimLedger
from simledger.domain.actor import Actor

SECRET = re.compile(r"^slk_[A-Za-z0-9_-]{43}$")


@dataclass
class Run:
    code: int
    out: str
    err: str


def cli(env: dict[str, str], *args: str) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "simledger.runners.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def one_error(run: Run, rule: str) -> None:
    assert run.code == 2, run
    assert run.err.strip().splitlines() == [run.err.strip()]
    assert run.err.startswith(f"error: {rule}: "), run.err


def test_a_key_created_listed_and_revoked_on_the_command_line(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    made = cli(env, "keys", "create", "--name", "acme app", "--company", "Acme",
               "--scope", "sims:read", "--scope", "bulk")  # fmt: skip
    assert made.code == 0, made.err
    lines = made.out.splitlines()
    secret = lines[0]
    assert SECRET.match(secret), made.out  # the key alone on the first line
    ops = cli(env, "keys", "create", "--name", "staff", "--operator", "--scope", "admin")
    assert ops.code == 0 and SECRET.match(ops.out.splitlines()[0])
    assert ops.out.count("slk_") == 1 and made.out.count("slk_") == 1  # once

    ledger = SimLedger(env)
    try:
        key = ledger.keys.authenticate(secret)
        assert key is not None and key.company == "Acme"
        assert key.scopes == frozenset({"sims:read", "bulk"})
        assert lines[1].split()[:2] == ["id", key.id] and "sims:read bulk" in lines[1]

        listed = cli(env, "keys", "list", "--format", "json")
        assert listed.code == 0 and "slk_" not in listed.out
        rows = json.loads(listed.out)
        assert [(r["id"], r["name"], r["company"], r["scopes"], r["revoked"]) for r in rows] == [
            (key.id, "acme app", "Acme", ["sims:read", "bulk"], None),
            (rows[1]["id"], "staff", "operator", ["admin"], None),
        ]
        table = cli(env, "keys", "list")
        assert table.out.splitlines()[0].split() == [
            "id", "name", "company", "scopes", "created", "revoked"
        ]  # fmt: skip
        assert key.id in table.out and "operator" in table.out

        revoked = cli(env, "keys", "revoke", key.id)
        assert revoked.code == 0 and key.id in revoked.out
        assert ledger.keys.authenticate(secret) is None  # this process sees it at once
        rows = json.loads(cli(env, "keys", "list", "--format", "json").out)
        assert rows[0]["revoked"] is not None and rows[1]["revoked"] is None
    finally:
        ledger.close()


def test_bad_keys_are_refused_with_their_rule_and_nothing_stored(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    both = ("--company", "Acme", "--operator", "--scope", "bulk")
    one_error(cli(env, "keys", "create", "--name", "x", *both), "R-KY1")
    one_error(cli(env, "keys", "create", "--name", "x", "--scope", "bulk"), "R-KY1")
    wrong = ("--operator", "--scope", "sims:read", "--scope", "sims:delete")
    one_error(cli(env, "keys", "create", "--name", "x", *wrong), "R-KY1")
    one_error(cli(env, "keys", "revoke", "key_000000000000"), "R-KY2")
    assert json.loads(cli(env, "keys", "list", "--format", "json").out) == []


def test_history_and_export_audit_show_who_caused_each_event_and_verify_checks_it(
    persistent_store_env: dict[str, str],
) -> None:
    env = persistent_store_env
    alice = Actor("key_a11ce0000000", "alice")
    ledger = SimLedger(env, clock=FakeClock())
    try:
        key = ready_sim(ledger)  # nobody named
        with ledger.acting_as(alice):
            ledger.set_note(key, "by alice")
    finally:
        ledger.close()
    history = json.loads(cli(env, "history", key, "--format", "json").out)
    assert [e["actor"] for e in history][-2:] == [None, {"id": alice.id, "name": "alice"}]
    audit = cli(env, "export-audit", "--iccid", key)
    records: list[dict[str, Any]] = [json.loads(line) for line in audit.out.splitlines()]
    assert records[-1]["event"] == "NoteSet"
    assert records[-1]["actor"] == {"id": alice.id, "name": "alice"}
    assert all(r["actor"] is None for r in records[:-1])

    assert cli(env, "verify").code == 0  # events with and without an actor
    version = records[-1]["version"]
    [(state,)] = run_sql(
        env, "SELECT state FROM {table} WHERE originator_id = ? AND originator_version = ?",
        key, version,
    )  # fmt: skip
    fields = json.loads(bytes(state))
    fields["actor"]["name"] = "mallory"
    run_sql(
        env, "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
        json.dumps(fields).encode(), key, version,
    )  # fmt: skip
    tampered = cli(env, "verify")
    assert tampered.code == 1 and "altered" in tampered.out + tampered.err


@pytest.mark.parametrize("args", [("keys", "--help"), ("keys", "create", "--help")])
def test_the_keys_commands_are_listed_in_the_help(args: tuple[str, ...]) -> None:
    run = cli({}, *args)
    assert run.code == 0 and "Usage" in run.out
