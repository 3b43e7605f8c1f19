"""The embedded ledger: every command and query of docs/api.md on one eventsourcing Application.

:class:`SimLedger` is a facade: each public method hands over to the object that does that
job, built once per ledger around its unit of work (application/unit_of_work.py):

* commands, by family, in application/commands/: each loads fresh state, lets the domain
  decide (raising a typed error, before any event exists, when a rule refuses), and saves
  every aggregate it changed in one transaction, re-run on fresh state when the save
  collides with a concurrent writer;
* queries of the views (application/queries.py), of the aggregates (application/history.py),
  the CSV import and export (application/csv_transfer.py) and the audit
  (application/audit.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from eventsourcing.persistence import Recording
from eventsourcing.utils import EnvType

from simledger.application.audit import StoreAudit
from simledger.application.commands.always_on import AlwaysOnCommands
from simledger.application.commands.bulk import BulkCommands
from simledger.application.commands.lifecycle import LifecycleCommands
from simledger.application.commands.packages import PackageCommands
from simledger.application.commands.partner import PartnerCommands
from simledger.application.commands.regular_groups import RegularGroupCommands
from simledger.application.commands.rules import RuleCommands
from simledger.application.commands.sessions import SessionCommands
from simledger.application.commands.shared_groups import SharedGroupCommands
from simledger.application.commands.usage import UsageCommands
from simledger.application.csv_transfer import CsvTransfer
from simledger.application.event_sourced import (
    SIM_CACHE_SIZE,
    SIM_SNAPSHOT_INTERVAL,
    EventSourcedLedger,
    create_tables_retrying,
)
from simledger.application.history import SimReads
from simledger.application.keys import KeyRing
from simledger.application.log_seal import seal_log
from simledger.application.projection_runner import ViewRunner
from simledger.application.queries import ViewQueries
from simledger.domain.actor import CURRENT_ACTOR, Actor
from simledger.domain.errors import InvalidValue, shown
from simledger.domain.log_seal import Checkpoint

__all__ = ["SIM_CACHE_SIZE", "SIM_SNAPSHOT_INTERVAL", "SimLedger"]

P = ParamSpec("P")
R = TypeVar("R")


class _Delegate(Generic[P, R]):
    """A public method of :class:`SimLedger` that is ``method`` of the ledger's attribute
    ``part``: same name, signature and documentation, called as the ledger's actor of the
    moment (:func:`_acting_call`)."""

    def __init__(self, part: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self.part = part
        self.method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, ledger: None, owner: type) -> Callable[Concatenate[Any, P], R]: ...
    @overload
    def __get__(self, ledger: object, owner: type) -> Callable[P, R]: ...
    def __get__(self, ledger: object | None, owner: type) -> Callable[..., R]:
        if ledger is None:
            return self.method
        name = self.method.__name__
        call = _acting_call(ledger, getattr(getattr(ledger, self.part), name))
        # Kept on the ledger: the next lookup of the name finds it there, without this call.
        vars(ledger)[name] = call
        return call


def _acting_call(ledger: Any, method: Callable[..., R]) -> Callable[..., R]:
    """``method`` of ``ledger`` called as the ledger's actor of the moment (``acting_as``,
    else its ``actor``): every event the call records carries it (R-KY3; domain/actor.py).
    A plain function (name, signature and documentation: ``method``'s), made once per
    ledger and method: nobody named, a call costs one ``ContextVar.get`` more."""
    acting: ContextVar[Any] = ledger._acting

    def call(*args: Any, **kwargs: Any) -> R:
        actor = acting.get()
        if actor is _UNSET:
            actor = ledger.actor
        if actor is None:  # the common case: nobody named, nothing more to do
            return method(*args, **kwargs)
        token = CURRENT_ACTOR.set(actor)
        try:
            return method(*args, **kwargs)
        finally:
            CURRENT_ACTOR.reset(token)

    return functools.update_wrapper(call, method)


class SimLedger(EventSourcedLedger):
    """The SIM lifecycle engine (docs/api.md). ``env`` follows eventsourcing's settings."""

    name = "simledger"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        carrier_deadline: timedelta = timedelta(hours=24),
        operators_without_integration: Iterable[str] = (),
        actor: Actor | None = None,
    ) -> None:
        self.actor = _actor(actor)
        """The actor recorded with every event this ledger's calls cause, outside any
        :meth:`acting_as` (None: nobody)."""
        # Per ledger: acting as someone on one ledger names nobody on another.
        self._acting: ContextVar[Actor | _Unset | None] = ContextVar(
            "simledger_acting", default=_UNSET
        )
        self.clock = clock or (lambda: datetime.now(UTC))
        self.carrier_deadline = carrier_deadline
        self.operators_without_integration = frozenset(operators_without_integration)
        super().__init__(env)
        uow, now = self.unit_of_work, self.clock
        self._queries = ViewQueries(self.env, self.recorder, self.mapper, now)
        # Embedded, a save folds its events into the views inside its own transaction.
        uow.in_transaction = self._queries.inline_fold
        self._reads = SimReads(uow, now)
        self._lifecycle = LifecycleCommands(
            uow, clock=now, operators_without_integration=self.operators_without_integration
        )
        self._packages = PackageCommands(uow, clock=now)
        self._groups = SharedGroupCommands(uow, clock=now)
        self._usage = UsageCommands(uow, clock=now)
        self._partner = PartnerCommands(uow, clock=now)
        self._regular = RegularGroupCommands(uow, clock=now)
        self._sessions = SessionCommands(uow, clock=now)
        self._always_on = AlwaysOnCommands(uow, clock=now)
        self._bulk = BulkCommands(uow, clock=now, carrier_deadline=carrier_deadline)
        # The export reads the SIM list through this ledger's public ``sims``.
        self._csv = CsvTransfer(uow, self._lifecycle, self)
        self._rules = RuleCommands(uow, self, clock=now)
        self._audit = StoreAudit(self, self._queries.verify_views)
        self.keys = KeyRing(self, now, create_table=create_tables_retrying)
        """The API keys of this ledger's store (application/keys.py)."""

    # ---- who calls (R-KY3) ------------------------------------------------------------------
    @property
    def current_actor(self) -> Actor | None:
        """The actor this thread's or task's calls record: the innermost :meth:`acting_as`,
        else the ledger's ``actor``."""
        acting = self._acting.get()
        return self.actor if isinstance(acting, _Unset) else acting

    @contextmanager
    def acting_as(self, actor: Actor | None) -> Iterator[Actor | None]:
        """Within the block, this thread's (or asyncio task's) calls of this ledger record
        ``actor`` (None: nobody) with every event they cause; leaving it restores the actor
        before it. Other threads and tasks keep their own."""
        token = self._acting.set(_actor(actor))
        try:
            yield actor
        finally:
            self._acting.reset(token)

    # ---- receiving, the integration check, line, company, activation (R-SIM1..5) -----------
    receive_sims = _Delegate("_lifecycle", LifecycleCommands.receive_sims)
    complete_integration_check = _Delegate(
        "_lifecycle", LifecycleCommands.complete_integration_check
    )
    retry_integration_check = _Delegate("_lifecycle", LifecycleCommands.retry_integration_check)
    mark_not_available = _Delegate("_lifecycle", LifecycleCommands.mark_not_available)
    assign_line = _Delegate("_lifecycle", LifecycleCommands.assign_line)
    assign_to_company = _Delegate("_lifecycle", LifecycleCommands.assign_to_company)
    mark_store_use = _Delegate("_lifecycle", LifecycleCommands.mark_store_use)
    activate = _Delegate("_lifecycle", LifecycleCommands.activate)
    start_sim_swap = _Delegate("_lifecycle", LifecycleCommands.start_sim_swap)
    complete_sim_swap = _Delegate("_lifecycle", LifecycleCommands.complete_sim_swap)
    set_labels = _Delegate("_lifecycle", LifecycleCommands.set_labels)
    set_note = _Delegate("_lifecycle", LifecycleCommands.set_note)
    set_end_user = _Delegate("_lifecycle", LifecycleCommands.set_end_user)
    suspend_by_system = _Delegate("_lifecycle", LifecycleCommands.suspend_by_system)
    clear_system_pause = _Delegate("_lifecycle", LifecycleCommands.clear_system_pause)

    # ---- packages (R-PK1..3, R-SIM7) ---------------------------------------------------------
    create_package = _Delegate("_packages", PackageCommands.create_package)
    assign_package = _Delegate("_packages", PackageCommands.assign_package)
    top_up = _Delegate("_packages", PackageCommands.top_up)
    expire_packages = _Delegate("_packages", PackageCommands.expire_packages)

    # ---- shared groups (R-SG1..4) ------------------------------------------------------------
    create_shared_group = _Delegate("_groups", SharedGroupCommands.create_shared_group)
    add_to_shared_group = _Delegate("_groups", SharedGroupCommands.add_to_shared_group)
    remove_from_shared_group = _Delegate("_groups", SharedGroupCommands.remove_from_shared_group)
    delete_shared_group = _Delegate("_groups", SharedGroupCommands.delete_shared_group)

    # ---- usage (R-PK2, R-SG1, R-SIM7, R-US1, R-US2) ----------------------------------------
    record_usage = _Delegate("_usage", UsageCommands.record_usage)
    record_usage_batch = _Delegate("_usage", UsageCommands.record_usage_batch)

    # ---- regular groups (R-SG5, R-RG1..3) ----------------------------------------------------
    create_group = _Delegate("_regular", RegularGroupCommands.create_group)
    rename_group = _Delegate("_regular", RegularGroupCommands.rename_group)
    add_to_group = _Delegate("_regular", RegularGroupCommands.add_to_group)
    remove_from_group = _Delegate("_regular", RegularGroupCommands.remove_from_group)
    delete_group = _Delegate("_regular", RegularGroupCommands.delete_group)
    regular_group = _Delegate("_regular", RegularGroupCommands.regular_group)

    # ---- in session (R-SS1..2), Always On (R-AO1..2) -----------------------------------------
    record_sessions = _Delegate("_sessions", SessionCommands.record_sessions)
    record_session = _Delegate("_sessions", SessionCommands.record_session)
    set_always_on = _Delegate("_always_on", AlwaysOnCommands.set_always_on)
    # ---- rules, operator contracts, refills, charges (R-RU1..5, R-PR1..3, R-PP1..2) -------
    attach_rule = _Delegate("_rules", RuleCommands.attach_rule)
    detach_rule = _Delegate("_rules", RuleCommands.detach_rule)
    set_auto_refill = _Delegate("_rules", RuleCommands.set_auto_refill)
    set_prices = _Delegate("_rules", RuleCommands.set_prices)
    set_inactivity_period = _Delegate("_rules", RuleCommands.set_inactivity_period)
    run_contracts = _Delegate("_rules", RuleCommands.run_contracts)
    month_charges = _Delegate("_rules", RuleCommands.month_charges)
    export_charges_csv = _Delegate("_rules", RuleCommands.export_charges_csv)

    # ---- partner flow (R-PF1..4) -------------------------------------------------------------
    order_sims = _Delegate("_partner", PartnerCommands.order_sims)
    create_customer_service = _Delegate("_partner", PartnerCommands.create_customer_service)
    migrate_to_partner_service = _Delegate("_partner", PartnerCommands.migrate_to_partner_service)
    assign_to_customer = _Delegate("_partner", PartnerCommands.assign_to_customer)

    # ---- pause and resume, the carriers' answers (R-BK1..3, R-BK6) ---------------------------
    pause = _Delegate("_bulk", BulkCommands.pause)
    resume = _Delegate("_bulk", BulkCommands.resume)
    confirm = _Delegate("_bulk", BulkCommands.confirm)
    confirm_many = _Delegate("_bulk", BulkCommands.confirm_many)

    # ---- CSV (R-IO1, R-BK4) ------------------------------------------------------------------
    import_sims_csv = _Delegate("_csv", CsvTransfer.import_sims_csv)
    export_sims_csv = _Delegate("_csv", CsvTransfer.export_sims_csv)

    # ---- queries of the aggregates (R-SIM2, R-ES3) -------------------------------------------
    sim = _Delegate("_reads", SimReads.sim)
    sim_as_of = _Delegate("_reads", SimReads.sim_as_of)
    history = _Delegate("_reads", SimReads.history)
    shared_group = _Delegate("_reads", SimReads.shared_group)

    # ---- queries of the views, and the views themselves (R-SIM2, R-BK3, R-ES3) ---------------
    sims = _Delegate("_queries", ViewQueries.sims)
    pending_activity = _Delegate("_queries", ViewQueries.pending_activity)
    shared_groups = _Delegate("_queries", ViewQueries.shared_groups)
    catch_up_views = _Delegate("_queries", ViewQueries.catch_up_views)
    rebuild_view = _Delegate("_queries", ViewQueries.rebuild_view)
    rebuild_views = _Delegate("_queries", ViewQueries.rebuild_views)
    verify_views = _Delegate("_queries", ViewQueries.verify_views)
    close_views = _Delegate("_queries", ViewQueries.close)

    @property
    def views(self) -> ViewRunner:
        """The runner that keeps this ledger's read models (created on first use)."""
        return self._queries.views

    @property
    def last_saved_position(self) -> int:
        """The position of this ledger's latest save (0: none yet)."""
        return self._queries._last_saved_id

    @property
    def views_mode(self) -> str:
        """``embedded`` (this process folds its saves) or ``external`` (a worker does)."""
        return self._queries.views_mode

    # ---- the audit (R-ES3) -------------------------------------------------------------------
    verify_store = _Delegate("_audit", StoreAudit.verify_store)

    def seal(self) -> Checkpoint | None:
        """Seal the log up to its last position (R-ES5): append a checkpoint of the
        store-wide chain over every event's position, and return the latest checkpoint
        (None: the log is empty). Print it (``str``: ``POSITION:HASH``) for a witness."""
        return seal_log(self)

    # ---- the application ---------------------------------------------------------------------
    def _notify(self, recordings: list[Recording[str]]) -> None:
        super()._notify(recordings)
        self._queries.saved(recordings)

    def close(self) -> None:
        self._queries.close()
        super().close()


class _Unset:
    """No :meth:`SimLedger.acting_as` in this context: the ledger's own actor applies."""


_UNSET = _Unset()


def _actor(actor: object) -> Actor | None:
    if actor is None or isinstance(actor, Actor):
        return actor
    raise InvalidValue(f"an actor is an Actor or None, not {shown(actor)}", rule="R-IN4")
