"""The domain: aggregates, events, the lifecycle table and the typed errors. No I/O."""

from simledger.domain.bulk import BULK_LIMIT, BulkOperation
from simledger.domain.errors import *  # noqa: F403 - the errors are the public vocabulary
from simledger.domain.errors import SimledgerError
from simledger.domain.iccid import make_iccid, normalise_iccid
from simledger.domain.lifecycle import TRANSITIONS, Cmd, next_status
from simledger.domain.package import Package
from simledger.domain.partner import CustomerService, SimOrder
from simledger.domain.regular_group import RegularGroup
from simledger.domain.session import SessionReceipt
from simledger.domain.shared_group import SharedGroup
from simledger.domain.sim import Sim
from simledger.domain.sim_options import AlwaysOnSet
from simledger.domain.types import OperationKind, SimStatus, SimType, SuspendReason
from simledger.domain.usage import UsageRecord
from simledger.domain.usage_receipt import UsageReceipt

__all__ = [
    "BULK_LIMIT",
    "TRANSITIONS",
    "AlwaysOnSet",
    "BulkOperation",
    "Cmd",
    "CustomerService",
    "OperationKind",
    "Package",
    "RegularGroup",
    "SessionReceipt",
    "SharedGroup",
    "Sim",
    "SimOrder",
    "SimStatus",
    "SimType",
    "SimledgerError",
    "SuspendReason",
    "UsageReceipt",
    "UsageRecord",
    "make_iccid",
    "next_status",
    "normalise_iccid",
]
