"""Where the read models live: the contract every view store keeps.

A store holds the three views (``sims``, ``pending_activity``, ``shared_groups``) and ONE
tracking position: the id of the last event notification folded into them. A batch runs
inside :meth:`ViewStore.exclusive`, one transaction of the store's own that first locks the
tracking position; the batch's rows and its new position commit together, so a crash at
any point neither loses nor doubles an event, and two projectors (an embedded catch-up
and a worker) never fold the same event twice: each only folds events after the position
it read under the lock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from eventsourcing.persistence import ApplicationRecorder, Notification

from simledger.projections.batch import Changes, Keys, Touched
from simledger.projections.listing import SimQuery
from simledger.projections.rows import GroupRow, OperationRow, SimRow

if TYPE_CHECKING:
    from simledger.adapters.views.memory import MemoryViewStore

SIMS = "sims"
PENDING_ACTIVITY = "pending_activity"
SHARED_GROUPS = "shared_groups"
ALL_VIEWS: tuple[str, ...] = (SIMS, PENDING_ACTIVITY, SHARED_GROUPS)

Partition = tuple[int, int]
"""(p, n): part p (0 to n - 1) of the SIMs split n ways by a hash of the ICCID."""

PROJECTION_VERSION = 4
"""Bump when a projection changes what it stores: stores then drop and refold the views."""

TRACKING_NAME = "simledger.views"


def check_views(views: Sequence[str] | str | None) -> tuple[str, ...]:
    if views is None:
        return ALL_VIEWS
    chosen = (views,) if isinstance(views, str) else tuple(views)
    unknown = [v for v in chosen if v not in ALL_VIEWS]
    if unknown or not chosen:
        from simledger.domain.errors import InvalidInput

        raise InvalidInput(
            f"unknown view {unknown or chosen!r}; one of {', '.join(ALL_VIEWS)}", rule="R-ES3"
        )
    return tuple(dict.fromkeys(chosen))


class BatchTx(Protocol):
    """One open batch transaction: rows of one table set, and (for live tables) tracking."""

    @property
    def position(self) -> int: ...

    def load(self, keys: Keys) -> Touched: ...

    def write(self, changes: Changes, position: int) -> None: ...


ApplyRange = Callable[[BatchTx, int, int], None]
"""Fold the events with ids in ``(after, upto]`` into the tables behind a transaction."""


@dataclass
class ViewSnapshot:
    """The views as of one tracking position, for :meth:`ViewStore.snapshot` (verify)."""

    position: int
    sims: Callable[[], Iterator[SimRow]]
    groups: Callable[[], Iterator[GroupRow]]
    operations: Callable[[], Iterator[OperationRow]]
    counts: Callable[[], Mapping[tuple[str, str, str, str], int]]
    extra_checks: Callable[[], list[tuple[str, str, object, object]]] = lambda: []
    """Store-specific consistency checks: (view, key, live value, expected value)."""


class ViewStore(ABC):
    kind: str = ""
    concurrent_reads: bool = False
    """True when the runner may read (and decode) the next batch in another thread while
    this store writes the current one."""

    def notifications(
        self,
        recorder: ApplicationRecorder,
        start: int,
        limit: int,
        stop: int | None = None,
        partition: Partition | None = None,
    ) -> Sequence[Notification]:
        """Notifications from id ``start`` on (at most ``limit``, none after ``stop``); with
        ``partition`` (p, n), only the SIM events of the SIMs of part p of n, and every other
        event (stores that can split the log: PostgreSQL)."""
        if partition is not None:
            raise NotImplementedError(f"a {self.kind} view store reads the whole log")
        return recorder.select_notifications(start=start, limit=limit, stop=stop)

    def head_and_position(self, recorder: ApplicationRecorder) -> tuple[int, int]:
        """The store's last notification id and the views' position (a read's freshness
        check): two questions here, one round trip where a store can ask both at once."""
        return recorder.max_notification_id() or 0, self.position()

    # ---- projecting ---------------------------------------------------------------------
    @abstractmethod
    def position(self) -> int:
        """The tracking position, read without locking (a hint: it only grows)."""

    @abstractmethod
    def exclusive(self) -> AbstractContextManager[BatchTx]:
        """One transaction over the live views holding the tracking lock."""

    # ---- queries ------------------------------------------------------------------------
    @abstractmethod
    def sims_page(self, query: SimQuery) -> tuple[list[SimRow], int]:
        """Up to ``query.limit + 1`` rows after the cursor, in order, and the filtered total."""

    @abstractmethod
    def operations(self) -> list[OperationRow]:
        """Every bulk operation, newest first."""

    @abstractmethod
    def groups(self, *, company: str | None, locked: bool | None) -> list[GroupRow]:
        """Shared groups by name; ``company``: with a member of that company."""

    # ---- rebuild and verify -------------------------------------------------------------
    @abstractmethod
    def install(
        self,
        built: MemoryViewStore,
        views: Sequence[str],
        apply: ApplyRange,
        staged: str | None = None,
    ) -> int:
        """Swap ``views`` for the ones in ``built`` (folded up to ``built.position``), plus the
        SIM rows another process staged in table ``staged`` (PostgreSQL's parallel rebuild).

        Under the tracking lock, whichever side is behind is first brought level with
        ``apply``; returns the tracking position afterwards.
        """

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[ViewSnapshot]:
        """A consistent read of every view and its position."""

    def analyze(self) -> None:  # noqa: B027 - optional
        """Refresh the query planner's statistics (after many rows changed at once)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
