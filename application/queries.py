"""The read-model queries of SimLedger (``sims``, ``pending_activity``, ``shared_groups``).

The views live in a store that follows the ledger's event store (in memory, the same
SQLite file, the same PostgreSQL schema); see :mod:`simledger.application.projection_runner`.

Read your writes (docs/api.md): by default (``VIEWS_MODE=embedded``) the ledger folds new events
into the views after every save, in batches, before the command returns; a failure there
is logged and does not fail the command (the events are recorded; the next query or save
folds them). Queries first catch up with anything recorded since, by this process or any
other. With ``VIEWS_MODE=external`` a worker process (``python -m
simledger.runners.worker``) keeps the views: saves do not fold, and a query waits (up to
``VIEWS_WAIT_SECONDS``, default 5) for the worker to pass this ledger's last write before
folding the rest itself. ``VIEWS_BULK_FROM`` (default 100,000; 0 = never): a catch-up at
least that many events behind, with most of the log unfolded, rebuilds the views instead.
``VIEWS_VERIFY_RANGE`` (default 100,000): the SIMs a views check rebuilds in memory at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper, Recording

from simledger.adapters.logs import get_logger
from simledger.adapters.store.in_transaction import InTransaction
from simledger.adapters.views.base import EarlyViews
from simledger.application.inline_fold import InlineFold
from simledger.application.projection_runner import BULK_FROM, ViewRunner, store_for
from simledger.domain import values
from simledger.domain.errors import InvalidInput, InvalidValue, TamperedEvent, shown
from simledger.projections.listing import encode_cursor, make_query
from simledger.projections.models import (
    Page,
    PendingActivity,
    RowDiff,
    SharedGroupSummary,
    SimListItem,
)

log = get_logger("simledger.views")

EMBEDDED = "embedded"
EXTERNAL = "external"
_CREATE_LOCK = threading.Lock()


class ViewQueries:
    """The queries answered from the projections, and the runner that keeps them, of one
    ledger (``env``: its settings; ``recorder``, ``mapper``: its event store's)."""

    def __init__(
        self,
        env: Mapping[str, Any],
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        clock: Callable[[], datetime],
    ) -> None:
        self.env = env
        self.recorder = recorder
        self.mapper = mapper
        self.clock = clock
        self._runner: ViewRunner | None = None
        self._last_saved_id = 0
        self._early: bool | None = None
        """Whether the views' store writes a save's batch before its INSERT answered."""
        self._inline = threading.local()
        """``upto``: the last id this thread's latest save folded inline."""

    def _setting(self, key: str) -> str | None:
        value = self.env.get(key)
        return str(value) if value is not None else None

    # ---- the views ------------------------------------------------------------------------
    @property
    def views(self) -> ViewRunner:
        """The runner that keeps this ledger's read models (created on first use)."""
        runner = self._runner
        if runner is None:
            with _CREATE_LOCK:
                runner = self._runner
                if runner is None:
                    bulk_from = self._setting("VIEWS_BULK_FROM")
                    runner = ViewRunner(
                        store_for(self.recorder),
                        self.recorder,
                        self.mapper,
                        bulk_from=int(bulk_from) if bulk_from else BULK_FROM,
                    )
                    runner.child_env = dict(self.env)
                    verify_range = self._setting("VIEWS_VERIFY_RANGE")
                    if verify_range:
                        runner.verify_range = max(1, int(verify_range))
                    self._runner = runner
        return runner

    @property
    def views_mode(self) -> str:
        mode = (self._setting("VIEWS_MODE") or EMBEDDED).strip().lower()
        if mode not in (EMBEDDED, EXTERNAL):
            raise InvalidInput(
                f"VIEWS_MODE is {EMBEDDED} or {EXTERNAL}, not {mode!r}", rule="R-ES3"
            )
        return mode

    def inline_fold(self, events: Sequence[Any]) -> InTransaction | None:
        """For a save of ``events`` by this ledger, embedded: the hook that folds them into
        the views inside the save's own transaction (adapters/store/in_transaction.py);
        None with external views (a worker folds them)."""
        if self.views_mode != EMBEDDED:
            return None
        runner = self.views
        if self._early is None:
            self._early = isinstance(runner.store, EarlyViews)
        return InlineFold(runner, events, self._inline, self._early)

    def saved(self, recordings: list[Recording[Any]]) -> None:
        """After a save: note its position, and fold it into the views when they are kept
        in this process and the save did not fold them inline."""
        if not recordings:
            return
        last = max(r.notification.id for r in recordings)
        self._last_saved_id = max(self._last_saved_id, last)
        if self.views_mode != EMBEDDED:
            return
        if getattr(self._inline, "upto", 0) >= last:
            self.views.store.settle()  # the rows are committed: statistics may be due
            return
        try:
            self.views.catch_up(until=last)
        except Exception:
            log.exception("views.catch_up.failed", position=last)

    def _fresh_views(self) -> ViewRunner:
        runner = self.views
        if self.views_mode == EXTERNAL:
            target = self._last_saved_id
            wait = float(self._setting("VIEWS_WAIT_SECONDS") or 5)
            deadline = time.monotonic() + wait
            while runner.store.position() < target and time.monotonic() < deadline:
                time.sleep(0.01)
            if runner.store.position() < target:
                runner.catch_up(until=target)
        else:
            runner.catch_up()
        return runner

    def catch_up_views(self) -> int:
        """Fold every event recorded so far into the views; returns how many were new."""
        return self.views.catch_up()

    # ---- queries --------------------------------------------------------------------------
    def sims(
        self,
        *,
        status: Any = None,
        sim_type: Any = None,
        operator: str | None = None,
        company: str | None = None,
        label: str | None = None,
        group_id: Any = None,
        search: str | None = None,
        sort: str = "iccid",
        descending: bool = False,
        limit: values.Number = 100,
        cursor: str | None = None,
        regular_group_id: Any = None,
    ) -> Page:
        """The SIM list view (R-SIM2): filters combine; every column sorts both ways; pages
        follow ``next_cursor``; ``total`` counts the whole filtered set. ``status`` and
        ``sim_type`` also take several values; ``regular_group_id`` keeps the SIMs in that
        regular group (R-RG2)."""
        now = self.clock()
        query = make_query(
            status=status,
            sim_type=sim_type,
            operator=operator,
            company=company,
            label=label,
            group_id=group_id,
            search=search,
            regular_group_id=regular_group_id,
            sort=sort,
            descending=descending,
            limit=limit,
            cursor=cursor,
            now=now,
        )
        rows, total = self._fresh_views().store.sims_page(query)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        month = now.strftime("%Y-%m")
        return Page._trusted(
            {
                "items": [SimListItem.of(row, now, month) for row in rows],
                "next_cursor": encode_cursor(rows[-1], query) if more and rows else None,
                "total": total,
            }
        )

    def pending_activity(self) -> list[PendingActivity]:
        """Every bulk pause or resume, newest first, with its carriers' answers (R-BK3)."""
        rows = self._fresh_views().store.operations()
        now = self.clock()
        return [PendingActivity.of(row, now) for row in rows]

    def shared_groups(
        self, *, company: str | None = None, locked: bool | None = None
    ) -> list[SharedGroupSummary]:
        """Every shared group by name; ``company``: groups with a member of that company."""
        if company is not None:
            company = values.text(company, "company", rule="R-SG1")
        if locked is not None and not isinstance(locked, bool):
            raise InvalidInput(f"locked is True, False or None: {shown(locked)}", rule="R-SG3")
        rows = self._fresh_views().store.groups(company=company, locked=locked)
        return [SharedGroupSummary.of(row) for row in rows]

    # ---- rebuild and verify (R-ES3) ---------------------------------------------------------
    def rebuild_view(self, view: str = "sims") -> int:
        """Replay every event into a fresh ``view`` and swap it in; returns the position."""
        return self.views.rebuild(values.view_names([view]))

    def rebuild_views(self, views: Sequence[str] | None = None) -> int:
        return self.views.rebuild(values.view_names(views))

    def verify_views(
        self,
        views: Sequence[str] | None = None,
        *,
        bad_events: list[TamperedEvent] | None = None,
    ) -> dict[str, list[RowDiff]]:
        """Rebuild each view into scratch space and list every row that differs from the
        live view (R-ES3: none expected). A stored event that does not decode or fold
        raises :class:`TamperedEvent` (R-ES1), or with ``bad_events`` is listed there."""
        if bad_events is not None and not isinstance(bad_events, list):
            raise InvalidValue(
                f"bad_events is a list to fill, not {shown(bad_events)}", rule="R-IN4"
            )
        return self.views.verify(values.view_names(views), bad_events=bad_events)

    def close(self) -> None:
        """Close the views' store (the runner is made again on next use)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.store.close()
