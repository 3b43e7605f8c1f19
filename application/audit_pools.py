"""The audit's pool checks (application/audit.py): a shared group's pool and each package
copy's, event by event and at the end of the replay."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from simledger.domain.package import Package
from simledger.domain.shared_group import SharedGroup


class PoolTally(Protocol):
    """What the replay keeps of a pool: the aggregate so far, MB drawn and credited."""

    aggregate: Any
    drawn: Decimal
    credit: Decimal


_POOL_EVENTS = (
    SharedGroup.Created,
    SharedGroup.UsageDrawn,
    SharedGroup.Depleted,
    Package.Assigned,
    Package.Renewed,
    Package.ToppedUp,
    Package.UsageDrawn,
    Package.Depleted,
)
_touches: dict[type[Any], bool] = {}


def _touches_pool(cls: type[Any]) -> bool:
    """Whether events of ``cls`` take part in the pool checks (one isinstance per class)."""
    known = _touches.get(cls)
    if known is None:
        known = _touches[cls] = issubclass(cls, _POOL_EVENTS)
    return known


def _check_draw(tracked: PoolTally, event: Any) -> str | None:
    """Pool checks made before ``event`` is folded into ``tracked.aggregate``."""
    aggregate = tracked.aggregate
    if isinstance(event, SharedGroup.UsageDrawn):
        tracked.drawn += event.mb
        if aggregate.depleted:
            return f"usage drawn from pool {aggregate.id} after it was depleted"
        if event.iccid not in aggregate.members:
            return f"SIM {event.iccid} drew the pool but was not a member of the group then"
        if event.mb <= 0:
            return f"a draw of {event.mb} MB"
    elif isinstance(event, Package.UsageDrawn):
        tracked.drawn += event.mb
        if not aggregate.is_copy:
            return "usage drawn from a catalogue package"
        if aggregate.depleted:
            return "usage drawn from a depleted package copy"
        if event.iccid != aggregate.iccid:
            return f"SIM {event.iccid} drew the copy of SIM {aggregate.iccid}"
        if event.mb <= 0:
            return f"a draw of {event.mb} MB"
    elif isinstance(event, (Package.Assigned, Package.Renewed)):
        tracked.drawn = Decimal(0)
        tracked.credit = event.data_mb
    elif isinstance(event, Package.ToppedUp):
        tracked.credit += event.mb
    elif isinstance(event, SharedGroup.Created):
        tracked.credit = event.data_mb
    return None


def _check_pool_after(tracked: PoolTally, event: Any) -> str | None:
    """Pool checks made after a draw or a depletion is folded."""
    aggregate = tracked.aggregate
    if isinstance(event, (SharedGroup.UsageDrawn, Package.UsageDrawn)):
        if tracked.drawn > tracked.credit:
            return f"draws total {tracked.drawn} MB, more than the {tracked.credit} MB of the pool"
    elif (
        isinstance(event, (SharedGroup.Depleted, Package.Depleted))
        and event.cause == "data"
        and tracked.drawn != tracked.credit
    ):
        return (
            f"depleted by data after {tracked.drawn} MB drawn of {tracked.credit} MB "
            f"(left: {aggregate.data_left_mb} MB)"
        )
    return None


def _check_pool_end(tracked: PoolTally) -> str | None:
    """The final balance of a pool or copy against the usage recorded against it."""
    aggregate = tracked.aggregate
    if isinstance(aggregate, Package) and not aggregate.is_copy:
        return None
    if aggregate.depleted:
        return None
    expected = tracked.credit - tracked.drawn
    if aggregate.data_left_mb != expected:
        return (
            f"data_left_mb is {aggregate.data_left_mb} MB but {tracked.credit} MB less the "
            f"{tracked.drawn} MB drawn is {expected} MB"
        )
    if expected <= 0 and tracked.drawn > 0:
        return f"pool drained ({tracked.drawn} MB drawn of {tracked.credit} MB) but not depleted"
    return None
