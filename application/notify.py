"""Notify users (R-NT1): when a SIM whose end user has an e-mail gets a package — assigned to
it, or shared with it as a member of a shared group created with ``notify_users`` — the end
user receives one e-mail, and the SIM's history says it was sent (``Sim.UserNotified``).

Two steps, each exactly once across crashes:

* **Queue.** The notifier follows the log (``PackageAssigned`` and ``PackageShared`` events
  only) from its own position and writes each notice into the outbox together with the new
  position, in ONE transaction (adapters/store/mail_outbox.py). A notice's id is derived from
  the event that caused it, so reading an event again queues nothing new.
* **Send.** Each unsent notice goes to the SMTP server (adapters/mail_smtp.py), then the SIM
  records ``UserNotified`` (naming the notice), then the outbox marks it sent. A notice whose
  SIM already records it is marked sent without a mail: a crash after the event and before
  the mark sends nothing twice. The one window SMTP leaves — the server took the mail and the
  process died before the event was saved — sends it again, with the same ``Message-ID``.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from eventsourcing.utils import get_topic

from simledger.adapters.logs import get_logger
from simledger.adapters.store.mail_outbox import Notice, SqlOutbox, outbox_for
from simledger.application.event_sourced import create_tables_retrying
from simledger.application.ledger import SimLedger
from simledger.application.service_reads import store_position
from simledger.application.unit_of_work import command
from simledger.domain.errors import InvalidInput
from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim

log = get_logger("simledger.notify")

TOPICS = [get_topic(Sim.PackageAssigned), get_topic(Sim.PackageShared)]
NAME = "notify-users"
PAGE = 500
NOTICE_NAMESPACE = uuid.UUID("5f0d8a3e-6f1c-4d8e-9a53-7c2b1f0e4a11")


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str, message_id: str) -> None: ...


def masked(iccid: str) -> str:
    """The ICCID as an e-mail shows it: its first and last four digits."""
    return iccid[:4] + "*" * max(0, len(iccid) - 8) + iccid[-4:]


def _mb(value: Decimal | int | float) -> str:
    amount = Decimal(str(value)).normalize()
    return f"{amount:f}"


def render(
    iccid: str, package: str, data_mb: Any, validity: str, group: str | None
) -> tuple[str, str]:
    """The notice's subject and text (R-NT1: the package, its allowance and validity, the
    ICCID masked)."""
    sim = masked(iccid)
    subject = f"Your SIM {sim} has a new package: {package}"
    shared = f", shared with the group {group}" if group else ""
    body = (
        "Hello,\n\n"
        f"your SIM {sim} now has the package {package}{shared}.\n"
        f"Allowance: {_mb(data_mb)} MB\n"
        f"Validity: {validity}\n\n"
        "This message was sent because your address is recorded for this SIM.\n"
    )
    return subject, body


@dataclass
class NotifyStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0


class Notifier:
    """Queues and sends the notices of ``ledger``'s store (``mailer`` None: queue only)."""

    def __init__(
        self,
        ledger: SimLedger,
        mailer: Mailer | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.mailer = mailer
        self.clock = clock
        outbox = create_tables_retrying(lambda: outbox_for(ledger.recorder))
        if outbox is None:
            raise InvalidInput("notify users needs a SQLite or PostgreSQL store", rule="R-NT1")
        self.outbox: SqlOutbox = outbox

    def run_once(self) -> NotifyStats:
        stats = NotifyStats()
        self.queue_new(stats)
        if self.mailer is not None:
            self.send_queued(stats)
        return stats

    def queue_new(self, stats: NotifyStats) -> None:
        position = self.outbox.position(NAME)
        last = store_position(self.ledger)
        while position < last:
            notes = self.ledger.recorder.select_notifications(
                start=position, limit=PAGE, stop=last, topics=TOPICS, inclusive_of_start=False
            )
            notices = [n for n in (self._notice(note) for note in notes) if n is not None]
            position = notes[-1].id if len(notes) == PAGE else last
            self.outbox.queue(notices, NAME, position)
            stats.queued += len(notices)

    def _notice(self, note: Any) -> Notice | None:
        event: Any = self.ledger.mapper.to_domain_event(note)
        uow = self.ledger.unit_of_work
        sim = uow.get(str(event.originator_id), Sim)
        if sim is None or not sim.end_user:
            return None
        if isinstance(event, Sim.PackageShared):
            group = uow.get(event.group_id, SharedGroup)
            if group is None or not group.notify_users:
                return None
            expires = group.expires_at
            validity = f"until {expires:%Y-%m-%d}" if expires else "as the group's"
            subject, body = render(sim.id, group.package_name, group.data_mb, validity, group.name)
        else:
            copy = uow.get(event.copy_id, Package)
            if copy is None:
                return None
            validity = f"{copy.validity_days} days"
            if copy.expires_at is not None:
                validity += f" (until {copy.expires_at:%Y-%m-%d})"
            subject, body = render(sim.id, copy.name, copy.data_mb, validity, None)
        notice_id = str(uuid.uuid5(NOTICE_NAMESPACE, f"{sim.id}/{event.originator_version}"))
        return Notice(
            id=notice_id,
            iccid=sim.id,
            to_addr=sim.end_user,
            subject=subject,
            body=body,
            position=int(note.id),
            queued_at=self.clock().astimezone(UTC).isoformat(),
            sent_at=None,
        )

    def send_queued(self, stats: NotifyStats) -> None:
        assert self.mailer is not None
        for notice in self.outbox.unsent(100):
            if not self._recorded(notice):
                try:
                    self.mailer.send(notice.to_addr, notice.subject, notice.body, notice.id)
                except (OSError, smtplib.SMTPException) as error:
                    stats.failed += 1
                    log.warning("notify.send_failed", notice=notice.id, error=str(error)[:200])
                    return  # the server is away: the rest waits for the next round
                self._record(notice)
            self.outbox.mark_sent(notice.id, self.clock().astimezone(UTC).isoformat())
            stats.sent += 1

    def _recorded(self, notice: Notice) -> bool:
        return any(
            isinstance(e, Sim.UserNotified) and e.notice_id == notice.id
            for e in self.ledger.events.get(notice.iccid)
        )

    @command
    def _record(self, notice: Notice) -> None:
        uow = self.ledger.unit_of_work
        sim = uow.sim(notice.iccid)
        sim.trigger_event(Sim.UserNotified, notice_id=notice.id, subject=notice.subject)
        uow.save(sim)
