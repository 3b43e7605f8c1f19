"""One direct connection before the store's pool is built: bad PostgreSQL settings fail
at once with the server's own reason.

eventsourcing's connection pool retries a connection that fails until its
``POSTGRES_CONNECT_TIMEOUT`` has passed and then says only that it "couldn't get a
connection"; a database or role that does not exist, a port that is not a number or
nothing listening would cost that wait and hide why. :func:`check_reachable` tries once,
with a short ``connect_timeout``, and raises :class:`StoreUnreachable` (R-ES4) with
libpq's message. Refusals that pass with time (too many clients, a server starting up or
shutting down) are left to the pool, which waits for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import resolve_topic

from simledger.adapters.logs import get_logger
from simledger.domain.errors import StoreUnreachable

log = get_logger("simledger")

CHECK_TIMEOUT = 4
"""Seconds the one direct connection may take (libpq's ``connect_timeout``)."""

TRANSIENT = (
    "too many clients",
    "remaining connection slots",
    "starting up",
    "shutting down",
    "in recovery mode",
    "not yet accepting connections",
)
"""Refusals that a later attempt may not meet: the pool's own wait is the right answer."""


def _reason(error: Exception) -> str:
    """libpq's message without psycopg's prefixes (``connection failed: ... FATAL:``)."""
    text = " ".join(str(error).split())
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    head, fatal, tail = text.partition("FATAL: ")
    return tail.strip() if fatal else head.strip()


def check_reachable(env: Mapping[str, str]) -> None:
    """For a PostgreSQL store (``env``: eventsourcing's settings), connect once and close;
    raise :class:`StoreUnreachable` naming the server and its reason when that fails for a
    cause that waiting will not cure. Any other store: nothing to check."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return
    host = env.get("POSTGRES_HOST", "")
    port = env.get("POSTGRES_PORT") or "5432"
    user = env.get("POSTGRES_USER", "")
    dbname = env.get("POSTGRES_DBNAME", "")
    if not (host and user and dbname):
        return  # eventsourcing names the missing setting itself
    password = env.get("POSTGRES_PASSWORD", "")
    topic = env.get("POSTGRES_GET_PASSWORD_TOPIC")
    try:
        if topic:
            password = resolve_topic(topic)()
        psycopg.connect(
            host=host,
            port=port,
            user=user,
            dbname=dbname,
            password=password,
            connect_timeout=CHECK_TIMEOUT,
            application_name="simledger-check",
        ).close()
    except Exception as error:
        reason = _reason(error)
        if any(word in reason for word in TRANSIENT):
            log.info("store.connect_check.transient", reason=reason)
            return
        raise StoreUnreachable(
            f"cannot connect to PostgreSQL at {host}:{port} (database {dbname!r}, user "
            f"{user!r}): {reason}; check POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DBNAME, "
            "POSTGRES_USER and POSTGRES_PASSWORD"
        ) from None


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is the database going away or refusing for a
    while -- a restart, a failover, a pool that could not get a connection -- which the
    same work tried again after a pause may get past."""
    lost = (
        StoreUnreachable,
        OperationalError,
        InterfaceError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        ConnectionError,
        TimeoutError,
    )
    seen: BaseException | None = error
    for _ in range(8):  # the chain of causes, bounded
        if seen is None:
            return False
        if isinstance(seen, lost):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
