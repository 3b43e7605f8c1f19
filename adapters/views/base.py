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
from typing import Protocol, runtime_checkable

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.utils import get_topic

from simledger.domain.sim import Sim
from simledger.projections.batch_state import Changes, CountKey, Keys, Touched
from simledger.projections.listing import SimQuery
from simledger.projections.rows import GroupRow, OperationRow, SimRow

SIMS = "sims"
PENDING_ACTIVITY = "pending_activity"
SHARED_GROUPS = "shared_groups"
ALL_VIEWS: tuple[str, ...] = (SIMS, PENDING_ACTIVITY, SHARED_GROUPS)


SIM_TOPICS = get_topic(Sim) + ".%"
"""LIKE pattern of the topics of every SIM event class (``…sim:Sim.Received``)."""


@dataclass(frozen=True)
class IccidRange:
    """The SIMs whose ICCID is in ``[low, high)`` (None: open on that side): one range of a
    views check run range by range (every store can read such a part of the log)."""

    low: str | None
    high: str | None

    def holds(self, iccid: str) -> bool:
        return (self.low is None or iccid >= self.low) and (self.high is None or iccid < self.high)


Partition = tuple[int, int] | IccidRange
"""(p, n): part p (0 to n - 1) of the SIMs split n ways by a hash of the ICCID (stores that
can hash: PostgreSQL); or an :class:`IccidRange`. Either way with every event that is not a
SIM's."""
LogSpan = tuple[int, int, int | None, Partition | None]
"""Which notifications to read: (start, limit, stop, partition) of
:meth:`ViewStore.notifications`."""

PROJECTION_VERSION = 8
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


Opening = Callable[[], "tuple[BatchTx, Touched] | None"]
"""A batch inside the event store's transaction, asked for and not yet received
(:meth:`ViewStore.inline_send`): calling it waits for the tracking lock and the rows."""


class EarlyTx(BatchTx, Protocol):
    """A batch inside a pipelining event store's transaction, written before the save's
    INSERT has answered: its position is given as SQL (the log's last id once it ran)."""

    def write_at(self, changes: Changes, position_sql: str) -> None: ...


EarlyOpening = Callable[[], "tuple[EarlyTx, Touched] | None"]
"""An :data:`Opening` whose batch is an :class:`EarlyTx`."""


@runtime_checkable
class EarlyViews(Protocol):
    """A view store whose batch can be written before the save's INSERT has answered
    (PostgreSQL's: the save then takes two round trips; adapters/store/in_transaction.py)."""

    def early_send(self, connection: object, keys: Keys) -> EarlyOpening: ...


ApplyRange = Callable[[BatchTx, int, int], None]
"""Fold the events with ids in ``(after, upto]`` into the tables behind a transaction."""


class BuiltViews(Protocol):
    """Views folded outside any store's tables (a rebuild's), for :meth:`ViewStore.install`."""

    staged_sims: str | None
    """The table in which another process staged the SIM rows of the SIMs this fold left
    out (PostgreSQL's parallel rebuild); None when the fold holds every SIM."""

    def position(self) -> int: ...

    def tx(self) -> BatchTx:
        """A transaction over the built views, to bring them level with live ones."""
        ...

    @property
    def all_sims(self) -> Mapping[str, SimRow]: ...

    @property
    def all_groups(self) -> Mapping[str, GroupRow]: ...

    @property
    def all_operations(self) -> Mapping[str, OperationRow]: ...

    @property
    def all_counts(self) -> Mapping[CountKey, int]: ...


def level(
    live: int, built: int, views: Sequence[str], catch_up: Callable[[int, int], None]
) -> tuple[Sequence[str], int]:
    """Which views an install swaps in, and the position after it, once the built views
    (folded up to ``built``) and the live ones (at ``live``) are level: the built ones
    behind are first folded up to ``live`` (``catch_up(built, live)``); built ones ahead of
    every live view replace all of them, rather than the gap being folded into the live
    tables row by row (a catch-up from far behind)."""
    if live > built:
        catch_up(built, live)
    elif live < built:
        views = ALL_VIEWS
    return views, max(live, built)


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
        own = self._own_notifications(recorder, (start, limit, stop, partition))
        if own is not None:
            return own
        if partition is not None:
            raise NotImplementedError(f"a {self.kind} view store reads the whole log")
        return recorder.select_notifications(start=start, limit=limit, stop=stop)

    def _own_notifications(
        self, recorder: ApplicationRecorder, span: LogSpan
    ) -> Sequence[Notification] | None:
        """The notifications of ``span`` read by the store itself, where it can read the
        recorder's table (and split it by SIM); None: the recorder reads them."""
        return None

    def sim_bounds(self, recorder: ApplicationRecorder, every: int) -> list[str] | None:
        """Every ``every``-th SIM's ICCID, in order: the bounds of ranges of about ``every``
        SIMs (a views check range by range); None where the store cannot read the log by
        ICCID (the check then folds the whole log at once)."""
        return None

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

    def inline(self, connection: object, keys: Keys) -> tuple[BatchTx, Touched] | None:
        """A batch over the live views inside the event store's own transaction, on its
        ``connection`` (the tracking lock taken there), so the rows and the position commit
        with the events, and the rows of ``keys`` as they stand; None where the views live
        elsewhere (in memory)."""
        return None

    def inline_send(self, connection: object, keys: Keys) -> Opening | None:
        """:meth:`inline`, its statements sent now and their answers read later (a store
        that pipelines them); None: the store asks when :meth:`inline` is called."""
        return None

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
    def install(self, built: BuiltViews, views: Sequence[str], apply: ApplyRange) -> int:
        """Swap ``views`` for the ones in ``built`` (folded up to ``built.position()``), plus
        the SIM rows another process staged in ``built.staged_sims``.

        Under the tracking lock, whichever side is behind is first brought level with
        ``apply`` (see :func:`level`); returns the tracking position afterwards.
        """

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[ViewSnapshot]:
        """A consistent read of every view and its position."""

    def analyze(self) -> None:  # noqa: B027 - optional
        """Refresh the query planner's statistics (after many rows changed at once)."""

    def settle(self) -> None:  # noqa: B027 - optional
        """After a commit that wrote rows: refresh the planner's statistics when enough
        rows changed since they were last refreshed (PostgreSQL: auto_analyze.py)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
