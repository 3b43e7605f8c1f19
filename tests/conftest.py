"""Shared pytest fixtures: event-store environments for ``eventsourcing`` Applications.

Fixtures (all yield a fresh ``dict[str, str]`` for ``Application(env=...)``):

* ``store_env``            -- parametrised over ``memory``, ``sqlite``, ``postgres``.
* ``persistent_store_env`` -- parametrised over ``sqlite``, ``postgres`` (reopen tests).
* ``postgres_env``         -- PostgreSQL only.
* ``sqlite_env`` / ``memory_env`` -- single stores.

and a ``ledger``: a ``SimLedger`` on ``ledger_env`` (in memory unless a module overrides
``ledger_env``, e.g. with ``store_env`` for every store), driven by ``clock`` (a fresh
:class:`helpers.FakeClock`; a module overrides it with ``None`` for the real clock) and
``ledger_options`` (further ``SimLedger`` keywords), closed after the test.

Every env sets ``ORIGINATOR_ID_TYPE=text`` (SIM ids are ICCID strings).

PostgreSQL (session fixture ``postgres_info``):

1. Use the server at ``POSTGRES_HOST``/``POSTGRES_PORT``/``POSTGRES_USER``/
   ``POSTGRES_DBNAME`` (defaults ``127.0.0.1``/``5432``/``postgres``/``test``,
   trust auth; ``POSTGRES_PASSWORD`` defaults to ``postgres`` because eventsourcing
   insists on one being set). The database is created if the server answers but
   lacks it.
2. Otherwise start a throwaway cluster with pytest-postgresql's
   ``PostgreSQLExecutor`` (pg_ctl from ``SIMLEDGER_PG_BINDIR`` if set, else
   ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``, or ``pg_ctl`` on PATH).
3. Otherwise: with ``CI`` set the postgres tests FAIL; locally they are skipped.

Each test gets its own schema ``t_<uuid hex>`` (``POSTGRES_SCHEMA``), dropped
with CASCADE afterwards. eventsourcing creates its tables, composite types and
functions in that schema; it does not create the schema itself.

The variables above are read once, when this module is imported: an autouse
fixture then removes eventsourcing settings from ``os.environ`` for every test,
because ``Application`` merges ``os.environ`` under the ``env`` it is given.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import FakeClock
from psycopg import sql

from simledger import SimLedger

# Snapshot taken before any test runs (the autouse fixture below scrubs os.environ).
_INITIAL_ENV: dict[str, str] = dict(os.environ)

# eventsourcing settings that must not leak from the shell into tests. They are
# also matched with an application-name prefix (e.g. SIMLEDGER_PERSISTENCE_MODULE),
# since eventsourcing's Environment looks up "<APP NAME>_<KEY>" before "<KEY>".
_EVENTSOURCING_KEYS = frozenset(
    {
        "PERSISTENCE_MODULE",
        "INFRASTRUCTURE_FACTORY",
        "SQLITE_DBNAME",
        "SQLITE_LOCK_TIMEOUT",
        "ORIGINATOR_ID_TYPE",
        "CREATE_TABLE",
        "IS_SNAPSHOTTING_ENABLED",
        "SINGLE_ROW_TRACKING",
        "COMPRESSOR_TOPIC",
        "CIPHER_TOPIC",
        "CIPHER_KEY",
        "MAPPER_TOPIC",
        "TRANSCODER_TOPIC",
        "AGGREGATE_CACHE_MAXSIZE",
        "AGGREGATE_CACHE_FASTFORWARD",
        "AGGREGATE_CACHE_FASTFORWARD_SKIPPING",
        "DEEPCOPY_FROM_AGGREGATE_CACHE",
        "APPLICATION_RECORDER_TOPIC",
        "TRACKING_RECORDER_TOPIC",
        "PROCESS_RECORDER_TOPIC",
    }
)


def _is_eventsourcing_setting(key: str) -> bool:
    if key.startswith("POSTGRES_") or "_POSTGRES_" in key:
        return True
    return key in _EVENTSOURCING_KEYS or any(key.endswith("_" + k) for k in _EVENTSOURCING_KEYS)


CONNECTIONS_PER_WORKER = 70
"""PostgreSQL connections one test process may hold at once (the whole suite run by one
process peaked at about 62: writer processes, workers, HTTP services, parallel rebuilds)."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the Makefile's): a test process per core, no more than the PostgreSQL
    server's ``max_connections`` allows at :data:`CONNECTIONS_PER_WORKER` each (PostgreSQL's
    default of 100 gives one). Without a server each process starts its own cluster."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = _configured_pg()
    try:
        with info.connect(dbname="postgres") as conn:
            found = conn.execute("SHOW max_connections").fetchone()
        allowed = int(found[0]) // CONNECTIONS_PER_WORKER if found else 1
    except psycopg.Error:
        allowed = cores or 1
    return max(1, min(cores or 1, allowed))


def _in_ci() -> bool:
    return _INITIAL_ENV.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture(autouse=True)
def _no_eventsourcing_settings_from_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if _is_eventsourcing_setting(key):
            monkeypatch.delenv(key)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PgInfo:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    origin: str  # "configured server" or "throwaway cluster"

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.dbname,
            connect_timeout=5,
            autocommit=True,
            **kwargs,
        )

    def env(self) -> dict[str, str]:
        """eventsourcing settings for this server (without POSTGRES_SCHEMA)."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "ORIGINATOR_ID_TYPE": "text",
        }

    @contextlib.contextmanager
    def temporary_schema(self) -> Iterator[str]:
        """Create a uniquely named schema ``t_<uuid hex>``; drop it CASCADE on exit."""
        name = f"t_{uuid.uuid4().hex}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            # Bounded wait: a test that left a transaction open on the schema
            # shows up as a teardown error rather than a hung session.
            with self.connect(options="-c lock_timeout=10s") as conn:
                stmt = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                conn.execute(stmt)


class PostgresUnavailable(Exception):
    pass


def _configured_pg() -> PgInfo:
    env = _INITIAL_ENV
    return PgInfo(
        host=env.get("POSTGRES_HOST") or "127.0.0.1",
        port=int(env.get("POSTGRES_PORT") or "5432"),
        user=env.get("POSTGRES_USER") or "postgres",
        password=env.get("POSTGRES_PASSWORD") or "postgres",
        dbname=env.get("POSTGRES_DBNAME") or "test",
        origin="configured server",
    )


def _ensure_database(info: PgInfo) -> None:
    """Connect to ``info.dbname``; create it (via the ``postgres`` db) if missing."""
    try:
        with info.connect() as conn:
            conn.execute("SELECT 1")
        return
    except psycopg.OperationalError as first_error:
        try:
            with info.connect(dbname="postgres") as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(info.dbname)))
        except psycopg.Error:
            raise first_error from None
    with info.connect() as conn:
        conn.execute("SELECT 1")


def _find_pg_ctl() -> Path:
    override = _INITIAL_ENV.get("SIMLEDGER_PG_BINDIR")
    candidates: list[str] = []
    if override:
        candidates.append(override)  # explicit: no fallbacks
    else:
        pg_config = shutil.which("pg_config")
        if pg_config:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run(
                    [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
                )
                if out.returncode == 0 and out.stdout.strip():
                    candidates.append(out.stdout.strip())

        def _major(path: str) -> int:
            name = Path(path).parent.name
            return int(name) if name.isdigit() else 0

        candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(str(Path(on_path).resolve().parent))
    for directory in candidates:
        pg_ctl = Path(directory) / "pg_ctl"
        if pg_ctl.is_file() and os.access(pg_ctl, os.X_OK):
            return pg_ctl
    where = f"SIMLEDGER_PG_BINDIR={override}" if override else ", ".join(candidates) or "nowhere"
    raise PostgresUnavailable(f"no pg_ctl found (looked in: {where})")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_DROP_PRIVILEGES_WRAPPER = textwrap.dedent(
    """\
    import os, sys
    os.chdir("/")
    os.setgroups([])
    os.setgid({gid})
    os.setuid({uid})
    os.environ.update(HOME={home!r}, USER={user!r}, LOGNAME={user!r})
    os.execv({pg_ctl!r}, [{pg_ctl!r}, *sys.argv[1:]])
    """
)


def _pg_ctl_for_current_user(pg_ctl: Path, workdir: Path, wrapper_dir: Path) -> str:
    """Return the pg_ctl executable to hand to pytest-postgresql.

    initdb and postgres refuse to run as root. When we are root (e.g. in a
    container or CI sandbox) every pg_ctl invocation (initdb, start, status,
    stop) goes through a small wrapper that drops to the unprivileged
    ``postgres`` OS user (``nobody`` if that user does not exist) before
    exec'ing the real pg_ctl; ``workdir`` (data dir, socket, log) is chowned to
    that user, while the wrapper stays in the root-owned ``wrapper_dir``. This is
    equivalent to ``runuser -u postgres -- pg_ctl ...``.
    """
    if os.geteuid() != 0:
        return str(pg_ctl)
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        account = pwd.getpwnam("nobody")
    os.chown(workdir, account.pw_uid, account.pw_gid)
    wrapper_py = wrapper_dir / "pg_ctl_as_user.py"
    wrapper_py.write_text(
        _DROP_PRIVILEGES_WRAPPER.format(
            uid=account.pw_uid,
            gid=account.pw_gid,
            home=str(workdir),
            user=account.pw_name,
            pg_ctl=str(pg_ctl),
        )
    )
    wrapper = wrapper_dir / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I "{wrapper_py}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(wrapper)


_PG_IN_USE: list[PgInfo] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for info in _PG_IN_USE:
        terminalreporter.write_line(
            f"PostgreSQL used by tests: {info.origin} {info.user}@{info.host}:{info.port}"
            f"/{info.dbname}"
        )


@contextlib.contextmanager
def _throwaway_cluster(dbname: str, started: list[Any] | None = None) -> Iterator[PgInfo]:
    """A cluster of its own, on a free port; its executor is added to ``started``."""
    pg_ctl = _find_pg_ctl()
    try:
        from pytest_postgresql.executors import PostgreSQLExecutor
    except ImportError as exc:
        raise PostgresUnavailable(f"pytest-postgresql>=10 is not installed ({exc})") from None

    # Not under pytest's tmp dir: when running as root that dir is 0700 and the
    # unprivileged server user could not reach its data directory.
    workdir = Path(tempfile.mkdtemp(prefix="simledger-pg-", dir="/tmp"))
    wrapper_dir = Path(tempfile.mkdtemp(prefix="simledger-pgctl-"))
    executor: PostgreSQLExecutor | None = None
    try:
        executable = _pg_ctl_for_current_user(pg_ctl, workdir, wrapper_dir)
        port = _free_port()
        executor = PostgreSQLExecutor(
            executable=executable,
            host="127.0.0.1",
            port=port,
            datadir=str(workdir / "data"),
            unixsocketdir=str(workdir),
            logfile=str(workdir / "postgresql.log"),
            startparams="-w",
            dbname=dbname,
            user="postgres",
            password=None,  # initdb --auth=trust
            timeout=90,
            # Throwaway data: trade durability for speed.
            postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        )
        try:
            executor.start()
        except Exception as exc:
            log = workdir / "postgresql.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"could not start a throwaway cluster with {pg_ctl}: {exc!r}\n{tail}"
            ) from exc
        info = PgInfo(
            host="127.0.0.1",
            port=port,
            user="postgres",
            password="postgres",  # ignored by trust auth; eventsourcing needs one
            dbname=dbname,
            origin="throwaway cluster",
        )
        # A loaded machine can see the server answer "starting up" for a while after
        # pg_ctl returned: wait for it (bounded), rather than call it unusable.
        deadline = time.monotonic() + 60
        while True:
            try:
                _ensure_database(info)
                break
            except psycopg.Error as exc:
                if "starting up" not in str(exc) or time.monotonic() > deadline:
                    raise PostgresUnavailable(f"throwaway cluster is not usable: {exc}") from exc
                time.sleep(0.2)
        if started is not None:
            started.append(executor)
        yield info
    finally:
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(wrapper_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_info() -> Iterator[PgInfo]:
    """Connection info of a usable PostgreSQL server (see module docstring)."""
    configured = _configured_pg()
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        info: PgInfo | None = None
        try:
            _ensure_database(configured)
            info = configured
        except psycopg.Error as exc:
            problems.append(
                f"configured server {configured.user}@{configured.host}:{configured.port}"
                f"/{configured.dbname}: {str(exc).strip()}"
            )
        if info is None:
            try:
                info = stack.enter_context(_throwaway_cluster(configured.dbname))
            except PostgresUnavailable as exc:
                problems.append(f"throwaway cluster: {exc}")
        if info is not None:
            _PG_IN_USE.append(info)
        if info is None:
            message = "PostgreSQL is unavailable:\n  " + "\n  ".join(problems)
            if _in_ci():
                pytest.fail(f"{message}\n(CI is set: postgres tests must not be skipped)")
            pytest.skip(message)
        yield info


@pytest.fixture
def postgres_env(postgres_info: PgInfo) -> Iterator[dict[str, str]]:
    """PostgreSQL env with a per-test schema (``POSTGRES_SCHEMA``)."""
    with postgres_info.temporary_schema() as schema:
        yield {**postgres_info.env(), "POSTGRES_SCHEMA": schema}


@dataclass(frozen=True)
class OwnCluster:
    """A throwaway cluster a test may stop and start (fault tests; never the shared one)."""

    info: PgInfo
    executor: Any

    def env(self) -> dict[str, str]:
        """Settings for a new schema of this cluster (one per call: a store of its own)."""
        name = f"t_{uuid.uuid4().hex}"
        with self.info.connect() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return {**self.info.env(), "POSTGRES_SCHEMA": name}

    def stop(self) -> None:
        self.executor.stop()

    def start(self) -> None:
        self.executor.start()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[OwnCluster]:
    """A PostgreSQL cluster started for this module alone (skipped where none can start,
    except with CI set: then the tests that need it fail, as every PostgreSQL test does)."""
    started: list[Any] = []
    try:
        with _throwaway_cluster("faults", started) as info:
            yield OwnCluster(info, started[0])
    except PostgresUnavailable as error:
        if _in_ci():
            pytest.fail(f"no throwaway cluster: {error}\n(CI is set: these tests must run)")
        pytest.skip(f"no throwaway cluster: {error}")


# --------------------------------------------------------------------------- other stores


@pytest.fixture
def memory_env() -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.popo", "ORIGINATOR_ID_TYPE": "text"}


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "eventstore.db"),
        "ORIGINATOR_ID_TYPE": "text",
    }


_POSTGRES_PARAM = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)


def _env_for(request: pytest.FixtureRequest) -> dict[str, str]:
    env: dict[str, str] = request.getfixturevalue(f"{request.param}_env")
    return dict(env)


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        _POSTGRES_PARAM,
    ]
)
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Env for each event store: memory, sqlite and postgres."""
    return _env_for(request)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), _POSTGRES_PARAM])
def persistent_store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Env for each durable event store (a second Application sees the same data)."""
    return _env_for(request)


# --------------------------------------------------------------------------- the ledger


@pytest.fixture
def ledger_env(memory_env: dict[str, str]) -> dict[str, str]:
    """The store of ``ledger``: memory here; a module overrides it (``store_env``, a file)."""
    return memory_env


@pytest.fixture
def clock() -> FakeClock | None:
    """The clock of ``ledger``; ``None`` (a module's override) is the real clock."""
    return FakeClock()


@pytest.fixture
def ledger_options() -> dict[str, Any]:
    """More ``SimLedger`` keywords for ``ledger`` (a module's override)."""
    return {}


@pytest.fixture
def ledger(
    ledger_env: dict[str, str], clock: FakeClock | None, ledger_options: dict[str, Any]
) -> Iterator[SimLedger]:
    app = SimLedger(ledger_env, clock=clock, **ledger_options)
    yield app
    app.close()
