"""Personal data encrypted at rest (issue 5, item 5): with eventsourcing's cipher settings
(``CIPHER_TOPIC=eventsourcing.cipher:AESCipher``, ``CIPHER_KEY``) no stored event or snapshot
holds the end user's e-mail in clear, everything still reads back, and a ledger opened
without the key (or with another one) fails with one clear error."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from eventsourcing.cipher import AESCipher
from helpers import FakeClock, clean_env, iccids, ready_sim

from simledger import SimLedger, SimType
from simledger.application.audit import verify_store
from simledger.application.audit_log import audit_records
from simledger.domain.errors import InvalidInput, StoreUnreadable
from simledger.domain.sim import Sim

EMAIL = "grace.hopper@example.com"
CIPHER = "eventsourcing.cipher:AESCipher"


def with_key(env: dict[str, str], key: str) -> dict[str, str]:
    return {**env, "CIPHER_TOPIC": CIPHER, "CIPHER_KEY": key}


@pytest.fixture
def key() -> str:
    return AESCipher.create_key(32)


def raw_states(env: dict[str, str], ledger: SimLedger) -> Iterator[bytes]:
    """The ``state`` column of every stored event and snapshot, read with plain SQL."""
    snapshots = ledger.snapshots
    assert snapshots is not None
    tables = [
        ledger.recorder.events_table_name,  # type: ignore[attr-defined]
        snapshots.recorder.events_table_name,  # type: ignore[attr-defined]
    ]
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        with sqlite3.connect(env["SQLITE_DBNAME"]) as conn:
            for table in tables:
                for (state,) in conn.execute(f"SELECT state FROM {table}"):
                    yield bytes(state)
        return
    with psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD", ""),
    ) as conn:
        for table in tables:
            name = table if "." in table else f"{env['POSTGRES_SCHEMA']}.{table}"
            for (state,) in conn.execute(f"SELECT state FROM {name}").fetchall():
                yield bytes(state)


def test_events_are_encrypted_at_rest_and_read_back(
    persistent_store_env: dict[str, str], key: str
) -> None:
    env = with_key(persistent_store_env, key)
    ledger = SimLedger(env, clock=FakeClock())
    iccid = ready_sim(ledger, 0)
    other = ready_sim(ledger, 1, sim_type=SimType.PREPAID)
    ledger.set_end_user(iccid, EMAIL)
    ledger.set_note(iccid, "Grace's van")
    for n in range(100):  # past the snapshot interval: snapshots are encrypted too
        ledger.set_labels(other, [f"round-{n}"])
    ledger.set_end_user(other, "ada@example.org")

    states = list(raw_states(env, ledger))
    assert len(states) > 100
    for state in states:
        assert b"grace.hopper" not in state and b"example" not in state
        assert b"Grace" not in state and b"round-" not in state
        with pytest.raises(ValueError):  # ciphertext, not the JSON text
            json.loads(state)
    assert ledger.snapshots is not None
    assert ledger.snapshots.recorder.select_events(other)  # a snapshot was taken

    assert ledger.sim(iccid).end_user == EMAIL
    assert ledger.sim(other).labels == ["round-99"]
    [set_at] = [e for e in ledger.history(iccid) if e.event == "EndUserSet"]
    assert set_at.data["end_user"] == EMAIL
    assert [s.iccid for s in ledger.sims(search="grace.hopper").items] == [iccid]
    audit = [r for r in audit_records(ledger, iccid=iccid) if r["event"] == "EndUserSet"]
    assert [r["data"]["end_user"] for r in audit] == [EMAIL]
    ledger.close()

    # Another process with the key: batch loads, the views rebuilt from the encrypted log.
    again = SimLedger(env, clock=FakeClock())
    try:
        result = again.pause([iccid, other])
        assert sorted(result.accepted) == sorted([iccid, other])
        again.rebuild_views()
        assert [s.iccid for s in again.sims(search="ada@example").items] == [other]
        assert again.sim(other).end_user == "ada@example.org"
        assert again.sim_as_of(iccid, version=set_at.version - 1).end_user is None
        assert again.sim_as_of(iccid, version=set_at.version).end_user == EMAIL
        report = verify_store(again)  # the audit replays and checks the encrypted chains
        assert report.ok, [str(p) for p in report.problems]
    finally:
        again.close()


def test_a_store_opened_without_its_key_or_with_another_fails_clearly(
    persistent_store_env: dict[str, str], key: str
) -> None:
    env = with_key(persistent_store_env, key)
    ledger = SimLedger(env, clock=FakeClock())
    [iccid] = ledger.receive_sims(iccids(1), operator="3UK", sim_type=SimType.SUBSCRIPTION)
    ledger.set_end_user(iccid, EMAIL)
    stored = ledger.recorder.select_events(iccid)
    ledger.close()

    with pytest.raises(StoreUnreadable, match=r"is encrypted .* CIPHER_KEY") as no_key:
        SimLedger(persistent_store_env)
    assert no_key.value.rule == "R-ES3"
    assert iccid in str(no_key.value)
    with pytest.raises(StoreUnreadable, match="cannot be decrypted with this CIPHER_KEY"):
        SimLedger(with_key(persistent_store_env, AESCipher.create_key(32)))

    # Past the first event too: any stored event read with the wrong key says the same.
    plain = SimLedger()
    with pytest.raises(StoreUnreadable, match=rf"EndUserSet of {iccid} .*is encrypted"):
        plain.mapper.to_domain_event(stored[-1])
    keyed = SimLedger(with_key({}, AESCipher.create_key(16)))
    with pytest.raises(StoreUnreadable, match="cannot be decrypted"):
        keyed.mapper.to_domain_event(stored[-1])
    assert isinstance(SimLedger(env).repository.get(iccid), Sim)  # the right key still reads


def test_a_plain_store_opened_with_a_key_fails_clearly(
    persistent_store_env: dict[str, str], key: str
) -> None:
    ledger = SimLedger(persistent_store_env)
    ledger.receive_sims(iccids(1), operator="3UK", sim_type=SimType.SUBSCRIPTION)
    ledger.close()
    with pytest.raises(StoreUnreadable, match="is not encrypted, but CIPHER_KEY is set"):
        SimLedger(with_key(persistent_store_env, key))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"CIPHER_TOPIC": CIPHER}, "CIPHER_KEY"),
        ({"CIPHER_TOPIC": CIPHER, "CIPHER_KEY": "not base64!"}, "base64 AES key"),
        ({"CIPHER_KEY": "c2hvcnQ="}, "16, 24 or 32 bytes"),
    ],
)
def test_bad_cipher_settings_are_one_clear_error(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as error:
        SimLedger(settings)
    assert error.value.rule == "R-ES3"


def test_the_command_line_without_the_key_says_so_in_one_line(tmp_path: Path, key: str) -> None:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "secret.db"),
    }
    ledger = SimLedger(with_key(env, key))
    [iccid] = ledger.receive_sims(iccids(1), operator="3UK", sim_type=SimType.SUBSCRIPTION)
    ledger.set_end_user(iccid, EMAIL)
    ledger.close()

    def run(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simledger.runners.cli", *args],
            capture_output=True,
            text=True,
            env={k: v for k, v in clean_env(extra).items() if not k.startswith("CIPHER_")} | extra,
            timeout=60,
        )

    done = run(env, "show", iccid)
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: R-ES3: ") and "CIPHER_KEY" in line, line
    assert "Traceback" not in done.stderr

    done = run(with_key(env, key), "export-audit", "--iccid", iccid)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert EMAIL in [r["data"].get("end_user") for r in records]


def test_compression_with_the_cipher_reads_back_and_a_compressed_store_needs_it(
    sqlite_env: dict[str, str], key: str
) -> None:
    zlib = {"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}
    env = with_key(sqlite_env, key) | zlib
    ledger = SimLedger(env, clock=FakeClock())
    iccid = ready_sim(ledger, 0)
    ledger.set_end_user(iccid, EMAIL)
    assert all(b"grace.hopper" not in s for s in raw_states(env, ledger))
    ledger.close()
    again = SimLedger(env, clock=FakeClock())
    assert again.sim(iccid).end_user == EMAIL
    assert [s.iccid for s in again.sims(search="grace").items] == [iccid]
    again.close()
    with pytest.raises(StoreUnreadable, match="cannot be decrypted"):
        SimLedger(with_key(sqlite_env, AESCipher.create_key(32)) | zlib)


def test_a_compressed_store_opened_without_its_compressor_fails_clearly(
    sqlite_env: dict[str, str],
) -> None:
    zlib = {"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}
    SimLedger(sqlite_env | zlib).receive_sims(
        iccids(1), operator="3UK", sim_type=SimType.SUBSCRIPTION
    )
    with pytest.raises(StoreUnreadable, match=r"encrypted \(or compressed\)"):
        SimLedger(sqlite_env)
