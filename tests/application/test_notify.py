"""Notify users (R-NT1) through a real SMTP server on 127.0.0.1 (aiosmtpd, started here), on
SQLite and PostgreSQL: one e-mail per notice (a package assigned to a SIM with an end user's
e-mail; a shared group created with notify_users), none for SIMs without an e-mail or groups
without the flag, none again after a crash at any step and a restart, and the SIM's history
says the notice was sent. The last step runs ``simledger deliver`` as a process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from helpers import clean_env
from http_serve import free_port

from simledger import SimLedger
from simledger.adapters.mail_smtp import SmtpMailer, SmtpSettings
from simledger.application.notify import Notifier, masked
from simledger.domain.iccid import make_iccid


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Crash(Exception):
    pass


def test_one_mail_per_notice_across_crashes(
    persistent_store_env: dict[str, str], smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    inbox.mails.clear()
    settings = SmtpSettings(host="127.0.0.1", port=port, sender="noc@example.com")
    ledger = SimLedger(env=persistent_store_env)
    sims = [make_iccid(f"8936{n:015d}") for n in range(8)]
    ledger.receive_sims(sims, operator="op", sim_type="prepaid")
    for n, iccid in enumerate(sims):
        ledger.complete_integration_check(iccid, ok=True)
        if n not in (2, 3):  # sims[2] and sims[3] have no end user
            ledger.set_end_user(iccid, f"user{n}@example.com")
    package = ledger.create_package("Travel 5", data_mb=5000, validity_days=30)
    try:
        ledger.assign_package(sims[0], package)  # mail
        ledger.assign_package(sims[2], package)  # no e-mail address: none
        ledger.create_shared_group("team", [sims[1], sims[3]], package, notify_users=True)
        ledger.create_shared_group("quiet", [sims[4]], package)  # no notify_users: none

        # Crash after queueing, before anything is sent: the next notifier sends each once.
        assert Notifier(ledger, None).run_once().queued == 2
        stats = Notifier(ledger, SmtpMailer(settings)).run_once()
        assert (stats.queued, stats.sent) == (0, 2)
        assert sorted(m["To"] for m in inbox.mails) == ["user0@example.com", "user1@example.com"]
        mail = next(m for m in inbox.mails if m["To"] == "user0@example.com")
        text = mail.get_payload()
        assert isinstance(text, str)
        assert "Travel 5" in mail["Subject"] and masked(sims[0]) in text
        assert sims[0] not in text and "5000 MB" in text and "30 days" in text
        assert "team" in next(m for m in inbox.mails if m["To"] == "user1@example.com")[
            "Subject"
        ] + (str(next(m for m in inbox.mails if m["To"] == "user1@example.com").get_payload()))
        assert [e.event for e in ledger.history(sims[0])].count("UserNotified") == 1
        assert "UserNotified" not in [e.event for e in ledger.history(sims[2])]

        # Crash after the mail and the SIM's event, before the outbox mark: nothing again.
        ledger.assign_package(sims[5], ledger.create_package("Extra", data_mb=1, validity_days=1))
        crashing = Notifier(ledger, SmtpMailer(settings))

        def crash(*args: object) -> None:
            raise Crash

        crashing.outbox.mark_sent = crash  # type: ignore[method-assign,assignment]
        with pytest.raises(Crash):
            crashing.run_once()
        assert len(inbox.mails) == 3
        assert Notifier(ledger, SmtpMailer(settings)).run_once().sent == 1  # marked, not mailed
        assert len(inbox.mails) == 3
        assert Notifier(ledger, SmtpMailer(settings)).run_once().sent == 0

        # A mail server away: the notice waits, then goes once.
        ledger.assign_package(sims[6], ledger.create_package("Later", data_mb=1, validity_days=1))
        away = SmtpSettings(host="127.0.0.1", port=free_port(), sender="noc@example.com")
        assert Notifier(ledger, SmtpMailer(away)).run_once().failed == 1
    finally:
        ledger.close()

    # `simledger deliver` as a process sends the waiting notice, once.
    env = {
        **persistent_store_env,
        "SIMLEDGER_SMTP_HOST": "127.0.0.1",
        "SIMLEDGER_SMTP_PORT": str(port),
    }
    done = subprocess.run(
        [sys.executable, "-P", "-m", "simledger.runners.deliver", "--until-idle"],
        env=clean_env(env),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert [m["To"] for m in inbox.mails].count("user6@example.com") == 1
    again = SimLedger(env=persistent_store_env)
    try:
        assert Notifier(again, SmtpMailer(settings)).run_once().sent == 0
    finally:
        again.close()
    assert len(inbox.mails) == 4
