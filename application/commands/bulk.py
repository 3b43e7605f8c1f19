"""Bulk pause and resume, and the carriers' answers (R-BK1..3, R-BK6).

A request over up to :data:`BULK_LIMIT` SIMs is decided and saved whole in one transaction
(``UnitOfWork.on_sims``); an idempotency key makes a repeated request answer as the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from uuid import UUID

from simledger.adapters.logs import get_logger
from simledger.application.commands.base import Commands
from simledger.application.results import BulkResult, ConfirmResult
from simledger.application.unit_of_work import Decision, UnitOfWork, command, without_gc
from simledger.domain import values
from simledger.domain.bulk import BULK_LIMIT, BulkOperation
from simledger.domain.errors import (
    BulkLimitExceeded,
    InvalidInput,
    InvalidValue,
    NoOperationInFlight,
    SimledgerError,
    UnknownSim,
    shown,
)
from simledger.domain.iccid import normalise_iccid
from simledger.domain.sim import Sim
from simledger.domain.types import OperationKind
from simledger.domain.values import NOTE_MAX

log = get_logger("simledger")

IDEMPOTENCY_NAMESPACE = UUID("5d1e7c56-3f0e-4f51-9a43-7a4c2b0f6a11")
"""Operation ids of requests with an idempotency key: uuid5 of the key in this namespace."""


class BulkCommands(Commands):
    """``carrier_deadline``: how long the carriers have to answer a request."""

    def __init__(
        self, uow: UnitOfWork, *, clock: Callable[[], datetime], carrier_deadline: timedelta
    ) -> None:
        super().__init__(uow, clock=clock)
        self.carrier_deadline = carrier_deadline

    def pause(self, iccids: Iterable[object], *, idempotency_key: str | None = None) -> BulkResult:
        return self.request(OperationKind.PAUSE, iccids, idempotency_key)

    def resume(self, iccids: Iterable[object], *, idempotency_key: str | None = None) -> BulkResult:
        return self.request(OperationKind.RESUME, iccids, idempotency_key)

    @command
    @without_gc
    def request(
        self, kind: OperationKind, iccids: Iterable[object], idempotency_key: str | None
    ) -> BulkResult:
        """A pause or resume of ``iccids``, each accepted or refused with its reason."""
        if isinstance(iccids, str):
            raise InvalidInput("pass a list of ICCIDs, not one string", rule="R-BK1")
        requested = values.distinct(values.collection(iccids, "ICCIDs"), "ICCIDs")
        if len(requested) > BULK_LIMIT:
            raise BulkLimitExceeded(
                f"{len(requested)} SIMs in one {kind.value} request; at most {BULK_LIMIT}"
            )
        if idempotency_key is not None:
            key = values.text(idempotency_key, "idempotency key", rule="R-BK6")
            idempotency_key = key
            op_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, key))
            earlier = self.uow.get(op_id, BulkOperation)
            if earlier is not None:
                return _replay_answer(earlier, kind, requested)
        else:
            op_id = str(uuid.uuid4())
        now = self.clock()
        deadline = now + self.carrier_deadline
        rejected: dict[str, str] = {}
        keys: list[str] = []
        for raw in requested:
            try:
                keys.append(self.uow.iccid(raw))
            except SimledgerError as error:
                rejected[values.item_key(raw)] = str(error)
        keys = list(dict.fromkeys(keys))

        def decide(sims: Mapping[str, Sim]) -> Decision[BulkResult]:
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
            return Decision(answer, changed, refused, [operation])

        result = self.uow.on_sims(keys, decide)
        log.info(
            "bulk.requested",
            kind=kind.value,
            operation_id=op_id,
            accepted=len(result.accepted),
            rejected=len(result.rejected),
        )
        return result

    @command
    def confirm(
        self, operation_id: UUID | str, iccid: object, *, ok: bool = True, reason: str | None = None
    ) -> None:
        """A carrier's answer for one SIM; only then does its status change (R-BK3)."""
        op = _operation_key(operation_id)
        passed = values.flag(ok, "ok")
        why = values.optional_text(reason, "a reason", limit=NOTE_MAX)
        sim = self.uow.sim(iccid)
        sim.confirm_operation(op, ok=passed, reason=why)
        self.uow.save(sim)

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
        op = _operation_key(operation_id)
        pairs = (
            list(answers.items())
            if isinstance(answers, Mapping)
            else values.collection(answers, "answers")
        )
        if len(pairs) > BULK_LIMIT:
            raise BulkLimitExceeded(f"{len(pairs)} answers in one call; at most {BULK_LIMIT}")
        skipped: dict[str, str] = {}
        wanted: dict[str, tuple[bool, str | None]] = {}
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or not 2 <= len(pair) <= 3:
                raise InvalidValue(
                    f"an answer is (iccid, ok) or (iccid, ok, reason), not {shown(pair)}",
                    rule="R-IN4",
                )
            raw, ok, *reason = pair
            passed = values.flag(ok, "ok")
            why = values.optional_text(reason[0] if reason else None, "a reason", limit=NOTE_MAX)
            try:
                wanted[self.uow.iccid(raw)] = (passed, why)
            except SimledgerError as error:
                skipped[values.item_key(raw)] = str(error)

        def decide(sims: Mapping[str, Sim]) -> Decision[ConfirmResult]:
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
            return Decision(answer, changed, refused)

        return self.uow.on_sims(list(wanted), decide)


def _replay_answer(
    earlier: BulkOperation, kind: OperationKind, requested: list[object]
) -> BulkResult:
    """The answer of the first request with the same idempotency key (R-BK6), if this one
    asks the same."""
    first = set(earlier.accepted) | set(earlier.rejected)
    again: set[str] = set()
    for raw in requested:
        try:
            again.add(normalise_iccid(raw))
        except SimledgerError:
            again.add(values.item_key(raw))
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


def _operation_key(operation_id: object) -> str:
    """A bulk operation's id as its text; what is not a UUID names no operation (R-BK3)."""
    return values.uuid_text(
        operation_id, lambda v: NoOperationInFlight(f"no operation {v} waiting for a carrier")
    )
