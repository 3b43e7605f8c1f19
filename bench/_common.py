"""PostgreSQL helpers shared by the benchmark scripts (``bench_write``, ``bench_bulk``,
``bench_views``, ``bench_service``), and the SIMs they build without the public commands.

The scripts run as ``python bench/bench_X.py``, so this directory is on ``sys.path`` and they
import this module as ``_common``.

Settings come from the environment: POSTGRES_HOST (default ``127.0.0.1``), POSTGRES_PORT
(``5432``), POSTGRES_DBNAME (``test``), POSTGRES_USER (``postgres``), POSTGRES_PASSWORD (if set).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from simledger.domain.base import LedgerAggregate
from simledger.domain.package import Package
from simledger.domain.sim import Sim
from simledger.domain.types import SimType

if TYPE_CHECKING:
    import psycopg


def pg_settings(default_password: str | None = None) -> dict[str, str]:
    """The server's settings as eventsourcing reads them. ``POSTGRES_PASSWORD`` only when the
    environment sets it (not empty), else ``default_password`` when given."""
    settings = {
        "POSTGRES_HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "POSTGRES_PORT": os.environ.get("POSTGRES_PORT", "5432"),
        "POSTGRES_DBNAME": os.environ.get("POSTGRES_DBNAME", "test"),
        "POSTGRES_USER": os.environ.get("POSTGRES_USER", "postgres"),
    }
    password = os.environ.get("POSTGRES_PASSWORD") or default_password
    if password:
        settings["POSTGRES_PASSWORD"] = password
    return settings


def pg_env(schema: str, default_password: str | None = None) -> dict[str, str]:
    """The environment of a ledger whose event store is ``schema``."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        **pg_settings(default_password),
        "POSTGRES_SCHEMA": schema,
    }


def pg_connect(schema: str | None = None) -> psycopg.Connection[Any]:
    """An autocommit connection; with ``schema``, that schema first on the search path."""
    import psycopg

    s = pg_settings()
    return psycopg.connect(
        host=s["POSTGRES_HOST"],
        port=int(s["POSTGRES_PORT"]),
        dbname=s["POSTGRES_DBNAME"],
        user=s["POSTGRES_USER"],
        password=s.get("POSTGRES_PASSWORD"),
        options=f"-c search_path={schema}" if schema else "",
        connect_timeout=5,
        autocommit=True,
    )


def create_schema(schema: str) -> None:
    from psycopg.sql import SQL, Identifier

    with pg_connect() as conn:
        conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(schema)))


def keep_or_drop(schema: str, keep: bool) -> None:
    """At a benchmark's end: say that ``schema`` is kept (``--keep``), or drop it."""
    if keep:
        print(f"schema {schema} kept")
    else:
        drop_schema(schema)


def drop_schema(schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    from psycopg.sql import SQL, Identifier

    with pg_connect() as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


def blank_sims(keys: Sequence[str]) -> list[Sim]:
    """SIMs received, checked, with a line and a company but no plan yet (``blank``), unsaved:
    the events ``receive_sims``, ``complete_integration_check``, ``assign_line`` and
    ``assign_to_company`` record, built with the same aggregate methods."""
    sims: list[Sim] = []
    for key in keys:
        sim = Sim.receive(
            key,
            operator="Orange",
            sim_type=SimType.SUBSCRIPTION,
            esim=False,
            activation_code=None,
            integrated=True,
            order_id=None,
        )
        sim.complete_integration_check(ok=True, reason=None)
        sim.assign_line(f"+3361{int(key[-10:-1]):09d}")
        sim.assign_to_company("Bench Logistics")
        sims.append(sim)
    return sims


def active_sims(
    package: Package, keys: Sequence[str], now: datetime, *, activate: bool = True
) -> list[LedgerAggregate]:
    """Active SIMs with their package copies, unsaved: the :func:`blank_sims` events, then
    those of ``assign_package`` and ``activate``. Without ``activate`` they stay
    ``activation_ready``."""
    aggregates: list[LedgerAggregate] = []
    for sim in blank_sims(keys):
        copy = package.copy_for(str(uuid.uuid4()), sim.id, starts_at=now)
        sim.assign_package(package.id, copy.id, package.name)
        if activate:
            sim.activate()
        aggregates.extend((sim, copy))
    return aggregates
