"""``verify`` reports tampering that breaks decoding or folding, naming the event (issue 14,
item 9): swapped states, invalid JSON, a missing field, an unknown topic. Each is a problem
of the report (and a non-zero exit of ``simledger verify``), never a crash, and the rest of
the store is still checked.

The rows are edited with SQL, as an intruder with database access would (the state column
holds the event's JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from helpers import clean_env, ready_sim, run_sql

from simledger import SimLedger
from simledger.application.audit import VerifyReport
from simledger.domain.errors import TamperedEvent

KINDS = {"altered", "undecodable", "rebuild", "views"}


def rows_of(env: dict[str, str], sim: str) -> list[tuple[int, int, str, bytes]]:
    """(notification id, version, topic, state) of each stored event of ``sim``."""
    lite = env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    id_column = "rowid" if lite else "notification_id"
    found = run_sql(
        env,
        f"SELECT {id_column}, originator_version, topic, state FROM {{table}} "
        "WHERE originator_id = ? ORDER BY originator_version",
        sim,
    )
    return [(int(i), int(v), str(t), bytes(s)) for i, v, t, s in found]


def set_row(env: dict[str, str], sim: str, version: int, **values: Any) -> None:
    for column, value in values.items():
        run_sql(
            env,
            f"UPDATE {{table}} SET {column} = ? WHERE originator_id = ? AND originator_version = ?",
            value,
            sim,
            version,
        )


def swap_states(env: dict[str, str], sim: str, rows: list[Any]) -> tuple[int, int]:
    (_, a, _, state_a), (_, b, _, state_b) = rows[2], rows[3]
    set_row(env, sim, a, state=state_b)
    set_row(env, sim, b, state=state_a)
    return rows[2][0], a


def invalid_json(env: dict[str, str], sim: str, rows: list[Any]) -> tuple[int, int]:
    set_row(env, sim, rows[2][1], state=b"{not json")
    return rows[2][0], rows[2][1]


def missing_field(env: dict[str, str], sim: str, rows: list[Any]) -> tuple[int, int]:
    """The company of ``CompanyAssigned`` removed (its chain hash left as it was)."""
    [(n, version, _, state)] = [r for r in rows if r[2].endswith("CompanyAssigned")]
    fields = json.loads(state)
    del fields["company"]
    set_row(env, sim, version, state=json.dumps(fields).encode())
    return n, version


def unknown_topic(env: dict[str, str], sim: str, rows: list[Any]) -> tuple[int, int]:
    set_row(env, sim, rows[2][1], topic="simledger.domain.sim:Sim.NoSuchEvent")
    return rows[2][0], rows[2][1]


TAMPERINGS: dict[str, Callable[[dict[str, str], str, list[Any]], tuple[int, int]]] = {
    "swapped states": swap_states,
    "invalid JSON": invalid_json,
    "missing field": missing_field,
    "unknown topic": unknown_topic,
}


def tampered_store(env: dict[str, str], how: str) -> tuple[str, str, int, int]:
    """A store of two SIMs, one of them tampered with ``how``: (that SIM, the other,
    notification id, version of the event tampered with)."""
    ledger = SimLedger(env=env)
    try:
        sim, other = ready_sim(ledger, 0), ready_sim(ledger, 1)
        ledger.set_note(other, "untouched")
    finally:
        ledger.close()
    notification, version = TAMPERINGS[how](env, sim, rows_of(env, sim))
    return sim, other, notification, version


def named(report: VerifyReport, sim: str, version: int, notification: int) -> list[str]:
    return [
        str(p)
        for p in report.problems
        if p.kind in KINDS
        and (p.aggregate_id, p.version, p.notification_id) == (sim, version, notification)
    ]


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_tampering_that_breaks_decoding_or_folding_is_reported_naming_the_event(
    persistent_store_env: dict[str, str], how: str
) -> None:
    sim, _, notification, version = tampered_store(persistent_store_env, how)
    ledger = SimLedger(env=persistent_store_env)
    try:
        report = ledger.verify_store()
        assert not report.ok
        assert named(report, sim, version, notification), [str(p) for p in report.problems]
        assert any(
            f"{sim} v{version}: " in str(p) and str(p).endswith(f"(notification {notification})")
            for p in report.problems
        )
        # The rest of the store is still checked, and nothing else is blamed.
        assert report.events == 6 + 6 + 1 + 4  # two SIMs, a note, four packages
        assert {p.aggregate_id for p in report.problems} <= {sim, None}
        # The views alone: a typed error naming the event, not a raw exception (swapped
        # states: the first of the two the views cannot fold).
        with pytest.raises(TamperedEvent) as raised:
            ledger.verify_views()
        assert raised.value.aggregate_id == sim
        assert raised.value.version - version in ((0, 1) if how == "swapped states" else (0,))
        assert raised.value.notification_id == notification + raised.value.version - version
    finally:
        ledger.close()


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_cli_verify_reports_the_tampered_event_and_exits_one(
    persistent_store_env: dict[str, str], how: str
) -> None:
    sim, _, notification, version = tampered_store(persistent_store_env, how)
    done = subprocess.run(
        [sys.executable, "-m", "simledger.runners.cli", "verify"],
        capture_output=True,
        text=True,
        env=clean_env(persistent_store_env),
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert any(
        f"{sim} v{version}: " in line and line.endswith(f"(notification {notification})")
        for line in done.stdout.splitlines()
    ), done.stdout
    assert "no key" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("FAILED")
