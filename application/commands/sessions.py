"""Carrier session records (R-SS1, R-SS2): ``session_started`` / ``session_ended``, each
counted once however often it is delivered, as usage records are (R-US1).

A batch is one command: its records are checked, the receipts already stored are looked
up (a record whose id has one is a duplicate), each SIM is loaded once, the records are
applied in time order (``at``, then ``record_id``) and every SIM changed is saved with
the new receipts in ONE transaction. A concurrent writer that saved one of the receipts
first makes the save fail whole, and :func:`command` decides the batch again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simledger.application.commands.base import Commands
from simledger.application.results import SessionResult
from simledger.application.unit_of_work import command
from simledger.domain import values
from simledger.domain.base import LedgerAggregate
from simledger.domain.errors import InvalidInput, SimledgerError, UnknownSim
from simledger.domain.session import (
    SessionKind,
    SessionReceipt,
    report_session,
    session_receipt_id,
)

RULE = "R-SS1"


@dataclass(frozen=True)
class _Record:
    record_id: str
    iccid: str
    kind: SessionKind
    at: datetime


def _field(raw: object, name: str) -> Any:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"a session record is a mapping, not {type(raw).__name__}", rule=RULE)
    return raw.get(name)


def _checked(raw: object, record_id: str, normalise: Any) -> _Record:
    kind = _field(raw, "kind")
    try:
        which = SessionKind(str(kind).removeprefix("session_"))
    except ValueError:
        raise InvalidInput(
            f"a session record's kind is started or ended (session_started, "
            f"session_ended), not {kind!r}",
            rule=RULE,
        ) from None
    iccid = normalise(_field(raw, "iccid"))
    at = _field(raw, "at")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.strip())
        except ValueError:
            raise InvalidInput(f"not an ISO 8601 time: {at!r}", rule=RULE) from None
    if not isinstance(at, datetime):
        raise InvalidInput(f"a session record needs its time 'at', got {at!r}", rule=RULE)
    return _Record(record_id, iccid, which, values.event_time(at, at))


class SessionCommands(Commands):
    """The session records."""

    def record_sessions(self, records: Iterable[Mapping[str, Any]]) -> SessionResult:
        """Apply session records (mappings of ``record_id``, ``iccid``, ``kind``:
        ``started`` / ``ended``, ``at``) in one transaction. A record whose ``record_id`` was
        counted before, or earlier in the batch, is a duplicate and changes nothing; a bad
        record is listed in ``rejected`` with the reason (R-SS1); a SIM shows the state of
        its latest record by ``at`` (R-SS2)."""
        applied, duplicates, rejected = self._apply(records)
        return SessionResult(
            applied=applied,
            duplicates=duplicates,
            rejected={key: str(error) for key, error in rejected.items()},
        )

    @command
    def _apply(
        self, records: Iterable[Mapping[str, Any]]
    ) -> tuple[int, int, dict[str, SimledgerError]]:
        rejected: dict[str, SimledgerError] = {}
        good: list[_Record] = []
        seen: set[str] = set()
        duplicates = 0
        items = values.collection(records, "session records")
        for position, raw in enumerate(items, 1):
            try:
                record_id = values.text(
                    _field(raw, "record_id"), "a session record's record_id", rule=RULE
                )
            except SimledgerError as error:
                rejected[f"#{position}"] = error
                continue
            if record_id in seen:
                duplicates += 1
                continue
            seen.add(record_id)
            try:
                good.append(_checked(raw, record_id, self.uow.iccid))
            except SimledgerError as error:
                rejected[record_id] = error
        stored = set(self.uow.existing([session_receipt_id(r.record_id) for r in good]))
        fresh = [r for r in good if session_receipt_id(r.record_id) not in stored]
        duplicates += len(good) - len(fresh)
        sims = self.uow.sims(list(dict.fromkeys(r.iccid for r in fresh)))
        changed: dict[str, LedgerAggregate] = {}
        receipts: list[LedgerAggregate] = []
        for record in sorted(fresh, key=lambda r: (r.at, r.record_id)):
            sim = sims.get(record.iccid)
            try:
                if sim is None:
                    raise UnknownSim(record.iccid)
                report_session(sim, record.record_id, record.kind, record.at)
            except SimledgerError as error:
                rejected[record.record_id] = error
                continue
            changed[sim.id] = sim
            receipts.append(SessionReceipt.issue(record.record_id, sim.id, record.kind, record.at))
        if receipts:
            self.uow.save_owned([*changed.values(), *receipts])
        return len(receipts), duplicates, rejected

    def record_session(
        self, record_id: str, iccid: object, kind: str, *, at: datetime | None = None
    ) -> bool:
        """One session record: a batch of one whose refusal is raised. True when counted,
        False when its ``record_id`` was counted before."""
        when = values.event_time(at, self.clock())
        applied, _, rejected = self._apply(
            [{"record_id": record_id, "iccid": iccid, "kind": kind, "at": when}]
        )
        for error in rejected.values():
            raise error
        return applied == 1
