"""simledger: an event-sourced SIM lifecycle engine.

from simledger import SimLedger, SimStatus, SimType, SimledgerError
ledger = SimLedger()  # in memory; env= takes eventsourcing's persistence settings
"""

from simledger.application.ledger import SimLedger
from simledger.application.results import (
    BulkResult,
    HistoryEntry,
    SharedGroupView,
    SimView,
    UsageResult,
)
from simledger.domain.actor import Actor
from simledger.domain.errors import (
    AlreadyInSharedGroup,
    AutoRenewNotAllowed,
    BulkLimitExceeded,
    ConcurrencyConflict,
    CsvImportError,
    HoldingServiceNotMigrated,
    IllegalTransition,
    InvalidIccid,
    InvalidInput,
    InvalidValue,
    NoOperationInFlight,
    NotActivationReady,
    NotAMember,
    NotPrepaid,
    OperationInFlight,
    OrderQuantityInvalid,
    PackageStillActive,
    SharedGroupLocked,
    SimAlreadyExists,
    SimledgerError,
    SimNotYetReceived,
    SystemPauseNotCleared,
    UnknownCustomerService,
    UnknownGroup,
    UnknownOrder,
    UnknownPackage,
    UnknownSim,
)
from simledger.domain.types import OperationKind, SimStatus, SimType, SuspendReason
from simledger.domain.usage import UsageRecord

__all__ = [
    "Actor",
    "AlreadyInSharedGroup",
    "AutoRenewNotAllowed",
    "BulkLimitExceeded",
    "BulkResult",
    "ConcurrencyConflict",
    "CsvImportError",
    "HistoryEntry",
    "HoldingServiceNotMigrated",
    "IllegalTransition",
    "InvalidIccid",
    "InvalidInput",
    "InvalidValue",
    "NoOperationInFlight",
    "NotAMember",
    "NotActivationReady",
    "NotPrepaid",
    "OperationInFlight",
    "OperationKind",
    "OrderQuantityInvalid",
    "PackageStillActive",
    "SharedGroupLocked",
    "SharedGroupView",
    "SimAlreadyExists",
    "SimLedger",
    "SimNotYetReceived",
    "SimStatus",
    "SimType",
    "SimView",
    "SimledgerError",
    "SuspendReason",
    "SystemPauseNotCleared",
    "UnknownCustomerService",
    "UnknownGroup",
    "UnknownOrder",
    "UnknownPackage",
    "UnknownSim",
    "UsageRecord",
    "UsageResult",
]
