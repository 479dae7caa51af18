"""Flash engine of the writer: copy a disk image to an SD card, then verify it.

Why it looks like this:

- With a bmap only the mapped blocks are written; without one the whole image is
  written byte for byte, like ``dd``, and verified against the image itself. Holes
  are only skipped when a bmap vouches for the image: nobody else says they are
  unused.
- The card is opened with ``O_DIRECT`` and written from page-aligned (mmap) buffers:
  the page cache neither delays write errors until close nor fills the writer
  host's memory. The image is only ever read with pread into a few such buffers,
  never mapped, and ranges and extents are walked, never listed: the process
  stays small however big the image is (the writer's ``test_flash_big.py``: a
  64 GB image on a 24 GB host; mapping it, as once, failed with ENOMEM).
- The first MiB (partition table, boot code) is written last, after a flush, so a
  card pulled half-way never looks bootable.
- Verification reads the card back with ``O_DIRECT`` (the cache would only prove
  that we remember what we wrote). With the image at hand (always, in ``flash``)
  the card is compared with it byte for byte (libc memcmp against the same
  piece of the image, read with pread while the card's is read); the image
  itself is checked against the bmap's range checksums while the card is
  written, once per image and process (a writer writes many cards of one
  image). So the card's ranges match the checksums, as bmaptool would check
  them, without hashing every card: sha256 (about 1.8 GB/s on one core here)
  would be slower than reading a fast card. ``verify(device, bmap)`` without
  the image hashes the card's ranges instead.
- A regular file can stand in for a card (``file_ok``): the demo and tests
  without root write into sparse files; the card is "removed" when its file is
  deleted or replaced.

- The card is closed and reopened between the body, the first MiB and
  verification, because Linux defers a detach of a busy device (``losetup -d``)
  to its last close: the reopen then sees capacity 0 (or another device) before
  the first MiB. How else a removed card is noticed: ``device``.

The package: ``engine`` writes (``flash``), ``verify`` reads back, ``device``
checks, opens and watches the card, ``image`` reads the image and its bmap,
``buffers`` holds aligned memory, ``__main__`` is the command line
(``python -m workers.writer.flash``). The public names are imported here.
"""

from workers.writer.flash.device import FILE_SECTOR, check_target
from workers.writer.flash.engine import FlashResult, flash
from workers.writer.flash.errors import (
    CardRemoved,
    CardTooSmall,
    FlashError,
    InvalidInput,
    Progress,
    UnsafeTarget,
    VerifyMismatch,
)
from workers.writer.flash.verify import verify

__all__ = [
    "FILE_SECTOR",
    "CardRemoved",
    "CardTooSmall",
    "FlashError",
    "FlashResult",
    "InvalidInput",
    "Progress",
    "UnsafeTarget",
    "VerifyMismatch",
    "check_target",
    "flash",
    "verify",
]
