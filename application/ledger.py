"""The embedded ledger: every command and query of API.md on one eventsourcing Application.

Each command loads fresh state, lets the domain decide (raising a typed error, before any
event exists, when a rule refuses), and saves every aggregate it changed in one
transaction. A save that collides with a concurrent writer re-runs the whole command on
fresh state, a bounded number of times.
"""

from __future__ import annotations

import functools
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import (
    IntegrityError,
    InternalError,
    Mapper,
    Recording,
    Transcoder,
)
from eventsourcing.utils import EnvType, get_topic

from simledger.adapters.logs import get_logger
from simledger.adapters.store.aggregate_cache import AggregateCache
from simledger.adapters.store.batch_load import fast_project, gc_paused, load_many
from simledger.adapters.store.event_store import LedgerEventStore
from simledger.adapters.store.mapper import LedgerMapper, construct_mapper
from simledger.adapters.store.persistence import store_env
from simledger.adapters.store.transcoder import LedgerTranscoder
from simledger.application.csv_transfer import CsvTransfer
from simledger.application.history import sim_history, sim_state_as_of
from simledger.application.queries import ViewQueries
from simledger.application.results import (
    BulkResult,
    ConfirmResult,
    ExpiryResult,
    HistoryEntry,
    SharedGroupView,
    SimView,
)
from simledger.domain.base import LedgerAggregate, Snapshot
from simledger.domain.bulk import BULK_LIMIT, BulkOperation
from simledger.domain.errors import (
    AlreadyInSharedGroup,
    AutoRenewNotAllowed,
    BulkLimitExceeded,
    ConcurrencyConflict,
    InvalidInput,
    PackageStillActive,
    SimAlreadyExists,
    SimledgerError,
    StoreUnreadable,
    UnknownCustomerService,
    UnknownGroup,
    UnknownOrder,
    UnknownPackage,
    UnknownSim,
)
from simledger.domain.iccid import normalise_iccid
from simledger.domain.lifecycle import Cmd
from simledger.domain.package import Package
from simledger.domain.partner import CustomerService, SimOrder
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.types import (
    HOLDING_SERVICE,
    LABEL_SEPARATOR,
    OperationKind,
    SimStatus,
    SimType,
    SuspendReason,
)

if TYPE_CHECKING:
    from simledger.application.audit import VerifyReport

log = get_logger("simledger")

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A", bound=LedgerAggregate)

MAX_ATTEMPTS = 8
IDEMPOTENCY_NAMESPACE = UUID("5d1e7c56-3f0e-4f51-9a43-7a4c2b0f6a11")
_MSISDN = re.compile(r"^\+?[1-9][0-9]{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def command(method: Callable[P, R]) -> Callable[P, R]:
    """Re-run ``method`` on fresh state when its save collides with another writer."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except IntegrityError as conflict:
                log.info("command.conflict", command=method.__name__, attempt=attempt)
                if attempt == MAX_ATTEMPTS:
                    raise ConcurrencyConflict(
                        f"{method.__name__} collided with concurrent writers {attempt} times; "
                        "nothing was recorded, try again"
                    ) from conflict
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    return run


def without_gc(method: Callable[P, R]) -> Callable[P, R]:
    """Run a bulk ``method`` with the cyclic garbage collector paused (``gc_paused``): a
    command over 10,000 SIMs allocates a few hundred thousand acyclic objects, and every
    collection during it walks them all (and the SIM cache): 80-150 ms of a 0.6 s command."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with gc_paused():
            return method(*args, **kwargs)

    return run


def _create_tables_retrying(create: Callable[[], R]) -> R:
    """Run ``create`` (which creates the store's tables if missing) again when another
    process creating the same tables at the same moment made PostgreSQL refuse it
    ("tuple concurrently updated", a duplicate type): the statements are idempotent."""
    for attempt in range(1, 6):
        try:
            return create()
        except (InternalError, IntegrityError):
            if attempt == 5:
                raise
            log.info("store.create_tables.retry", attempt=attempt)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _uuid(value: object, error: Callable[[object], SimledgerError]) -> str:
    try:
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    except ValueError:
        raise error(value) from None


def _mb(value: object, *, rule: str, allow_zero: bool = False) -> Decimal:
    try:
        mb = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"not a number of MB: {value!r}", rule=rule) from None
    if not mb.is_finite() or mb < 0 or (mb == 0 and not allow_zero):
        raise InvalidInput(f"MB must be a positive number: {value!r}", rule=rule)
    return mb


def _text(value: object, what: str, *, rule: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string: {value!r}", rule=rule)
    return value.strip()


def _aware(at: datetime | None, default: datetime) -> datetime:
    if at is None:
        return default
    if at.tzinfo is None:
        raise InvalidInput(f"timestamps must carry a time zone: {at!r}", rule="R-ES3")
    return at


SIM_CACHE_SIZE = 20_000
"""SIMs a ledger keeps copies of after saving them (setting ``SIM_CACHE_SIZE``; 0: none), so
a bulk command over SIMs it just saved skips loading them: about 3 KB each."""

SIM_SNAPSHOT_INTERVAL = 5
"""A SIM is snapshotted when a save takes it across a multiple of this many events, so a
load reads its latest snapshot and at most four events after it. A provisioned SIM
(received, checked, line, company, package, activated) already has one."""


@dataclass
class _Decision(Generic[R]):
    """What a bulk command decided: its answer, the SIMs it changed, those it refused
    (id -> reason), and other aggregates to save with them."""

    result: R
    changed: list[Sim]
    refused: Mapping[str, str]
    others: list[Any] = field(default_factory=list)


class SimLedger(ViewQueries, CsvTransfer, Application[str]):
    """The SIM lifecycle engine (API.md). ``env`` follows eventsourcing's settings."""

    name = "simledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Sim: SIM_SNAPSHOT_INTERVAL}
    snapshot_class = Snapshot

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        carrier_deadline: timedelta = timedelta(hours=24),
        operators_without_integration: Iterable[str] = (),
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.carrier_deadline = carrier_deadline
        self.operators_without_integration = frozenset(operators_without_integration)
        super().__init__(env)
        self._sim_cache = AggregateCache(int(self.env.get("SIM_CACHE_SIZE") or SIM_CACHE_SIZE))
        # A store encrypted at rest opened without its key (or the reverse) fails here, with
        # a message saying so, rather than at the first read.
        first = self.recorder.select_notifications(start=None, limit=1)
        if first and isinstance(self.mapper, LedgerMapper):
            try:
                self.mapper.check_readable(first[0])
            except StoreUnreadable:
                self.close()  # the store's connections, before the caller gets the error
                raise

    def construct_env(self, name: str, env: EnvType | None = None) -> Any:
        base = super().construct_env(name, env)
        return type(base)(name, store_env(base))

    def construct_event_store(self) -> LedgerEventStore:
        return LedgerEventStore(mapper=self.mapper, recorder=self.recorder)

    def construct_recorder(self) -> Any:
        return _create_tables_retrying(super().construct_recorder)

    def construct_snapshot_store(self) -> Any:
        return _create_tables_retrying(super().construct_snapshot_store)

    def construct_transcoder(self) -> Transcoder:
        """eventsourcing's JSON transcoder decoding with orjson (adapters/store/transcoder.py),
        unless ``TRANSCODER_TOPIC`` names another."""
        if self.factory.env.get(self.factory.TRANSCODER_TOPIC):
            return super().construct_transcoder()
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_mapper(self) -> Mapper[str]:
        """eventsourcing's mapper (cipher and compressor settings included), with clear
        errors for a store that cannot be read with them (adapters/store/mapper.py)."""
        return construct_mapper(self.factory, self.construct_transcoder())

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[str]]:
        """``Application.save``, collecting the events of our aggregates directly.

        eventsourcing's ``ProcessingEvent.collect_events`` runs two runtime ``Protocol``
        isinstance checks per object: a quarter of a 10,000-SIM bulk save. For
        ``LedgerAggregate`` objects the outcome is known (not an event; collects events),
        so they skip the checks; anything else goes through the original path.
        """
        return self._save(objs, kwargs, owned=False)

    def _save(
        self, objs: Sequence[Any], kwargs: dict[str, Any], *, owned: bool
    ) -> list[Recording[str]]:
        """``save``; ``owned``: the caller drops ``objs`` afterwards, so the SIM cache keeps
        them as they are instead of copies (adapters/store/aggregate_cache.py)."""
        if not all(isinstance(obj, LedgerAggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing_event: ProcessingEvent[str] = ProcessingEvent()
        for aggregate in objs:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._sim_cache.put(
            (a for a in processing_event.aggregates.values() if isinstance(a, Sim)), owned=owned
        )
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # deprecated hook, called as the original does
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[str]) -> None:
        """Snapshot each saved aggregate whose new events crossed a multiple of its
        interval, from the saved object itself, all in one write.

        eventsourcing's own ``_take_snapshots`` re-reads every such aggregate from the store
        (``take_snapshot``: one query each, 10,000 for a bulk command) and writes each
        snapshot on its own. The saved object already is the aggregate at its last version,
        so the snapshot is taken at that version (not necessarily the multiple itself).
        Snapshots are a cache: they are written after the events' transaction, as
        eventsourcing writes them, and a crash in between only means a longer load.
        """
        if self.snapshots is None:
            return
        new_events: dict[str, int] = {}
        for event in processing_event.events:
            new_events[event.originator_id] = new_events.get(event.originator_id, 0) + 1
        taken = []
        for aggregate_id, count in new_events.items():
            aggregate = processing_event.aggregates.get(aggregate_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if not interval or not isinstance(aggregate, LedgerAggregate):
                continue
            version = aggregate.version
            if version // interval > (version - count) // interval:
                taken.append(Snapshot.take(aggregate))
        if taken:
            self.snapshots.put(taken)

    # ---- loading ------------------------------------------------------------------------
    def _get(self, aggregate_id: str, kind: type[A]) -> A | None:
        try:
            aggregate: object = self.repository.get(aggregate_id, projector_func=fast_project)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, kind) else None

    def _sim(self, iccid: object) -> Sim:
        key = normalise_iccid(iccid)
        sim = self._get(key, Sim)
        if sim is None:
            raise UnknownSim(key)
        return sim

    def _sims(self, iccids: Sequence[str]) -> dict[str, Sim]:
        """The SIMs among ``iccids``: those this ledger saved last and nobody changed since
        taken from its cache (adapters/store/aggregate_cache.py), the others loaded in batches.
        The caller owns them: it saves them with ``_save(..., owned=True)`` or drops them."""
        return self._sims_for(iccids, trust_cache=False)[0]

    def _sims_for(
        self, iccids: Sequence[str], *, trust_cache: bool
    ) -> tuple[dict[str, Sim], set[str]]:
        """``_sims``; with ``trust_cache``, cached SIMs are taken without asking the store
        for their version (see ``_on_sims``), and the second value names them."""
        found = self._sim_cache.take(self, iccids, checked=not trust_cache)
        unchecked = set(found) if trust_cache else set()
        missing = [i for i in iccids if i not in found]
        if missing:
            found.update(load_many(self, missing))
        return {k: v for k, v in found.items() if isinstance(v, Sim)}, unchecked

    def _give_back(self, taken: Mapping[str, Sim], changed: Sequence[Sim]) -> None:
        """Return to the cache the SIMs a command took and left unchanged (a refused
        request): they are still the latest. Only after its save succeeded."""
        saved = {id(sim) for sim in changed}
        self._sim_cache.put(
            (s for s in taken.values() if id(s) not in saved and not s._pending_events),
            owned=True,
        )

    def _catalogue_package(self, package_id: object) -> Package:
        key = _uuid(package_id, UnknownPackage)
        package = self._get(key, Package)
        if package is None or package.is_copy:
            raise UnknownPackage(package_id)
        return package

    def _group(self, group_id: object) -> SharedGroup:
        key = _uuid(group_id, UnknownGroup)
        group = self._get(key, SharedGroup)
        if group is None:
            raise UnknownGroup(group_id)
        if group.deleted:
            raise UnknownGroup(group_id, " (deleted)")
        return group

    def _copy(self, sim: Sim) -> Package | None:
        return self._get(sim.copy_id, Package) if sim.copy_id else None

    def _normalise_all(self, iccids: Iterable[object]) -> list[str]:
        if isinstance(iccids, str):
            raise InvalidInput("pass a list of ICCIDs, not one string", rule="R-SIM1")
        return [normalise_iccid(i) for i in iccids]

    # ---- receiving and the integration check --------------------------------------------
    @command
    def receive_sims(
        self,
        iccids: Iterable[object],
        *,
        operator: str,
        sim_type: SimType | str,
        esim: bool = False,
        order_id: UUID | str | None = None,
        activation_codes: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Add SIMs, each ``pending`` (R-SIM4); against an order, on the holding service."""
        keys = self._normalise_all(iccids)
        if not keys:
            return []
        dupes = sorted({k for k in keys if keys.count(k) > 1}) if len(set(keys)) < len(keys) else []
        if dupes:
            raise InvalidInput(f"ICCIDs listed twice: {', '.join(dupes[:5])}", rule="R-SIM1")
        operator = _text(operator, "operator", rule="R-SIM2")
        try:
            kind = SimType(sim_type)
        except ValueError:
            raise InvalidInput(
                f"unknown SIM type {sim_type!r}; one of {', '.join(t.value for t in SimType)}",
                rule="R-SIM7",
            ) from None
        existing = sorted(load_many(self, keys))
        if existing:
            raise SimAlreadyExists(existing)
        to_save: list[LedgerAggregate] = []
        order_key: str | None = None
        if order_id is not None:
            order_key = _uuid(order_id, lambda v: UnknownOrder(f"no SIM order {v}"))
            order = self._get(order_key, SimOrder)
            if order is None:
                raise UnknownOrder(f"no SIM order {order_id}")
            order.deliver(keys, operator)
            to_save.append(order)
        codes = {normalise_iccid(k): v for k, v in (activation_codes or {}).items()}
        to_save.extend(self._new_sims(keys, operator, kind, bool(esim), order_key, codes))
        self.save(*to_save)
        log.info("sims.received", count=len(keys), operator=operator, order_id=order_key)
        return keys

    def _new_sims(
        self,
        keys: Sequence[str],
        operator: str,
        kind: SimType,
        esim: bool,
        order_key: str | None = None,
        codes: Mapping[str, str] | None = None,
    ) -> list[Sim]:
        """Validated, not yet existing ICCIDs as newly received SIMs (unsaved); shared by
        ``receive_sims`` and the CSV import."""
        integrated = operator not in self.operators_without_integration
        sims: list[Sim] = []
        for key in keys:
            code = (codes or {}).get(key) or (
                f"LPA:1$smdp.simledger.local${uuid.uuid4().hex.upper()}"
            )
            sims.append(
                Sim.receive(
                    key,
                    operator=operator,
                    sim_type=kind,
                    esim=esim,
                    activation_code=code if esim else None,
                    integrated=integrated,
                    order_id=order_key,
                )
            )
        return sims

    @command
    def complete_integration_check(
        self, iccid: object, *, ok: bool, reason: str | None = None
    ) -> None:
        sim = self._sim(iccid)
        sim.complete_integration_check(ok=bool(ok), reason=reason)
        self.save(sim)

    @command
    def retry_integration_check(self, iccid: object) -> None:
        sim = self._sim(iccid)
        sim.retry_integration_check()
        self.save(sim)

    @command
    def mark_not_available(self, iccid: object, reason: str) -> None:
        sim = self._sim(iccid)
        sim.mark_not_available(_text(reason, "reason", rule="R-SIM3"))
        self.save(sim)

    # ---- line, company, package (R-SIM5, R-PK1..3) ---------------------------------------
    @command
    def assign_line(self, iccid: object, msisdn: str) -> None:
        number = str(msisdn).replace(" ", "")
        if not _MSISDN.match(number):
            raise InvalidInput(f"not an E.164 MSISDN: {msisdn!r}", rule="R-SIM5")
        sim = self._sim(iccid)
        sim.assign_line(number)
        self.save(sim)

    @command
    def assign_to_company(self, iccid: object, company: str) -> None:
        sim = self._sim(iccid)
        sim.assign_to_company(_text(company, "company", rule="R-SIM5"))
        self.save(sim)

    @command
    def mark_store_use(self, iccid: object) -> None:
        sim = self._sim(iccid)
        sim.mark_store_use()
        self.save(sim)

    @command
    def create_package(
        self,
        name: str,
        *,
        data_mb: float | int | Decimal,
        validity_days: int,
        auto_renew: bool = False,
        price: float | int | Decimal | None = None,
    ) -> UUID:
        name = _text(name, "package name", rule="R-PK1")
        allowance = _mb(data_mb, rule="R-PK1")
        if (
            isinstance(validity_days, bool)
            or not isinstance(validity_days, int)
            or validity_days <= 0
        ):
            raise InvalidInput(
                f"validity must be a positive number of days: {validity_days!r}", rule="R-PK1"
            )
        cost = None if price is None else _mb(price, rule="R-PK1", allow_zero=True)
        package_id = uuid.uuid4()
        package = Package.create(
            str(package_id),
            name=name,
            data_mb=allowance,
            validity_days=validity_days,
            auto_renew=bool(auto_renew),
            price=cost,
        )
        self.save(package)
        return package_id

    def _check_no_active_package(self, sim: Sim, now: datetime, rule: str) -> None:
        if sim.group_id is not None:
            raise AlreadyInSharedGroup(
                f"SIM {sim.id} uses the pool of shared group {sim.group_id}", rule=rule
            )
        copy = self._copy(sim)
        if copy is not None and copy.is_active_at(now):
            raise PackageStillActive(
                f"SIM {sim.id} still has an active package ({copy.name}, copy {copy.id})",
                rule=rule,
            )

    @command
    def assign_package(
        self, iccid: object, package_id: UUID | str, *, at: datetime | None = None
    ) -> None:
        """The SIM's own copy (R-PK2, R-PK3)."""
        now = self.clock()
        sim = self._sim(iccid)
        package = self._catalogue_package(package_id)
        self._check_no_active_package(sim, now, rule="R-PK3")
        sim.check_can_take_package(Cmd.ASSIGN_PACKAGE)
        if sim.paused_by_system_for_package:
            sim.clear_system_pause(by="new package")
        copy = package.copy_for(str(uuid.uuid4()), sim.id, starts_at=_aware(at, now))
        sim.assign_package(package.id, copy.id, package.name)
        self.save(sim, copy)

    @command
    def activate(self, iccid: object) -> None:
        sim = self._sim(iccid)
        sim.activate()
        self.save(sim)

    # ---- partner flow (R-PF1..4) --------------------------------------------------------
    @command
    def order_sims(self, operator: str, quantity: int) -> UUID:
        order_id = uuid.uuid4()
        order = SimOrder.place(str(order_id), _text(operator, "operator", rule="R-PF1"), quantity)
        self.save(order)
        return order_id

    @command
    def create_customer_service(
        self,
        name: str,
        *,
        data_mb_per_month: int,
        networks: Iterable[str] = (),
        minimum_term_months: int = 0,
    ) -> UUID:
        service_id = uuid.uuid4()
        service = CustomerService.create(
            str(service_id),
            name=_text(name, "service name", rule="R-PF2"),
            data_mb_per_month=int(data_mb_per_month),
            networks=[str(n) for n in networks],
            minimum_term_months=int(minimum_term_months),
        )
        self.save(service)
        return service_id

    @command
    def migrate_to_partner_service(self, iccid: object, partner_service: str) -> None:
        service = _text(partner_service, "partner service", rule="R-PF3")
        if service == HOLDING_SERVICE:
            raise InvalidInput("the holding service is not a partner service", rule="R-PF3")
        sim = self._sim(iccid)
        sim.migrate_to_partner_service(service)
        self.save(sim)

    @command
    def assign_to_customer(self, iccid: object, company: str, service_id: UUID | str) -> None:
        company = _text(company, "company", rule="R-PF4")
        key = _uuid(service_id, lambda v: UnknownCustomerService(f"no customer service {v}"))
        service = self._get(key, CustomerService)
        if service is None:
            raise UnknownCustomerService(f"no customer service {service_id}")
        sim = self._sim(iccid)
        sim.assign_to_customer(company, service.id, service.name)
        self.save(sim)

    # ---- pause and resume (R-BK1..3, R-BK6) ---------------------------------------------
    def pause(self, iccids: Iterable[object], *, idempotency_key: str | None = None) -> BulkResult:
        return self._bulk(OperationKind.PAUSE, iccids, idempotency_key)

    def resume(self, iccids: Iterable[object], *, idempotency_key: str | None = None) -> BulkResult:
        return self._bulk(OperationKind.RESUME, iccids, idempotency_key)

    @command
    @without_gc
    def _bulk(
        self, kind: OperationKind, iccids: Iterable[object], idempotency_key: str | None
    ) -> BulkResult:
        if isinstance(iccids, str):
            raise InvalidInput("pass a list of ICCIDs, not one string", rule="R-BK1")
        requested = list(dict.fromkeys(iccids))
        if len(requested) > BULK_LIMIT:
            raise BulkLimitExceeded(
                f"{len(requested)} SIMs in one {kind.value} request; at most {BULK_LIMIT}"
            )
        if idempotency_key is not None:
            op_id = str(
                uuid.uuid5(
                    IDEMPOTENCY_NAMESPACE, _text(idempotency_key, "idempotency key", rule="R-BK6")
                )
            )
            earlier = self._get(op_id, BulkOperation)
            if earlier is not None:
                return self._replay_answer(earlier, kind, requested)
        else:
            op_id = str(uuid.uuid4())
        now = self.clock()
        deadline = now + self.carrier_deadline
        rejected: dict[str, str] = {}
        keys: list[str] = []
        for raw in requested:
            try:
                keys.append(normalise_iccid(raw))
            except SimledgerError as error:
                rejected[str(raw)] = str(error)
        keys = list(dict.fromkeys(keys))

        def decide(sims: Mapping[str, Sim]) -> _Decision[BulkResult]:
            refused = dict(rejected)
            accepted: list[str] = []
            changed: list[Sim] = []
            for key in keys:
                sim = sims.get(key)
                if sim is None:
                    refused[key] = str(UnknownSim(key))
                    continue
                try:
                    sim.request_operation(kind, op_id, now, deadline)
                except SimledgerError as error:
                    refused[key] = str(error)
                    continue
                accepted.append(key)
                changed.append(sim)
            operation = BulkOperation.request(
                op_id,
                kind=kind.value,
                accepted=accepted,
                rejected=refused,
                idempotency_key=idempotency_key,
                requested_at=now,
                deadline=deadline,
            )
            answer = BulkResult(
                operation_id=UUID(op_id), kind=kind.value, accepted=accepted, rejected=refused
            )
            return _Decision(answer, changed, refused, [operation])

        result = self._on_sims(keys, decide)
        log.info(
            "bulk.requested",
            kind=kind.value,
            operation_id=op_id,
            accepted=len(result.accepted),
            rejected=len(result.rejected),
        )
        return result

    def _on_sims(self, keys: list[str], decide: Callable[[Mapping[str, Sim]], _Decision[R]]) -> R:
        """Run a bulk command's ``decide`` on the SIMs of ``keys`` and save what it changed,
        in one transaction.

        SIMs this ledger saved last are taken from its cache WITHOUT asking the store
        whether they are still the latest (a query per 1,000 SIMs, a sixth of a 10,000-SIM
        confirmation): the store checks that itself, since each new event's (SIM, version)
        must be new. If another writer changed one meanwhile, the save fails whole
        (``IntegrityError``, nothing recorded) and ``@command`` runs the command again: the
        SIMs it took are out of the cache, so they are read from the store. A refusal
        writes no event that would catch a stale copy, so the SIMs ``decide`` refused are
        checked against the store before the save; if one changed, the command is decided
        again on SIMs read from the store.
        """
        sims, unchecked = self._sims_for(keys, trust_cache=True)
        decision = decide(sims)
        doubtful = [k for k in decision.refused if k in unchecked]
        if doubtful and not self._sim_cache.still_latest(self, {k: sims[k] for k in doubtful}):
            log.info("bulk.cache_stale", refused=len(doubtful))
            sims, _ = self._sims_for(keys, trust_cache=False)
            decision = decide(sims)
        self._save((*decision.others, *decision.changed), {}, owned=True)
        self._give_back(sims, decision.changed)
        return decision.result

    @staticmethod
    def _replay_answer(
        earlier: BulkOperation, kind: OperationKind, requested: list[object]
    ) -> BulkResult:
        first = set(earlier.accepted) | set(earlier.rejected)
        again: set[str] = set()
        for raw in requested:
            try:
                again.add(normalise_iccid(raw))
            except SimledgerError:
                again.add(str(raw))
        if earlier.kind != kind.value or again != first:
            raise InvalidInput(
                f"idempotency key {earlier.idempotency_key!r} was used for a different request "
                f"({earlier.kind} of {len(first)} SIMs)",
                rule="R-BK6",
            )
        return BulkResult(
            operation_id=UUID(earlier.id),
            kind=earlier.kind,
            accepted=list(earlier.accepted),
            rejected=dict(earlier.rejected),
        )

    @command
    def confirm(
        self, operation_id: UUID | str, iccid: object, *, ok: bool = True, reason: str | None = None
    ) -> None:
        """A carrier's answer for one SIM; only then does its status change (R-BK3)."""
        sim = self._sim(iccid)
        sim.confirm_operation(str(operation_id), ok=bool(ok), reason=reason)
        self.save(sim)

    @command
    @without_gc
    def confirm_many(
        self,
        operation_id: UUID | str,
        answers: Mapping[str, bool] | Iterable[tuple[str, bool] | tuple[str, bool, str | None]],
    ) -> ConfirmResult:
        """Many carrier answers for one operation, in one transaction (R-BK3).

        ``answers``: ICCID → ok, or ``(iccid, ok)`` / ``(iccid, ok, reason)`` tuples (the
        reason of a refusal, as ``confirm`` takes it). Unlike ``confirm``, an answer that
        cannot apply (unknown SIM, no such operation in flight — e.g. it was already
        confirmed) does not stop the others: it is listed in ``skipped`` with its reason,
        and nothing is recorded for it.
        """
        op = str(operation_id)
        pairs = list(answers.items() if isinstance(answers, Mapping) else answers)
        if len(pairs) > BULK_LIMIT:
            raise BulkLimitExceeded(f"{len(pairs)} answers in one call; at most {BULK_LIMIT}")
        skipped: dict[str, str] = {}
        wanted: dict[str, tuple[bool, str | None]] = {}
        for raw, ok, *reason in pairs:
            try:
                wanted[normalise_iccid(raw)] = (bool(ok), reason[0] if reason else None)
            except SimledgerError as error:
                skipped[str(raw)] = str(error)

        def decide(sims: Mapping[str, Sim]) -> _Decision[ConfirmResult]:
            refused = dict(skipped)
            changed: list[Sim] = []
            for key, (ok, why) in wanted.items():
                sim = sims.get(key)
                if sim is None:
                    refused[key] = str(UnknownSim(key))
                    continue
                try:
                    sim.confirm_operation(op, ok=ok, reason=why)
                except SimledgerError as error:
                    refused[key] = str(error)
                    continue
                changed.append(sim)
            answer = ConfirmResult(applied=[sim.id for sim in changed], skipped=refused)
            return _Decision(answer, changed, refused)

        return self._on_sims(list(wanted), decide)

    @command
    def suspend_by_system(self, iccid: object, cause: str) -> None:
        sim = self._sim(iccid)
        sim.suspend_by_system(_text(cause, "cause", rule="R-SIM6"))
        self.save(sim)

    @command
    def clear_system_pause(self, iccid: object) -> None:
        """An operator's explicit override of a system pause (R-SIM6)."""
        sim = self._sim(iccid)
        sim.clear_system_pause(by="operator")
        self.save(sim)

    # ---- usage (R-PK2, R-SG1, R-SIM7) ----------------------------------------------------
    @command
    def record_usage(
        self,
        iccid: object,
        mb: float | int | Decimal,
        *,
        at: datetime | None = None,
        country: str | None = None,
    ) -> None:
        amount = _mb(mb, rule="R-PK2")
        sim = self._sim(iccid)
        when = _aware(at, self.clock())
        sim.check_usage()
        to_save: list[LedgerAggregate] = [sim]
        to_suspend: list[Sim] = []
        if sim.group_id is not None:
            group = self._group(sim.group_id)
            to_save.append(group)
            if not group.depleted and group.draw(sim.id, amount, when):
                others = self._sims([m for m in group.members if m != sim.id])
                to_suspend = [sim, *others.values()]
                to_save.extend(others.values())
        else:
            copy = self._copy(sim)
            if copy is not None and not copy.depleted:
                to_save.append(copy)
                if copy.draw(sim.id, amount, when):
                    to_suspend = [sim]
        # The SIM's event comes after the draw it caused, so the SIM's version at that
        # moment covers the draw (sim_as_of, R-ES3).
        sim.record_usage(amount, when, country)
        self._suspend_for_package(to_suspend, "depleted")
        self.save(*to_save)

    @staticmethod
    def _suspend_for_package(sims: Iterable[Sim], cause: str) -> None:
        for sim in sims:
            # A SIM the user paused is paused by the system too, so that a plain resume
            # cannot bring it back without a package (R-SIM6); one already paused by the
            # system for an uncleared cause stays as it is.
            system_paused = sim.suspended_reason is SuspendReason.SYSTEM and not sim.cause_cleared
            if sim.status is SimStatus.ACTIVE or (
                sim.status is SimStatus.SUSPENDED and not system_paused
            ):
                sim.suspend_by_system(cause)

    @command
    def top_up(self, iccid: object, amount: float | int | Decimal) -> None:
        """Refill a prepaid SIM (R-SIM7): its copy gets the MB, and a SIM the system paused
        for an empty package works again."""
        mb = _mb(amount, rule="R-SIM7")
        sim = self._sim(iccid)
        copy = self._copy(sim)
        if copy is not None:
            copy.top_up(mb)  # before the SIM's event, as in record_usage (sim_as_of)
        sim.top_up(mb)
        to_save: list[LedgerAggregate] = [sim]
        if copy is not None:
            to_save.append(copy)
            if sim.paused_by_system_for_package and copy.is_active_at(self.clock()):
                sim.clear_system_pause(by="top-up")
                if not sim.user_paused:  # a pause by the user stays until the user resumes
                    sim.resume_by_system()
        self.save(*to_save)

    def expire_packages(self, now: datetime | None = None) -> ExpiryResult:
        """Deplete every copy and pool whose validity has ended by ``now`` (auto-renew copies
        start a new period instead); SIMs then active are paused by the system."""
        when = _aware(now, self.clock())
        depleted: list[str] = []
        renewed: list[str] = []
        candidates = self._expiry_candidates(when)
        for n, aggregate_id in enumerate(candidates, 1):
            outcome = self._expire_one(aggregate_id, when)
            if outcome == "depleted":
                depleted.append(aggregate_id)
            elif outcome == "renewed":
                renewed.append(aggregate_id)
            if n % 1000 == 0:
                log.info("expiry.progress", done=n, total=len(candidates))
        log.info("expiry.done", depleted=len(depleted), renewed=len(renewed))
        return ExpiryResult(depleted=depleted, renewed=renewed)

    def _expiry_candidates(self, now: datetime) -> list[str]:
        """Copies and pools whose recorded validity ends by ``now`` and are not depleted."""
        topics = {
            Package.Assigned: "start",
            Package.Renewed: "start",
            Package.ToppedUp: "topup",
            Package.Depleted: "end",
            SharedGroup.Created: "start",
            SharedGroup.Depleted: "end",
            SharedGroup.Deleted: "end",
        }
        by_topic = {get_topic(cls): role for cls, role in topics.items()}
        expires: dict[str, datetime] = {}
        live: dict[str, bool] = {}
        start = 1
        while True:
            batch = self.recorder.select_notifications(
                start=start, limit=1000, topics=list(by_topic)
            )
            if not batch:
                break
            for note in batch:
                role = by_topic[note.topic]
                key = str(note.originator_id)
                if role == "start":
                    expires[key] = cast(Any, self.mapper.to_domain_event(note)).expires_at
                live[key] = role != "end"
            start = batch[-1].id + 1
        # _expire_one re-checks each candidate on fresh state; this only narrows the search.
        return [k for k, at in expires.items() if live.get(k) and at <= now]

    @command
    def _expire_one(self, aggregate_id: str, now: datetime) -> str:
        aggregate = self._get(aggregate_id, LedgerAggregate)
        if isinstance(aggregate, Package):
            version = aggregate.version
            if aggregate.expire(now):
                sim = self._get(aggregate.iccid or "", Sim)
                to_save: list[LedgerAggregate] = [aggregate]
                if sim is not None and sim.copy_id == aggregate.id:
                    self._suspend_for_package([sim], "expired")
                    to_save.append(sim)
                self.save(*to_save)
                return "depleted"
            if aggregate.version != version:
                self.save(aggregate)
                return "renewed"
        elif isinstance(aggregate, SharedGroup) and aggregate.expire(now):
            members = self._sims(aggregate.members)
            self._suspend_for_package(members.values(), "expired")
            self.save(aggregate, *members.values())
            return "depleted"
        return "unchanged"

    # ---- shared groups (R-SG1..4) --------------------------------------------------------
    def _check_joinable(self, sim: Sim, now: datetime) -> None:
        if sim.group_id is not None:
            raise AlreadyInSharedGroup(
                f"SIM {sim.id} already belongs to shared group {sim.group_id}"
            )
        self._check_no_active_package(sim, now, rule="R-SG2")
        sim.check_can_take_package(Cmd.JOIN_SHARED_GROUP)

    @staticmethod
    def _join(sim: Sim, group: SharedGroup) -> None:
        # A fresh pool is a new package and clears the cause (R-SIM6); a depleted one (the
        # only kind that takes members after creation, R-SG3) brings no data, so it does not.
        if sim.paused_by_system_for_package and not group.depleted:
            sim.clear_system_pause(by="new package")
        sim.join_shared_group(group.id, group.package_id, group.package_name)

    @command
    def create_shared_group(
        self,
        name: str,
        iccids: Iterable[object],
        package_id: UUID | str,
        *,
        notify_users: bool = False,
    ) -> UUID:
        name = _text(name, "group name", rule="R-SG2")
        keys = list(dict.fromkeys(self._normalise_all(iccids)))
        if not keys:
            raise InvalidInput("a shared group needs at least one SIM", rule="R-SG2")
        package = self._catalogue_package(package_id)
        if package.auto_renew:
            raise AutoRenewNotAllowed(
                f"package {package.name} ({package.id}) renews automatically; a shared group "
                "needs a package without auto-renew"
            )
        now = self.clock()
        sims = self._sims(keys)
        for key in keys:
            if key not in sims:
                raise UnknownSim(key)
            self._check_joinable(sims[key], now)
        group_id = uuid.uuid4()
        group = SharedGroup.create(
            str(group_id),
            name=name,
            members=keys,
            package_id=package.id,
            package_name=package.name,
            data_mb=package.data_mb,
            validity_days=package.validity_days,
            now=now,
            notify_users=bool(notify_users),
        )
        for key in keys:
            self._join(sims[key], group)
        self.save(group, *sims.values())
        log.info("shared_group.created", group_id=str(group_id), members=len(keys))
        return group_id

    @command
    def add_to_shared_group(self, group_id: UUID | str, iccid: object) -> None:
        group = self._group(group_id)
        group.check_can_add()
        sim = self._sim(iccid)
        self._check_joinable(sim, self.clock())
        group.add_member(sim.id)
        self._join(sim, group)
        self.save(group, sim)

    @command
    def remove_from_shared_group(self, group_id: UUID | str, iccid: object) -> None:
        group = self._group(group_id)
        sim = self._sim(iccid)
        group.remove_member(sim.id)
        sim.leave_shared_group(group.id)
        self.save(group, sim)

    @command
    def delete_shared_group(
        self, group_id: UUID | str, *, move_to: UUID | str | None = None
    ) -> None:
        """R-SG4: move every SIM to ``move_to`` (the group stays, empty), or remove them all
        and delete the group. SIMs are never deleted."""
        group = self._group(group_id)
        if move_to is not None:
            target = self._group(move_to)
            if target.id == group.id:
                raise InvalidInput("cannot move a group's SIMs into the same group", rule="R-SG4")
            moved = group.move_members_to(target)
            sims = self._sims(moved)
            for sim in sims.values():
                self._join_moved(sim, target)
            self.save(group, target, *sims.values())
        else:
            removed = group.delete()
            sims = self._sims(removed)
            for sim in sims.values():
                sim.leave_shared_group(group.id)
            self.save(group, *sims.values())

    @staticmethod
    def _join_moved(sim: Sim, target: SharedGroup) -> None:
        sim.leave_shared_group(sim.group_id or "")
        SimLedger._join(sim, target)

    # ---- SIM swap and descriptive fields -------------------------------------------------
    @command
    def start_sim_swap(self, iccid: object) -> None:
        sim = self._sim(iccid)
        sim.start_sim_swap()
        self.save(sim)

    @command
    def complete_sim_swap(self, iccid: object) -> None:
        sim = self._sim(iccid)
        sim.complete_sim_swap()
        self.save(sim)

    @command
    def set_labels(self, iccid: object, labels: Iterable[str]) -> None:
        if isinstance(labels, str):
            raise InvalidInput("labels are a list of strings", rule="R-SIM2")
        clean = list(dict.fromkeys(_text(label, "label", rule="R-SIM2") for label in labels))
        for label in clean:
            if LABEL_SEPARATOR in label:
                raise InvalidInput(
                    f"a label cannot hold {LABEL_SEPARATOR!r}, which separates labels in CSV "
                    f"exports: {label!r}",
                    rule="R-SIM2",
                )
        sim = self._sim(iccid)
        sim.set_labels(clean)
        self.save(sim)

    @command
    def set_note(self, iccid: object, note: str | None) -> None:
        if note is not None and not isinstance(note, str):
            raise InvalidInput(f"a note is text: {note!r}", rule="R-SIM2")
        sim = self._sim(iccid)
        sim.set_note(note)
        self.save(sim)

    @command
    def set_end_user(self, iccid: object, email: str | None) -> None:
        if email is not None and (not isinstance(email, str) or not _EMAIL.match(email.strip())):
            raise InvalidInput(f"the end user is an e-mail address: {email!r}", rule="R-SIM2")
        sim = self._sim(iccid)
        sim.set_end_user(email.strip() if email else None)
        self.save(sim)

    # ---- queries --------------------------------------------------------------------------
    def sim(self, iccid: object) -> SimView:
        sim = self._sim(iccid)
        copy = self._copy(sim)
        group = self._get(sim.group_id, SharedGroup) if sim.group_id else None
        return self._view(sim, copy, group, self.clock())

    def sim_as_of(
        self, iccid: object, *, at: datetime | None = None, version: int | None = None
    ) -> SimView:
        """The SIM as it was at time ``at`` or at its own ``version`` (R-ES3)."""
        key = normalise_iccid(iccid)
        sim, copy, group, when = sim_state_as_of(self, key, at=at, version=version)
        return self._view(sim, copy, group, when)

    def history(self, iccid: object) -> list[HistoryEntry]:
        """Every event that touched the SIM, from any aggregate, oldest first."""
        return sim_history(self, self._sim(iccid))

    def verify_store(
        self, *, views: bool = True, view_names: Sequence[str] | None = None
    ) -> VerifyReport:
        """Replay the whole store: every aggregate rebuilds, every hash chain holds, every
        pool equals the usage drawn from it, every view equals its rebuild (audit.py)."""
        from simledger.application.audit import verify_store

        return verify_store(self, views=views, view_names=view_names)

    def shared_group(self, group_id: UUID | str) -> SharedGroupView:
        key = _uuid(group_id, UnknownGroup)
        group = self._get(key, SharedGroup)
        if group is None:
            raise UnknownGroup(group_id)
        return SharedGroupView(
            group_id=UUID(group.id),
            name=group.name,
            members=list(group.members),
            package_id=UUID(group.package_id),
            data_mb=group.data_mb,
            data_left_mb=Decimal(0) if group.depleted else group.data_left_mb,
            expires_at=group.expires_at,
            locked=group.locked,
            depleted=group.depleted,
            deleted=group.deleted,
            notify_users=group.notify_users,
            version=group.version,
        )

    @staticmethod
    def _view(sim: Sim, copy: Package | None, group: SharedGroup | None, now: datetime) -> SimView:
        data_left: Decimal | None = None
        expires_at: datetime | None = None
        # A depleted package has nothing left to use, whatever its last balance was.
        if group is not None:
            data_left = Decimal(0) if group.depleted else group.data_left_mb
            expires_at = group.expires_at
        elif copy is not None:
            data_left = Decimal(0) if copy.depleted else copy.data_left_mb
            expires_at = copy.expires_at
        days_left = None
        if expires_at is not None:
            days_left = max(0, (expires_at - now).days + (1 if (expires_at - now).seconds else 0))
        month = now.strftime("%Y-%m")
        return SimView(
            iccid=sim.id,
            status=sim.status,
            sim_type=sim.sim_type,
            operator=sim.operator,
            esim=sim.esim,
            activation_code=sim.activation_code,
            msisdn=sim.msisdn,
            company=sim.company,
            store_use=sim.store_use,
            end_user=sim.end_user,
            note=sim.note,
            labels=list(sim.labels),
            package_id=UUID(sim.package_id) if sim.package_id else None,
            copy_id=UUID(sim.copy_id) if sim.copy_id else None,
            plan=sim.plan,
            group_id=UUID(sim.group_id) if sim.group_id else None,
            data_left_mb=data_left,
            expires_at=expires_at,
            days_left=days_left,
            this_month_mb=sim.usage_month_mb if sim.usage_month == month else Decimal(0),
            suspended_reason=SuspendReason(sim.suspended_reason) if sim.suspended_reason else None,
            system_cause=sim.system_cause,
            cause_cleared=sim.cause_cleared,
            operation_in_flight=dict(sim.in_flight) if sim.in_flight else None,
            order_id=UUID(sim.order_id) if sim.order_id else None,
            service=sim.service,
            customer_service_id=UUID(sim.customer_service_id) if sim.customer_service_id else None,
            version=sim.version,
            updated_at=sim.modified_on,
        )
