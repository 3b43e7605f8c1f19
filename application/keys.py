"""API keys: who may call the HTTP service, and as whom its events are recorded (R-KY1..2).

A key is a secret (``slk_`` and 43 random URL-safe characters) shown once when it is
created; the store keeps only its SHA-256, under a short public id derived from that hash.
Keys are rows of their own table in the ledger's store (adapters/store/keys_table.py), so
every process on one store sees the same keys; a revoked key keeps its row and its times.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import Application

from simledger.adapters.store.keys_table import KeyRow, KeysTable, keys_for
from simledger.domain import values
from simledger.domain.actor import Actor
from simledger.domain.errors import InvalidInput, UnknownKey, shown

SCOPES = ("sims:read", "sims:write", "bulk", "usage:write", "audit:read", "admin")
"""What a key may do (HTTP.md, "Keys, tenants, scopes")."""

PREFIX = "slk_"
"""How every secret starts: a key found in a log or a repository is known for what it is."""
ID_LENGTH = 12
"""Hex digits of a key's public id: the first ones of its secret's SHA-256."""
_SECRET_MAX = 200
"""Characters of the longest string :meth:`KeyRing.authenticate` hashes (a secret has 47)."""


@dataclass(frozen=True)
class ApiKey:
    """One key as stored (never its secret). ``company`` None: an operator key."""

    id: str
    name: str
    company: str | None
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def operator(self) -> bool:
        """An operator key (the platform's own staff): it sees every company."""
        return self.company is None

    def actor(self) -> Actor:
        """The actor recorded with the events this key's calls cause: its id and name."""
        return Actor(id=self.id, name=self.name)


class KeyRing:
    """The keys of a ledger's store (``ledger.keys``): created, listed, revoked, and
    checked on every HTTP request (:meth:`authenticate`).

    Nothing is cached: each :meth:`authenticate` is one lookup in the table's unique index
    on the hash, so a revocation by any process on the store counts from the next request.
    """

    def __init__(
        self,
        app: Application[str],
        clock: Callable[[], datetime],
        create_table: Callable[[Callable[[], KeysTable]], KeysTable] = lambda make: make(),
    ) -> None:
        self._app = app
        self._clock = clock
        self._create_table = create_table
        self._table: KeysTable | None = None

    @property
    def _rows(self) -> KeysTable:
        # Created on first use: a ledger that never touches keys never creates the table.
        if self._table is None:
            recorder = self._app.recorder
            self._table = self._create_table(lambda: keys_for(recorder))
        return self._table

    def create(
        self,
        *,
        name: str,
        scopes: Iterable[str],
        company: str | None = None,
        operator: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once: only its hash is kept). Exactly one of
        ``company`` and ``operator`` (R-KY1); every scope one of :data:`SCOPES`, at least
        one (R-KY1); ``name`` text (R-IN1)."""
        clean_name = values.text(name, "a key's name", rule="R-KY1")
        is_operator = values.flag(operator, "operator")
        owner = values.optional_text(company, "a company")
        if is_operator == (owner is not None):
            raise InvalidInput(
                "a key is either a company's (company=…) or an operator's (operator=True), "
                f"exactly one: company={shown(company)}, operator={is_operator}",
                rule="R-KY1",
            )
        granted = _scopes(scopes)
        created = self._clock().astimezone(UTC).isoformat()
        for _ in range(5):  # a new secret when its id (12 hex digits) is taken: rare
            secret = PREFIX + secrets.token_urlsafe(32)
            digest = _digest(secret)
            row = KeyRow(
                key_id(secret), digest, clean_name, owner, " ".join(granted), created, None
            )
            if self._rows.insert(row):
                return _key(row), secret
        raise AssertionError("five new keys in a row collided with stored ones")

    def list(self) -> builtins.list[ApiKey]:
        """Every key ever created, revoked ones included, oldest first."""
        return [_key(row) for row in self._rows.all()]

    def get(self, key_id: str) -> ApiKey:
        """The key with this id (``UnknownKey``, R-KY2, when there is none)."""
        row = self._rows.by_id(_key_id(key_id)) if isinstance(key_id, str) else None
        if row is None:
            raise UnknownKey(key_id)
        return _key(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (``UnknownKey``, R-KY2, for an id no key has); revoking a revoked
        key changes nothing. The next ``authenticate`` of its secret gives None."""
        if not isinstance(key_id, str):
            raise UnknownKey(key_id)
        at = self._clock().astimezone(UTC).isoformat()
        row = self._rows.revoke(_key_id(key_id), at)
        if row is None:
            raise UnknownKey(key_id)
        return _key(row)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is; None for an unknown or revoked key, or any
        other string or value (never raises for bad input)."""
        if (
            not isinstance(secret, str)
            or not secret.startswith(PREFIX)
            or len(secret) > _SECRET_MAX
        ):
            return None
        try:
            digest = _digest(secret)
        except UnicodeEncodeError:  # a lone surrogate: no key's secret
            return None
        row = self._rows.by_hash(digest)
        if row is None or row.revoked_at is not None:
            return None
        return _key(row)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def key_id(secret: str) -> str:
    """The public id of the key whose secret is ``secret`` (derived from its hash, so a
    secret shown somewhere can be matched to ``keys list`` without the table)."""
    return "key_" + _digest(secret)[:ID_LENGTH]


def _key_id(given: str) -> str:
    """An id as typed (surrounding blanks dropped)."""
    return given.strip()


def _scopes(scopes: Any) -> builtins.list[str]:
    """The scopes, each once, in the order of :data:`SCOPES` (R-KY1 for an unknown one)."""
    if isinstance(scopes, str):
        scopes = [scopes]
    items = values.collection(scopes, "scopes", limit=len(SCOPES) * 4)
    unknown = [item for item in items if item not in SCOPES]
    if unknown:
        raise InvalidInput(
            f"unknown scope {shown(unknown[0])}: a scope is one of {', '.join(SCOPES)}",
            rule="R-KY1",
        )
    if not items:
        raise InvalidInput(f"a key needs at least one scope of {', '.join(SCOPES)}", rule="R-KY1")
    return [scope for scope in SCOPES if scope in items]


def _key(row: KeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        company=row.company,
        scopes=frozenset(row.scopes.split()),
        created_at=datetime.fromisoformat(row.created_at),
        revoked_at=None if row.revoked_at is None else datetime.fromisoformat(row.revoked_at),
    )


class KeyCache:
    """:meth:`KeyRing.authenticate` remembered for at most ``max_age`` seconds per secret:
    the HTTP service's check of every request, without a query per request.

    A revocation (by any process on the store) therefore counts within ``max_age`` seconds
    (the next request after that asks the store again). Only live keys are kept (an
    unknown secret asks the store each time, so a key just created works at once), at most
    ``size`` of them (the oldest go first). ``max_age`` 0: no cache, one query per call.
    Safe across threads."""

    def __init__(
        self,
        authenticate: Callable[[str], ApiKey | None],
        max_age: float = 1.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authenticate = authenticate
        self.max_age = max_age
        self._size = max(size, 1)
        self._clock = clock
        self._keys: dict[str, tuple[ApiKey, float]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str) -> ApiKey | None:
        """The key remembered for ``secret`` and still fresh; None: ask :meth:`authenticate`."""
        found = self._keys.get(secret)
        if found is None or self._clock() >= found[1]:
            return None
        return found[0]

    def authenticate(self, secret: str) -> ApiKey | None:
        """As :meth:`KeyRing.authenticate`, from the cache while fresh."""
        key = self.cached(secret)
        if key is not None:
            return key
        key = self._authenticate(secret)
        if key is not None and self.max_age > 0:
            with self._lock:
                if len(self._keys) >= self._size:
                    del self._keys[next(iter(self._keys))]
                self._keys.pop(secret, None)  # re-inserted: the newest, last to go
                self._keys[secret] = (key, self._clock() + self.max_age)
        return key
