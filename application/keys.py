"""API keys: who may call the HTTP service, and as whom its events are recorded (R-KY1..2).

A key is a secret (``slk_`` and 43 random URL-safe characters) shown once when it is
created; the store keeps only its SHA-256, under a short public id derived from that hash.
Keys are rows of their own table in the ledger's store (adapters/store/keys_table.py), so
every process on one store sees the same keys; a revoked key keeps its row and its times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from simledger.domain.actor import Actor

if TYPE_CHECKING:
    from simledger.application.ledger import SimLedger

SCOPES = ("sims:read", "sims:write", "bulk", "usage:write", "audit:read", "admin")
"""What a key may do (HTTP.md, "Keys, tenants, scopes")."""


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
    """The keys of a ledger's store (``ledger.keys``)."""

    def __init__(self, ledger: SimLedger) -> None:
        self._ledger = ledger

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
        raise NotImplementedError

    def list(self) -> list[ApiKey]:
        """Every key ever created, revoked ones included, oldest first."""
        raise NotImplementedError

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (``UnknownKey``, R-KY2, for an id no key has); revoking a revoked
        key changes nothing. The next ``authenticate`` of its secret gives None."""
        raise NotImplementedError

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is; None for an unknown or revoked key, or any
        other string or value (never raises for bad input)."""
        raise NotImplementedError
