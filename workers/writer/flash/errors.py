"""What the flash engine raises, and how it reports progress."""

from collections.abc import Callable

#: progress(phase, done_bytes, total_bytes); phase "writing" then "verifying"
Progress = Callable[[str, int, int], None]


class FlashError(Exception):
    """The card could not be written or verified."""


class InvalidInput(FlashError, ValueError):
    """The image, bmap or device argument cannot be used."""


class CardTooSmall(FlashError):
    """The card is smaller than the image."""


class CardRemoved(FlashError):
    """The card (or its reader) went away."""


class VerifyMismatch(FlashError):
    """What was read back differs from the image."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class UnsafeTarget(FlashError):
    """The device is mounted, in use or holds the running system."""
