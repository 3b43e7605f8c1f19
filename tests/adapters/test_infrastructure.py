"""Tests of the test infrastructure itself: store fixtures, schema isolation, packaging.

Uses plain ``eventsourcing`` only, so it does not depend on simledger's domain code
(except the packaging test, which imports the built wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import (
    Aggregate,
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
    event,
)

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from conftest import PgInfo

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("domain", "projections", "adapters", "runners")


# --------------------------------------------------------------------------- tiny models


class Counter(Aggregate):
    """UUID-identified aggregate (eventsourcing's default)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.count += by


class _TextIdEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime


class _TextIdCreated(CanInitAggregate[str], _TextIdEvent):
    originator_topic: str


class _TextIdAggregate(BaseAggregate[str]):
    class Event(_TextIdEvent):
        pass

    class Created(Event, _TextIdCreated):
        pass


class Card(_TextIdAggregate):
    """Aggregate identified by an ICCID string (needs ORIGINATOR_ID_TYPE=text)."""

    @event("Registered")
    def __init__(self, iccid: str) -> None:
        self.state = "registered"

    @staticmethod
    def create_id(iccid: str) -> str:
        return iccid

    @event("Activated")
    def activate(self) -> None:
        self.state = "active"


class InfraUuidApp(Application[UUID]):
    pass


class InfraTextApp(Application[str]):
    pass


ICCID = "8944500102198304826"

EXPECTED_FACTORY = {
    "memory": "POPOFactory",
    "sqlite": "SQLiteFactory",
    "postgres": "PostgresFactory",
}


def _store_name(request: pytest.FixtureRequest, fixture: str) -> str:
    name: str = request.node.callspec.params[fixture]
    return name


# --------------------------------------------------------------------------- store fixtures


def test_store_env_selects_the_store(
    store_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    store = _store_name(request, "store_env")
    assert store_env["ORIGINATOR_ID_TYPE"] == "text"
    app = InfraTextApp(env=store_env)
    try:
        assert type(app.factory).__name__ == EXPECTED_FACTORY[store]
    finally:
        app.close()


def test_uuid_aggregate_roundtrip(store_env: dict[str, str]) -> None:
    env = {**store_env, "ORIGINATOR_ID_TYPE": "uuid"}
    app = InfraUuidApp(env=env)
    try:
        counter = Counter("sims")
        counter.increment(by=2)
        counter.increment(by=3)
        app.save(counter)
        copy: Counter = app.repository.get(counter.id)
        assert isinstance(copy, Counter)
        assert (copy.name, copy.count, copy.version) == ("sims", 5, 3)
    finally:
        app.close()


def test_text_id_aggregate_roundtrip(store_env: dict[str, str]) -> None:
    app = InfraTextApp(env=store_env)
    try:
        card = Card(ICCID)
        card.activate()
        app.save(card)
        copy: Card = app.repository.get(ICCID)
        assert isinstance(copy, Card)
        assert (copy.id, copy.state, copy.version) == (ICCID, "active", 2)
    finally:
        app.close()


def test_persistent_store_survives_reopen(persistent_store_env: dict[str, str]) -> None:
    first = InfraTextApp(env=persistent_store_env)
    try:
        card = Card(ICCID)
        card.activate()
        first.save(card)
    finally:
        first.close()

    second = InfraTextApp(env=persistent_store_env)
    try:
        copy: Card = second.repository.get(ICCID)
        assert isinstance(copy, Card)
        assert copy.state == "active"
        notifications = second.notification_log.select(start=1, limit=10)
        assert len(notifications) == 2
    finally:
        second.close()


def test_process_environment_is_scrubbed() -> None:
    leaked = [k for k in os.environ if k.startswith("POSTGRES_")]
    leaked += [k for k in ("PERSISTENCE_MODULE", "SQLITE_DBNAME") if k in os.environ]
    assert leaked == []


# --------------------------------------------------------------------------- postgres schemas


def _tables(info: PgInfo, schema: str) -> set[str]:
    with info.connect() as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    return {row[0] for row in rows}


def _schema_exists(info: PgInfo, schema: str) -> bool:
    with info.connect() as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None


@pytest.mark.postgres
def test_postgres_tables_are_created_in_the_test_schema(
    postgres_env: dict[str, str], postgres_info: PgInfo
) -> None:
    schema = postgres_env["POSTGRES_SCHEMA"]
    assert schema.startswith("t_")
    assert _tables(postgres_info, schema) == set()
    app = InfraTextApp(env=postgres_env)
    try:
        app.save(Card(ICCID))
    finally:
        app.close()
    assert "infratextapp_events" in _tables(postgres_info, schema)
    assert "infratextapp_events" not in _tables(postgres_info, "public")
    with postgres_info.connect() as conn:
        row = conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND column_name = 'originator_id'",
            (schema, "infratextapp_events"),
        ).fetchone()
    assert row == ("text",)


@pytest.mark.postgres
def test_postgres_schema_helper_isolates_and_drops(postgres_info: PgInfo) -> None:
    with postgres_info.temporary_schema() as first, postgres_info.temporary_schema() as second:
        assert first != second
        env = {**postgres_info.env(), "POSTGRES_SCHEMA": first}
        app = InfraTextApp(env=env)
        try:
            app.save(Card(ICCID))
        finally:
            app.close()
        assert "infratextapp_events" in _tables(postgres_info, first)
        assert _tables(postgres_info, second) == set()
    assert not _schema_exists(postgres_info, first)
    assert not _schema_exists(postgres_info, second)


_seen_schemas: list[str] = []


@pytest.mark.postgres
@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_schema(
    run: int, postgres_env: dict[str, str], postgres_info: PgInfo
) -> None:
    schema = postgres_env["POSTGRES_SCHEMA"]
    assert _schema_exists(postgres_info, schema)
    for earlier in _seen_schemas:
        assert earlier != schema
        assert not _schema_exists(postgres_info, earlier), "previous test's schema not dropped"
    _seen_schemas.append(schema)


# --------------------------------------------------------------------------- postgres fixture paths

_PROBE_TEST = textwrap.dedent(
    """
    import pytest

    @pytest.mark.postgres
    def test_probe(postgres_env):
        print("PG_PORT", postgres_env["POSTGRES_PORT"], "SCHEMA", postgres_env["POSTGRES_SCHEMA"])
    """
)


def _run_probe_session(
    tmp_path: Path, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a one-test pytest session with our conftest under a chosen environment."""
    project = tmp_path / "probe"
    project.mkdir(parents=True)
    for shared in ("conftest.py", "helpers.py"):  # conftest imports helpers
        shutil.copy(Path(__file__).parents[1] / shared, project / shared)
    (project / "test_probe.py").write_text(_PROBE_TEST)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-rA", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _unused_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.postgres
def test_throwaway_cluster_when_no_server_answers(tmp_path: Path) -> None:
    port = _unused_port()
    extra = {"POSTGRES_PORT": port}
    if os.environ.get("CI"):
        extra["CI"] = os.environ["CI"]
    result = _run_probe_session(tmp_path, extra)
    output = result.stdout + result.stderr
    if "1 skipped" in output:  # only possible outside CI: no pg_ctl on this machine
        pytest.skip(f"no throwaway cluster possible here:\n{output[-1500:]}")
    assert result.returncode == 0, output
    assert "1 passed" in output
    assert "PostgreSQL used by tests: throwaway cluster" in output
    assert "PG_PORT" in output and f"PG_PORT {port} " not in output


@pytest.mark.slow
def test_no_postgres_fails_in_ci_and_skips_locally(tmp_path: Path) -> None:
    unavailable = {"POSTGRES_PORT": _unused_port(), "SIMLEDGER_PG_BINDIR": "/nonexistent"}

    in_ci = _run_probe_session(tmp_path / "ci", {**unavailable, "CI": "true"})
    output = in_ci.stdout + in_ci.stderr
    assert in_ci.returncode != 0, output
    assert "PostgreSQL is unavailable" in output
    assert "skipped" not in output.splitlines()[-1]

    local = _run_probe_session(tmp_path / "local", unavailable)
    output = local.stdout + local.stderr
    assert local.returncode == 0, output
    assert "1 skipped" in output
    assert "PostgreSQL is unavailable" in output


# --------------------------------------------------------------------------- packaging

_IGNORED_FOR_BUILD = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.db",
)

_IMPORT_CHECK = textwrap.dedent(
    """
    import importlib.util, sys
    import simledger, simledger.domain, simledger.adapters, simledger.projections
    import simledger.runners
    for bare in ("domain", "adapters", "projections", "runners"):
        try:
            __import__(bare)
        except ImportError:
            pass
        else:
            sys.exit(f"bare top-level package {bare!r} is importable")
    print("SIMLEDGER_FILE", simledger.__file__)
    """
)


@pytest.mark.slow
def test_wheel_installs_one_namespace(tmp_path: Path) -> None:
    if not (REPO_ROOT / "__init__.py").exists():
        pytest.fail("repo root __init__.py (the simledger package) is missing")

    source = tmp_path / "src"  # build from a copy: keeps build/ and *.egg-info out of the repo
    shutil.copytree(REPO_ROOT, source, ignore=_IGNORED_FOR_BUILD)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("simledger-0.1.0-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    outside = [n for n in names if not n.startswith(("simledger/", "simledger-0.1.0.dist-info/"))]
    assert outside == []
    assert "simledger/__init__.py" in names
    for sub in SUBPACKAGES:
        assert f"simledger/{sub}/__init__.py" in names
    assert not [n for n in names if n.startswith(("simledger/tests/", "simledger/bench/"))]
    assert "simledger = simledger.runners.cli:main" in scripts

    # Fresh venv with only the wheel; the runtime deps resolve through a .pth line
    # to this interpreter's site-packages (a plain path entry: the .pth files there,
    # e.g. the editable-install finder, are NOT executed in the new venv).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip_into_venv = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*pip_into_venv, "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "zz_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env: dict[str, Any] = {
        k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"
    }
    result = subprocess.run(
        [str(python), "-I", "-c", _IMPORT_CHECK],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SIMLEDGER_FILE {site_packages / 'simledger' / '__init__.py'}" in result.stdout
