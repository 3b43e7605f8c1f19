"""Bad PostgreSQL settings fail within seconds with the server's own reason (issue 14,
item 12): a typed ``StoreUnreachable`` (R-ES4) from the library; from the command line
one line and exit 1 (a failure, as the README says of an unreachable store), instead of
the pool's 30 s wait and "couldn't get a connection"."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from helpers import clean_env

from simledger import SimLedger
from simledger.domain.errors import StoreUnreachable

LIMIT_S = 5.0


def closed_port() -> str:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return str(free.getsockname()[1])


BAD = {
    "wrong database": ({"POSTGRES_DBNAME": "nope_no_such_db"}, 'database "nope_no_such_db"'),
    "wrong user": ({"POSTGRES_USER": "nobody_here"}, 'role "nobody_here" does not exist'),
    "port abc": ({"POSTGRES_PORT": "abc"}, 'invalid integer value "abc"'),
    "closed port": ({"POSTGRES_PORT": ""}, "Connection refused"),
}


def bad_env(postgres_env: dict[str, str], case: str) -> tuple[dict[str, str], str]:
    change, reason = BAD[case]
    if change.get("POSTGRES_PORT") == "":
        change = {"POSTGRES_PORT": closed_port()}
    return {**postgres_env, **change}, reason


@pytest.mark.parametrize("case", list(BAD))
def test_a_ledger_with_bad_settings_fails_fast_with_the_servers_reason(
    postgres_env: dict[str, str], case: str
) -> None:
    env, reason = bad_env(postgres_env, case)
    started = time.monotonic()
    with pytest.raises(StoreUnreachable) as raised:
        SimLedger(env=env)
    assert time.monotonic() - started < LIMIT_S
    assert raised.value.rule == "R-ES4"
    assert reason in str(raised.value)
    assert f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}" in str(raised.value)


@pytest.mark.parametrize("case", ["wrong database", "closed port"])
def test_the_command_line_says_why_in_one_line_and_exits_1(
    postgres_env: dict[str, str], case: str
) -> None:
    env, reason = bad_env(postgres_env, case)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "simledger.runners.cli", "list"],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=60,
    )
    assert time.monotonic() - started < LIMIT_S + 3  # the interpreter's start-up besides
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = (done.stdout + done.stderr).strip().splitlines()
    assert line.startswith("error: R-ES4: ") and reason in line


def test_good_settings_still_open(postgres_env: dict[str, str]) -> None:
    ledger = SimLedger(env=postgres_env)
    try:
        assert ledger.env["POSTGRES_CONNECT_TIMEOUT"] == "10"
    finally:
        ledger.close()
