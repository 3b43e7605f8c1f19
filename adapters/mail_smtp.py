"""E-mail out through an SMTP server (the notices of "notify users", application/notify.py).

Settings in the environment: ``SIMLEDGER_SMTP_HOST`` (none: no e-mail is sent and the
notices wait in the outbox), ``SIMLEDGER_SMTP_PORT`` (25), ``SIMLEDGER_SMTP_FROM``
(``simledger@localhost``), ``SIMLEDGER_SMTP_USER`` / ``SIMLEDGER_SMTP_PASSWORD`` (login when
given), ``SIMLEDGER_SMTP_STARTTLS`` (``1``: STARTTLS before the login)."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "simledger@localhost"
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings | None:
        host = env.get("SIMLEDGER_SMTP_HOST", "").strip()
        if not host:
            return None
        return cls(
            host=host,
            port=int(env.get("SIMLEDGER_SMTP_PORT", "25") or 25),
            sender=env.get("SIMLEDGER_SMTP_FROM", "") or "simledger@localhost",
            user=env.get("SIMLEDGER_SMTP_USER") or None,
            password=env.get("SIMLEDGER_SMTP_PASSWORD") or None,
            starttls=env.get("SIMLEDGER_SMTP_STARTTLS", "") in ("1", "true", "yes"),
        )


class SmtpMailer:
    """Sends one message per call (a connection each: notices are few)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        """Raises ``smtplib.SMTPException`` or ``OSError`` when the server did not take it."""
        s = self.settings
        message = EmailMessage()
        message["From"] = s.sender
        message["To"] = to
        message["Subject"] = subject
        # The notice's id: a copy sent again after a crash is recognisably the same message.
        message["Message-ID"] = f"<{message_id}@simledger>"
        message.set_content(body)
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.user:
                smtp.login(s.user, s.password or "")
            smtp.send_message(message)
