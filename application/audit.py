"""The replayable audit (``simledger verify``): replay the whole store and prove it.

:meth:`StoreAudit.verify_store` reads the notification log page by page (one query per
page), decodes each stored event once, and for every aggregate:

* **tamper evidence** -- recomputes the hash chain (:mod:`simledger.domain.chain`) in version
  order and names the FIRST altered, missing or out-of-sequence event;
* **rebuild** -- folds the events into the aggregate exactly as a load would (upcasters
  included); any error is a problem;
* **pools** -- for each shared group: every draw's ICCID was a member when it drew, no draw
  follows the depletion, the draws never exceed ``data_mb``, ``data_left_mb`` equals
  ``data_mb`` minus the draws while not depleted, and a pool drained to zero is depleted
  (cause "data" exactly when drained). For each SIM's own package copy, the same within each
  period (``Assigned``/``Renewed`` start one; top-ups add to it), and each draw is the copy's
  own SIM's.
* **snapshots** (the anchor) -- the latest snapshot of an aggregate must lie within its
  events and hold the chain hash stored at its version; the aggregate loaded through it
  must equal the full replay. This finds an edit or truncation at or before the snapshot
  even if every later hash was recomputed.

Then every view is compared with its rebuild (``verify_views``).

Known limit (see :mod:`simledger.domain.chain`): an edit of the LAST events of an aggregate
after its latest snapshot (for most aggregates: after its creation), with their hashes
recomputed, or their deletion, cannot be detected from inside the store. The report's
``digest`` (a hash of every aggregate's id, version and head hash) is the external anchor:
keep it elsewhere, and a later run over the same events must give the same digest. The
log's seal (R-ES5, :mod:`simledger.application.log_seal`) covers the log's order and its
newest events up to the latest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eventsourcing.application import Application

from simledger.adapters.logs import get_logger
from simledger.adapters.store.batch_load import gc_paused, latest_snapshots
from simledger.adapters.store.event_store import log_pages
from simledger.adapters.store.mapper import event_from_state
from simledger.adapters.store.persistence import persistence_module
from simledger.application.audit_pools import (
    _check_draw,
    _check_pool_after,
    _check_pool_end,
    _touches_pool,
)
from simledger.application.audit_stream import replay_in_id_order
from simledger.application.log_seal import parse_witness, seal_check, witness_problem
from simledger.domain import values
from simledger.domain.chain import ChainCheck, ChainProblem, content
from simledger.domain.errors import SimledgerError, TamperedEvent
from simledger.domain.log_seal import SealCheck
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.projections.models import RowDiff

log = get_logger("simledger")

PAGE = 5000
"""Notifications read per query."""


@dataclass(frozen=True)
class Problem:
    """One thing found wrong. ``kind``: altered, missing, out-of-sequence, unsealed (chain);
    undecodable (a stored state that does not decode to an event: JSON, fields, topic);
    rebuild (an event that does not apply to its aggregate); pool; snapshot; view (a row
    differing from its rebuild); views (an event the views' rebuild cannot fold).
    ``notification_id`` is the event's position in the log, when one event is meant."""

    kind: str
    aggregate_id: str | None
    version: int | None
    detail: str
    notification_id: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.aggregate_id is not None:
            where = f"{self.aggregate_id}"
            if self.version is not None:
                where += f" v{self.version}"
            where += ": "
        at = f" (notification {self.notification_id})" if self.notification_id is not None else ""
        return f"{self.kind}: {where}{self.detail}{at}"


@dataclass
class VerifyReport:
    events: int = 0
    aggregates: dict[str, int] = field(default_factory=dict)
    """Aggregates replayed, by class name."""
    chains_checked: int = 0
    unsealed_events: int = 0
    """Events recorded before chains existed (accepted as a prefix of a history)."""
    pools_checked: int = 0
    snapshots_checked: int = 0
    sealed_up_to: int = 0
    """The latest checkpoint of the log's seal (R-ES5; 0: never sealed)."""
    views_checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    view_diffs: dict[str, list[RowDiff]] = field(default_factory=dict)
    digest: str = ""
    seconds: float = 0.0
    replay_seconds: float = 0.0
    """The replay alone (it runs alongside the views' verification on SQL stores)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.aggregates.items()))
        return (
            f"{self.events} events, {sum(self.aggregates.values())} aggregates ({kinds}); "
            f"{self.chains_checked} hash chains, {self.pools_checked} pools, "
            f"{self.snapshots_checked} snapshots checked in {self.seconds:.1f} s"
        )


class _Tracked:
    """What the replay keeps per aggregate."""

    __slots__ = (
        "aggregate",
        "chain",
        "credit",
        "drawn",
        "failed",
        "from_snapshot",
        "pool_problem",
        "snapshot",
        "snapshot_at",
        "snapshot_chain",
    )

    def __init__(self) -> None:
        self.chain = ChainCheck()
        self.aggregate: Any = None
        self.failed = False
        self.drawn = Decimal(0)
        self.credit = Decimal(0)
        self.pool_problem: str | None = None
        self.snapshot: Any = None
        """The aggregate's latest stored snapshot, if any."""
        self.snapshot_at = 0
        """Its version (0: no snapshot)."""
        self.snapshot_chain: str | None = None
        """The stored chain hash of the event at ``snapshot_at``."""
        self.from_snapshot: Any = None
        """The aggregate as a load sees it: the snapshot, then the events after it."""


def _state_decoder(app: Application[str]) -> Callable[[bytes], dict[str, Any]]:
    """Stored state bytes -> the stored field dict (before upcasting), as the mapper reads."""
    mapper = app.mapper
    decode = mapper.transcoder.decode
    cipher, compressor = mapper.cipher, mapper.compressor

    def state_of(state: bytes) -> dict[str, Any]:
        if cipher is not None:
            state = cipher.decrypt(state)
        if compressor is not None:
            state = compressor.decompress(state)
        decoded: dict[str, Any] = decode(bytes(state))
        return decoded

    return state_of


def _event(topic: str, originator_id: str, version: int, stored: dict[str, Any]) -> Any:
    """The domain event, as ``Mapper.to_domain_event`` makes it (upcasters applied);
    ``stored`` is left as read (the chain hashes it)."""
    state = dict(stored)
    state["originator_id"] = originator_id
    state["originator_version"] = version
    return event_from_state(topic, state)


ViewsCheck = Callable[..., dict[str, list[RowDiff]]]
"""Rebuilds the named views (None: all) into scratch space and lists the rows that differ;
with ``bad_events=`` a list, the stored events it cannot fold are added there and left out
(``ViewQueries.verify_views``)."""

CHILD = "simledger.runners.verify_part"
"""The module run as the second process of a parallel audit (``python -m``)."""


class StoreAudit:
    """The audit of one ledger's store: ``app`` is its application, ``verify_views`` its
    check of the views."""

    def __init__(self, app: Application[str], verify_views: ViewsCheck) -> None:
        self.app = app
        self.verify_views = verify_views

    def verify_store(
        self,
        *,
        views: bool = True,
        view_names: Sequence[str] | None = None,
        page: int = PAGE,
        parallel: bool = True,
        witness: str | None = None,
    ) -> VerifyReport:
        """Replay the whole store and check it (module docstring); never raises for what it
        finds.

        With ``views`` (``view_names``: all by default) the views are compared with their
        rebuild too (``report.view_diffs``; each differing row is also a ``view`` problem).
        On a SQLite or PostgreSQL store, with ``parallel``, the replay runs in a second
        process (:data:`CHILD`) while this one verifies the views: the two are independent
        reads of the same log. ``witness`` (``POSITION:HASH`` as ``simledger seal`` printed
        it, kept outside the store) must be a checkpoint of the log's seal (R-ES5). Logs
        ``audit.progress`` (``events``: log position reached, ``upto``: last position) after
        every page of a replay run in this process.
        """
        views, parallel = values.flag(views, "views"), values.flag(parallel, "parallel")
        page = values.whole(page, "a page", rule="R-IN2", low=1, high=values.PAGE_MAX)
        view_names = values.view_names(view_names)
        kept = None if witness is None else parse_witness(witness)
        app = self.app
        started = time.monotonic()
        diffs: dict[str, list[RowDiff]] = {}
        if views and parallel and persistence_module(app.env) != "eventsourcing.popo":
            child = subprocess.Popen(
                [sys.executable, "-P", "-m", CHILD, str(os.getpid())],  # it dies with us
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            request = json.dumps({"env": dict(app.env), "page": page}).encode()
            with ThreadPoolExecutor(1) as talk:
                answer = talk.submit(child.communicate, request)
                diffs, unfolded = self._check_views(view_names)
                out, err = answer.result()
            if child.returncode == 0:
                report: VerifyReport = pickle.loads(out)  # our own child's answer
            else:
                log.warning(
                    "audit.child_failed", code=child.returncode, stderr=err.decode()[-2000:]
                )
                report = replay_store(app, page=page)
        else:
            report = replay_store(app, page=page)
            unfolded = []
            if views:
                diffs, unfolded = self._check_views(view_names)
        report.problems.extend(unfolded)
        found = None if kept is None else witness_problem(app, kept)
        if found is not None:
            report.problems.append(Problem(found.kind, None, None, found.detail, found.position))
        report.view_diffs = diffs
        report.views_checked = sorted(diffs)
        for view, rows in diffs.items():
            for row in rows:
                report.problems.append(
                    Problem(
                        "view",
                        None,
                        None,
                        f"{view} {row.key}: live={row.live!r} rebuilt={row.rebuilt!r}",
                    )
                )
        report.seconds = time.monotonic() - started
        log.info("audit.done", problems=len(report.problems), seconds=round(report.seconds, 2))
        return report

    def _check_views(
        self, view_names: Sequence[str] | None
    ) -> tuple[dict[str, list[RowDiff]], list[Problem]]:
        """The views' diffs, and a ``views`` problem for each stored event their rebuild
        could not fold (left out of it) or for a rebuild that failed as a whole."""
        bad: list[TamperedEvent] = []
        try:
            diffs = self.verify_views(view_names, bad_events=bad)
        except SimledgerError as error:
            return {}, [Problem("views", None, None, f"the views cannot be verified: {error}")]
        return diffs, [
            Problem(
                "views",
                e.aggregate_id,
                e.version,
                f"left out of the views' rebuild: {e.message}",
                e.notification_id,
            )
            for e in bad
        ]


def replay_store(app: Application[str], *, page: int = PAGE) -> VerifyReport:
    """Every check of :meth:`StoreAudit.verify_store` but the views: on SQLite and
    PostgreSQL a range of aggregates at a time, in id order (application/audit_stream.py:
    memory bounded by a range, not the fleet), then the log in its order for the seals
    alone; else the log in its order once, ``page`` events per query."""
    started = time.monotonic()
    state_of = _state_decoder(app)
    seals = seal_check(app)  # before the last position: no checkpoint lies beyond it
    last = app.recorder.max_notification_id() or 0
    streamed = VerifyReport()
    heads = hashlib.sha256()

    def track_snapshot(tracked: dict[str, _Tracked], found: Any) -> None:
        one = tracked[str(found.originator_id)] = _Tracked()
        one.snapshot, one.snapshot_at = found, found.originator_version

    def finish(originator_id: str, one: _Tracked) -> None:
        streamed.chains_checked += 1
        finish_aggregate(streamed, heads, originator_id, one)

    if replay_in_id_order(
        app,
        snapshot=track_snapshot,
        fold=lambda tracked, n: fold_notification(streamed, tracked, n, state_of),
        finish=finish,
    ):
        _finish_seals(streamed, seals, _seal_log(app, seals, last, page))
        streamed.digest = heads.hexdigest()
        streamed.seconds = streamed.replay_seconds = time.monotonic() - started
        log.info("audit.replayed", events=streamed.events, aggregates=streamed.chains_checked)
        return streamed
    report = VerifyReport()
    tracked: dict[str, _Tracked] = {}
    with gc_paused():  # one object per aggregate, acyclic: collections cost as much as the fold
        for snapshot in latest_snapshots(app):
            one = tracked[snapshot.originator_id] = _Tracked()
            one.snapshot, one.snapshot_at = snapshot, snapshot.originator_version
        read_up_to = _replay(app, report, tracked, last, page, seals)
    _finish_seals(report, seals, read_up_to)
    report.chains_checked = len(tracked)
    heads = hashlib.sha256()
    for originator_id in sorted(tracked):
        finish_aggregate(report, heads, originator_id, tracked[originator_id])
    report.digest = heads.hexdigest()
    report.seconds = report.replay_seconds = time.monotonic() - started
    log.info("audit.replayed", events=report.events, aggregates=report.chains_checked)
    return report


def _finish_seals(report: VerifyReport, seals: SealCheck, read_up_to: int) -> None:
    """The seal check's verdict once the log was read up to ``read_up_to`` (R-ES5)."""
    report.sealed_up_to = seals.sealed_up_to
    for broken in seals.finish(read_up_to):
        report.problems.append(Problem(broken.kind, None, None, broken.detail, broken.position))


def _seal_log(app: Application[str], seals: SealCheck, last: int, page: int) -> int:
    """Feed the seal check the log in its order up to ``last`` (the id-order replay read
    the events by aggregate); nothing to read while no checkpoint exists."""
    if not seals.sealed_up_to:
        return last
    position = 0
    for notifications in log_pages(app.recorder, 0, last, page):
        for n in notifications:
            seals.add(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
        position = notifications[-1].id
    return position


def _replay(
    app: Application[str],
    report: VerifyReport,
    tracked: dict[str, _Tracked],
    last: int,
    page: int,
    seals: SealCheck,
) -> int:
    """Read the log up to ``last``, one query per page; fold and check every event."""
    state_of = _state_decoder(app)
    position = 0
    for notifications in log_pages(app.recorder, 0, last, page):
        for n in notifications:
            seals.add(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
            fold_notification(report, tracked, n, state_of)
        position = notifications[-1].id
        log.info("audit.progress", events=position, upto=last, replayed=report.events)

    return position


def finish_aggregate(report: VerifyReport, heads: Any, originator_id: str, one: _Tracked) -> None:
    """The checks made once an aggregate's whole history is folded (pools' balance, the
    snapshot anchor), and its head added to the digest (``heads``, in id order)."""
    problems = report.problems
    report.unsealed_events += one.chain.unsealed
    heads.update(f"{originator_id} {one.chain.version} {one.chain.head}\n".encode())
    aggregate = one.aggregate
    if aggregate is None:
        return
    name = type(aggregate).__name__
    report.aggregates[name] = report.aggregates.get(name, 0) + 1
    if one.failed:
        return
    if isinstance(aggregate, (SharedGroup, Package)):
        if isinstance(aggregate, SharedGroup) or aggregate.is_copy:
            report.pools_checked += 1
        if one.pool_problem is None:
            found = _check_pool_end(one)
            if found is not None:
                problems.append(Problem("pool", originator_id, aggregate.version, found))
    if one.snapshot is not None:
        _check_snapshot(one, problems)
        report.snapshots_checked += 1


def fold_notification(
    report: VerifyReport,
    tracked: dict[str, _Tracked],
    n: Any,
    state_of: Callable[[bytes], dict[str, Any]],
) -> None:
    """Check the stored event ``n`` (its chain, decoding, pools, snapshot) and fold it into
    its aggregate's ``tracked`` entry (made if new)."""
    problems = report.problems
    report.events += 1
    originator_id = str(n.originator_id)
    version = n.originator_version
    one = tracked.get(originator_id)
    if one is None:
        one = tracked[originator_id] = _Tracked()
    try:
        stored = state_of(n.state)
        if not isinstance(stored, dict):
            raise TypeError(f"a {type(stored).__name__}, not an event's fields")
        chain = stored.get("chain")
        digest = content(n.topic, originator_id, version, stored.get("class_version", 1), stored)
    except Exception as error:  # reported, the audit goes on
        if one.chain.problem is None:  # its chain cannot go on past this event
            one.chain.problem = ChainProblem("undecodable", version, "does not decode")
        if not one.failed:
            one.failed = True
            problems.append(
                Problem(
                    "undecodable",
                    originator_id,
                    version,
                    f"its stored state does not decode ({type(error).__name__}: "
                    f"{error}): altered in the store",
                    n.id,
                )
            )
        return
    chain_problem = one.chain.add(version, chain, digest)
    if chain_problem is not None:
        at = chain_problem.version
        problems.append(
            Problem(
                chain_problem.kind,
                originator_id,
                at,
                chain_problem.detail,
                n.id if at == version else None,
            )
        )
        one.failed = True  # a broken sequence cannot be folded further
    if one.failed:
        return
    try:
        event = _event(n.topic, originator_id, version, stored)
    except Exception as error:  # reported, the audit goes on
        one.failed = True
        problems.append(
            Problem(
                "undecodable",
                originator_id,
                version,
                f"topic {n.topic!r} with these fields is no event "
                f"({type(error).__name__}: {error})",
                n.id,
            )
        )
        return
    try:
        if not _touches_pool(type(event)) or one.pool_problem is not None:
            one.aggregate = event.mutate(one.aggregate)
        else:
            found = _check_draw(one, event)
            one.aggregate = event.mutate(one.aggregate)
            if found is None:
                found = _check_pool_after(one, event)
            if found is not None:
                problems.append(Problem("pool", originator_id, version, found, n.id))
                one.pool_problem = found  # the first pool problem only
        if version >= one.snapshot_at > 0:
            _follow_snapshot(one, event, version, chain)
    except Exception as error:  # reported, the audit goes on
        one.failed = True
        problems.append(
            Problem(
                "rebuild",
                originator_id,
                version,
                f"does not apply to its aggregate: {type(error).__name__}: {error}",
                n.id,
            )
        )


def _follow_snapshot(one: _Tracked, event: Any, version: int, chain: str | None) -> None:
    """Fold ``event`` into the aggregate as loaded through its latest snapshot."""
    if version == one.snapshot_at:
        one.snapshot_chain = chain
        one.from_snapshot = one.snapshot.mutate(None)
    else:
        one.from_snapshot = event.mutate(one.from_snapshot)


def _check_snapshot(one: _Tracked, problems: list[Problem]) -> None:
    """The anchor: the latest snapshot agrees with the stored events (followed during the
    replay: the stored chain hash at its version, the aggregate loaded through it)."""
    aggregate, snapshot, at = one.aggregate, one.snapshot, one.snapshot_at
    if at > aggregate.version:
        problems.append(
            Problem(
                "missing",
                aggregate.id,
                aggregate.version + 1,
                f"events {aggregate.version + 1} to {at} missing: a snapshot was taken at "
                f"version {at}",
            )
        )
        return
    held = snapshot.state.get("_chain", "")
    if held and one.snapshot_chain != held:
        problems.append(
            Problem(
                "altered",
                aggregate.id,
                at,
                f"the history up to version {at} was rewritten: its hash differs from the "
                f"one kept by the snapshot at version {at}",
            )
        )
        return
    if one.from_snapshot is None or _state(one.from_snapshot) != _state(aggregate):
        problems.append(
            Problem(
                "snapshot",
                aggregate.id,
                at,
                "the aggregate loaded through its snapshot differs from a full replay",
            )
        )


def _state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def verify_store(ledger: Application[str], **options: Any) -> VerifyReport:
    """:meth:`StoreAudit.verify_store` of ``ledger`` (a ``SimLedger``), checking its views
    with its own ``verify_views``."""
    views_check: ViewsCheck = ledger.verify_views  # type: ignore[attr-defined]
    return StoreAudit(ledger, views_check).verify_store(**options)
