"""The API's words that the workers, the warehouse and the demo send and read:
one constant each, so a typo is a NameError, not a request the API refuses.

They mirror the scheduler's choices (accounts' ``Role``, orders'
``OrderStatus``, the scheduler's ``WorkerKind``, ``TaskKind``, ``TaskStatus``,
``SlotState``, and the event types and card failures its leases accept),
which these processes cannot import: they never import Django (DESIGN 2).
tests/test_names.py checks that both sides agree."""


class Role:
    ADMIN = "admin"
    MANAGER = "manager"
    CLIENT = "client"
    CREATOR = "creator"
    DOWNLOADER = "downloader"
    WRITER = "writer"
    WAREHOUSE = "warehouse"


class WorkerKind:
    CREATOR = "creator"
    DOWNLOADER = "downloader"
    WRITER = "writer"


class TaskKind:
    CREATE = "create"
    DOWNLOAD = "download"
    WRITE = "write"


class TaskStatus:
    PENDING = "pending"
    LEASED = "leased"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class OrderStatus:
    PENDING = "pending"
    BUILDING = "building"
    BUILT = "built"
    WRITING = "writing"
    PENDING_SHIPMENT = "pending_shipment"
    SHIPPED = "shipped"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class Event:
    """Types of the events a worker reports on its task."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CARD_FAILED = "card_failed"
    CANCELED = "canceled"


class CardFailure:
    """Why a card failed: it fails that card, not the copy."""

    TOO_SMALL = "too_small"
    WRITE_ERROR = "write_error"
    VERIFY_MISMATCH = "verify_mismatch"
    REMOVED = "removed"


class SlotState:
    EMPTY = "empty"
    CARD_PRESENT = "card_present"
    WRITING = "writing"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    OFFLINE = "offline"


def values(names: type) -> set[str]:
    """The values a class of names holds."""
    return {value for key, value in vars(names).items() if key.isupper()}
