"""Typed refusals. Every error names the rule of docs/rules.md that refused the command."""

from __future__ import annotations

from collections.abc import Mapping

SHOWN_AT_MOST = 60
"""Characters of a refused value an error message shows: a refusal of a 100 KB string
must not be a 100 KB message (nor an event recording it)."""


def shown(value: object) -> str:
    """``repr(value)`` for a message, cut to :data:`SHOWN_AT_MOST` characters; never raises
    (the repr of an int above 4,300 digits does, and a caller's object may)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:
        return f"<a {type(value).__name__}>"
    if len(text) <= SHOWN_AT_MOST:
        return text
    return f"{text[: SHOWN_AT_MOST - 1]}… ({len(text)} characters)"


class SimledgerError(Exception):
    """Base of every refusal. ``rule`` holds the id of the rule that refused it."""

    rule: str = "R-ES2"

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        if rule is not None:
            self.rule = rule
        super().__init__(f"{self.rule}: {message}")
        self.message = message


class InvalidIccid(SimledgerError):
    rule = "R-SIM1"

    def __init__(self, iccid: object, reason: str) -> None:
        self.iccid = iccid
        self.reason = reason
        super().__init__(f"invalid ICCID {shown(iccid)}: {reason}")


class SimAlreadyExists(SimledgerError):
    rule = "R-SIM1"

    def __init__(self, iccids: list[str]) -> None:
        self.iccids = iccids
        shown = ", ".join(iccids[:5]) + (" …" if len(iccids) > 5 else "")
        super().__init__(f"{len(iccids)} SIM(s) already received: {shown}")


class UnknownSim(SimledgerError):
    rule = "R-SIM1"

    def __init__(self, iccid: str) -> None:
        self.iccid = iccid
        super().__init__(f"no SIM with ICCID {iccid}")


class SimNotYetReceived(UnknownSim):
    """A SIM asked about as of a moment before it was received: it exists, but did not
    then (R-ES3)."""

    rule = "R-ES3"

    def __init__(self, iccid: str, at: object, received: object) -> None:
        SimledgerError.__init__(
            self, f"SIM {iccid} did not exist yet at {at}; it was received at {received}"
        )
        self.iccid = iccid


class IllegalTransition(SimledgerError):
    rule = "R-SIM4"

    def __init__(self, iccid: str, status: str | None, command: str, detail: str = "") -> None:
        self.iccid = iccid
        self.status = status
        self.command = command
        extra = f" ({detail})" if detail else ""
        super().__init__(f"SIM {iccid} in status {status!s} does not allow {command}{extra}")


class InvalidInput(SimledgerError):
    """A value outside what the rule allows (negative MB, empty name, bad e-mail, …)."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message, rule=rule)


class InvalidValue(InvalidInput):
    """A value outside the domain of values every input shares (docs/rules.md, "Input
    values"): text too long or holding control characters, a number of the wrong type, not
    finite or out of range, a time without a zone or beyond the representable years, a
    collection that is not one. ``rule`` is one of R-IN1..4."""


class NotActivationReady(SimledgerError):
    rule = "R-SIM5"


class SystemPauseNotCleared(SimledgerError):
    rule = "R-SIM6"

    def __init__(self, iccid: str, cause: str | None) -> None:
        self.iccid = iccid
        super().__init__(
            f"SIM {iccid} was paused by the system ({cause}); clear the cause first "
            "(new package, top-up or clear_system_pause)"
        )


class NotPrepaid(SimledgerError):
    rule = "R-SIM7"


class UnknownPackage(SimledgerError):
    rule = "R-PK1"

    def __init__(self, package_id: object) -> None:
        self.package_id = package_id
        super().__init__(f"no package {package_id}")


class PackageStillActive(SimledgerError):
    rule = "R-PK3"


class AutoRenewNotAllowed(SimledgerError):
    rule = "R-SG2"


class AlreadyInSharedGroup(SimledgerError):
    rule = "R-SG2"


class SharedGroupLocked(SimledgerError):
    rule = "R-SG3"


class UnknownGroup(SimledgerError):
    rule = "R-SG4"

    def __init__(self, group_id: object, detail: str = "") -> None:
        self.group_id = group_id
        super().__init__(f"no shared group {group_id}{detail}")


class NotAMember(SimledgerError):
    rule = "R-SG1"


class BulkLimitExceeded(SimledgerError):
    rule = "R-BK1"


class OperationInFlight(SimledgerError):
    rule = "R-BK6"


class NoOperationInFlight(SimledgerError):
    rule = "R-BK3"


class UnknownOperation(SimledgerError):
    """No bulk operation has this id (the HTTP service's ``/v1/operations/{id}``)."""

    rule = "R-BK3"

    def __init__(self, operation_id: object) -> None:
        self.operation_id = operation_id
        super().__init__(f"no bulk operation {operation_id}")


class OrderQuantityInvalid(SimledgerError):
    rule = "R-PF1"


class UnknownOrder(SimledgerError):
    rule = "R-PF1"


class UnknownCustomerService(SimledgerError):
    rule = "R-PF2"


class HoldingServiceNotMigrated(SimledgerError):
    rule = "R-PF3"


class ConcurrencyConflict(SimledgerError):
    """A command kept colliding with concurrent writers and was given up; nothing recorded."""

    rule = "R-ES1"


class CsvImportError(SimledgerError):
    """An import file with bad rows; ``errors`` maps line number (header = 1) → reason."""

    rule = "R-IO1"

    def __init__(self, errors: Mapping[int, str]) -> None:
        self.errors = dict(sorted(errors.items()))
        first = "; ".join(f"line {n}: {r}" for n, r in list(self.errors.items())[:3])
        super().__init__(f"{len(self.errors)} bad row(s), nothing imported: {first}")


class StoreUnreadable(SimledgerError):
    """Stored events that cannot be decoded with this ledger's settings: most often a
    store encrypted at rest opened without its ``CIPHER_KEY`` (or with another key), or a
    plain store opened with one. The message says which."""

    rule = "R-ES3"


class TamperedEvent(StoreUnreadable):
    """A stored event that this ledger's settings should read but that does not decode,
    decodes to the wrong fields or does not apply to its aggregate: it was altered in the
    database (R-ES1). ``aggregate_id``, ``version`` and ``notification_id`` (None when not
    known) name it."""

    rule = "R-ES1"

    def __init__(
        self,
        aggregate_id: str,
        version: int,
        reason: str,
        *,
        topic: str = "",
        notification_id: int | None = None,
    ) -> None:
        self.aggregate_id = aggregate_id
        self.version = version
        self.notification_id = notification_id
        self.reason = reason
        name = topic.rpartition(":")[2] or "event"
        at = f", notification {notification_id}" if notification_id is not None else ""
        super().__init__(
            f"stored {name} of {aggregate_id} (version {version}{at}) {reason}: "
            "it was altered in the store"
        )


class StoreUnreachable(SimledgerError):
    """The event store's database cannot be reached with the settings given (no such
    database or role, a bad port, nothing listening, a wrong password); the message holds
    the server's own reason."""

    rule = "R-ES4"


class UnknownKey(SimledgerError):
    """No API key has this id (``ledger.keys.revoke``)."""

    rule = "R-KY2"

    def __init__(self, key_id: object) -> None:
        self.key_id = key_id
        super().__init__(f"no API key {shown(key_id)}")


class UnknownRule(SimledgerError):
    """The SIM has no rule of this name (``detach_rule``)."""

    rule = "R-RU2"

    def __init__(self, iccid: str, name: str) -> None:
        self.iccid = iccid
        self.name = name
        super().__init__(f"SIM {iccid} has no rule {shown(name)}")


class PausedByRule(SimledgerError):
    """A usage record of a SIM its rule paused, from the moment of the pause on (R-RU3)."""

    rule = "R-RU3"

    def __init__(self, iccid: str, name: str) -> None:
        self.iccid = iccid
        self.name = name
        super().__init__(
            f"SIM {iccid} was paused by its rule {shown(name)}: it uses no data until the "
            "cause is cleared (the rule detached or raised, a new month, clear_system_pause)"
        )


class UnknownWebhook(SimledgerError):
    """No webhook subscription has this id, or it is another company's (R-WH2: the same
    answer either way, so a company learns nothing of another's subscriptions)."""

    rule = "R-WH2"

    def __init__(self, webhook_id: object) -> None:
        self.webhook_id = webhook_id
        super().__init__(f"no webhook subscription {shown(webhook_id)}")


class UnknownRegularGroup(SimledgerError):
    """No regular group has this id, or it was deleted (R-RG1)."""

    rule = "R-RG1"

    def __init__(self, group_id: object, detail: str = "") -> None:
        self.group_id = group_id
        super().__init__(f"no regular group {shown(group_id)}{detail}")


class RegularGroupMembership(SimledgerError):
    """A SIM added to a regular group it is in already, or removed from one it is not in,
    or of another company than the group's (R-RG2)."""

    rule = "R-RG2"
