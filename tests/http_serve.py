"""Real ``simledger serve`` processes for the HTTP tests: started on a free port of
127.0.0.1, waited for (``/healthz``), stopped with SIGINT (uvicorn's graceful shutdown)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import clean_env

from simledger.application.keys import SCOPES
from simledger.application.ledger import SimLedger
from simledger.domain.iccid import make_iccid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    clients: dict[str | None, httpx.Client] = field(default_factory=dict)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def shared(self, key: str | None = None) -> httpx.Client:
        """One client per key for the server's life (a new client costs an SSL context)."""
        if key not in self.clients:
            self.clients[key] = self.client(key)
        return self.clients[key]

    def stop(self) -> int:
        for client in self.clients.values():
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(
    env: Mapping[str, str],
    log: Path,
    extra: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[Served]:
    """A ``simledger serve`` on the store ``env`` (more options in ``args``) until the block
    ends."""
    port = free_port()
    command = ["-m", "simledger.runners.cli", "serve", "--port", str(port), *args]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-P", *command],
            env=clean_env({**env, **(extra or {})}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve ended at start: {served.logs()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer in 60 s: {served.logs()[-2000:]}")
            time.sleep(0.05)
        yield served
    finally:
        served.stop()


def make_key(
    env: Mapping[str, str],
    name: str,
    *,
    company: str | None = None,
    scopes: tuple[str, ...] = SCOPES,
) -> tuple[str, str]:
    """A key made on the store ``env`` (as `simledger keys create` does): (id, secret)."""
    ledger = SimLedger(env=dict(env))
    try:
        key, secret = ledger.keys.create(
            name=name, scopes=scopes, company=company, operator=company is None
        )
        return key.id, secret
    finally:
        ledger.close()


def http_iccids(n: int, start: int) -> list[str]:
    """ICCIDs of the HTTP tests (their own range: ``89 33 …``)."""
    return [make_iccid(f"8933{number:015d}") for number in range(start, start + n)]


def store_params() -> list[Any]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]


@contextlib.contextmanager
def store_for(request: pytest.FixtureRequest, tmp: Path) -> Iterator[dict[str, str]]:
    """The store of a module's server: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp / "s.db")}
        return
    info = request.getfixturevalue("postgres_info")
    with info.temporary_schema() as schema:
        yield {**info.env(), "POSTGRES_SCHEMA": schema}


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
