"""Who caused an event: the actor a ledger records with every event a call causes (R-KY3).

An :class:`Actor` is an id and a name (an API key's, for the HTTP service; any caller's
through the Python API). :data:`CURRENT_ACTOR` is the actor of the running call: the
application sets it around each command (``SimLedger(actor=…)``, ``ledger.acting_as``), and
:meth:`simledger.domain.base.LedgerAggregate._seal` stamps it on each event before hashing
it, so the actor is covered by the event's chain hash. A ``ContextVar``: threads and asyncio
tasks of one process each see their own actor.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from simledger.domain.values import text

ACTOR_FIELD = "actor"
"""The stored field of an event that names its actor: ``{"id": …, "name": …}``; absent on
events recorded without one (and on every event recorded before actors existed)."""


@dataclass(frozen=True)
class Actor:
    """Who caused a call's events: ``id`` and ``name``, each non-empty text of at most
    :data:`~simledger.domain.values.NAME_MAX` characters, stripped (R-IN1)."""

    id: str
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", text(self.id, "an actor's id", rule="R-IN1"))
        object.__setattr__(self, "name", text(self.name, "an actor's name", rule="R-IN1"))

    def stored(self) -> dict[str, str]:
        """The actor as an event stores (and hashes) it."""
        return {"id": self.id, "name": self.name}

    @classmethod
    def from_stored(cls, value: Any) -> Actor | None:
        """The actor of an event's stored field (None: the event has none)."""
        if not isinstance(value, dict):
            return None
        # As stored, not checked again: it was checked when recorded, and the chain hash
        # (``simledger verify``) is what tells an altered one.
        actor = object.__new__(cls)
        object.__setattr__(actor, "id", str(value.get("id", "")))
        object.__setattr__(actor, "name", str(value.get("name", "")))
        return actor


CURRENT_ACTOR: ContextVar[Actor | None] = ContextVar("simledger_actor", default=None)
"""The actor whose call is running in this thread or task (None: nobody named)."""
