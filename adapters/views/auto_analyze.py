"""The planner's statistics of the SIM list kept fresh by the store itself.

Without statistics PostgreSQL guesses that a filter keeps one row in 200: a page of
``status=active&operator=Orange`` sorted by ICCID over 20,000 SIMs was planned as a bitmap
AND of two indexes and a sort of every match (55 ms) instead of a walk of the primary key
that stops after 101 rows (0.24 ms). A store filled by saves (inline folds, a worker's
catch-up) is never analyzed by simledger's rebuild, and the server's autovacuum may be off
or a minute away; SQLite has no autovacuum at all (sorted by company, the same page took
28 ms before its ``ANALYZE`` and 1.5 ms after). So the store counts the SIM rows it writes
and, once they pass autovacuum's own rule (50 rows + 10 % of the table), runs ``ANALYZE``
after the commit: on PostgreSQL on a thread and a connection of its own (no command waits
for it), on SQLite at once (sampled, ``analysis_limit``: milliseconds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from simledger.adapters.logs import get_logger

log = get_logger("simledger.views")

BASE_ROWS = 50
SCALE = 0.1
"""autovacuum_analyze_threshold and autovacuum_analyze_scale_factor's defaults."""


class AutoAnalyze:
    """Rows written since the last ``ANALYZE`` (``wrote``, inside transactions) and the
    ``ANALYZE`` run once they are due (``settle``, after a commit)."""

    def __init__(self, analyze: Callable[[], float], rows: float, *, apart: bool = True) -> None:
        self._analyze = analyze
        """Runs ``ANALYZE``; returns the table's rows after it."""
        self._apart = apart
        """On a thread of its own (else in ``settle``'s caller)."""
        self._rows = max(rows, 0.0)
        self._written = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def due(self) -> bool:
        return self._written >= BASE_ROWS + SCALE * self._rows

    def wrote(self, rows: int) -> None:
        with self._lock:
            self._written += rows

    def settle(self) -> None:
        """Run ``ANALYZE`` when it is due and none runs."""
        with self._lock:
            if not self.due() or (self._thread is not None and self._thread.is_alive()):
                return
            self._written = 0
            if self._apart:
                self._thread = threading.Thread(target=self._run, name="views-analyze", daemon=True)
                self._thread.start()
                return
        self._run()

    def analyzed(self, rows: float) -> None:
        """``ANALYZE`` ran elsewhere (a rebuild's install): start counting again."""
        with self._lock:
            self._rows, self._written = max(rows, 0.0), 0

    def _run(self) -> None:
        try:
            rows = self._analyze()
        except Exception as error:  # the store closed, the schema was dropped: try later
            log.warning("views.analyze_failed", error=str(error))
            return
        with self._lock:
            self._rows = max(rows, 0.0)
        log.debug("views.analyzed", rows=rows)

    def wait(self, timeout: float = 10.0) -> None:
        """Let a running ``ANALYZE`` end (``close``, tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
