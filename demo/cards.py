"""Cards for the demo and the tests: blank card files, and card readers of two
kinds with one interface (``device``: what the writer's ``--slot NAME=`` gets;
``insert(card_file)``, ``remove()``, ``close()``; ``card``: the file in it or
None).

- LoopCardSlot: a loop device. ``losetup DEV FILE`` is a card going in,
  ``losetup -d DEV`` a card coming out. Needs root; the writer then sees a block
  device and its kernel events, as with a real reader.
- FileCardSlot: a file slot (``file:PATH``). A card going in is PATH becoming a
  symlink to the card file, coming out is the symlink going. Needs no root.
"""

import fcntl
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from workers.writer.flash import FlashError, verify

LOOP_CTL_ADD, LOOP_CTL_REMOVE = 0x4C80, 0x4C81
CARD_BYTES = 8 * 10**9  # a nominal 8 GB card


def loop_missing() -> str | None:
    """What this machine lacks for LoopCardSlot, or None."""
    if os.geteuid() != 0:
        return "root, to attach loop devices as cards"
    if not Path("/dev/loop-control").exists():
        return "/dev/loop-control (the loop driver)"
    if shutil.which("losetup") is None:
        return "the losetup command"
    return None


class CardSlotError(Exception):
    """A card could not be put in or taken out of a slot."""


class LoopError(CardSlotError):
    """A loop device could not be made, filled or emptied."""


class LoopCardSlot:
    """A card reader: a loop device of our own at a high number, so that
    ``losetup -f`` elsewhere (which takes the lowest free one) never writes
    through it while it has no card."""

    def __init__(self):
        control = os.open("/dev/loop-control", os.O_RDWR)
        try:
            for _ in range(100):
                number = random.randrange(200, 1000)  # noqa: S311 - not a secret
                try:
                    fcntl.ioctl(control, LOOP_CTL_ADD, number)
                except FileExistsError:
                    continue
                break
            else:
                raise LoopError("no free loop device number in 200-999")
        finally:
            os.close(control)
        self.number = number
        self.device = f"/dev/loop{number}"
        deadline = time.monotonic() + 10
        while not Path(self.device).exists():  # devtmpfs (or udev) makes the node
            if time.monotonic() > deadline:
                raise LoopError(f"{self.device} did not appear")
            time.sleep(0.02)
        self.card: Path | None = None

    @property
    def rdev(self) -> str:
        st = os.stat(self.device)
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    def insert(self, card: Path) -> None:
        done = subprocess.run(
            ["losetup", self.device, str(card)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise LoopError(f"losetup {self.device} {card}: {done.stderr.strip()}")
        self.card = card

    def remove(self) -> None:
        subprocess.run(["losetup", "-d", self.device], capture_output=True)
        self.card = None

    def close(self) -> None:
        """Take the card out and give the device number back."""
        self.remove()
        control = os.open("/dev/loop-control", os.O_RDWR)
        try:
            # The detach ends at the last close: a writer still closing the
            # device makes the removal fail with EBUSY for a moment.
            for _ in range(50):
                try:
                    fcntl.ioctl(control, LOOP_CTL_REMOVE, self.number)
                    return
                except OSError:
                    time.sleep(0.1)
        finally:
            os.close(control)


class FileCardSlot:
    """A file slot at ``path`` (its folder is made). The card files must be
    multiples of 4096 bytes, as the flash engine writes them with O_DIRECT."""

    def __init__(self, path: Path):
        self.path = Path(path).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a card a stopped run left in
        self.device = f"file:{self.path}"
        self.card: Path | None = None

    def insert(self, card: Path) -> None:
        # Absolute: the link must not depend on the folder it sits in.
        target = Path(card).absolute()
        if not target.is_file():
            raise CardSlotError(f"cannot insert {target} in {self.path}: no such file")
        try:
            self.path.symlink_to(target)
        except FileExistsError:
            raise CardSlotError(
                f"cannot insert {target}: {self.path} holds a card already"
            ) from None
        except OSError as exc:
            raise CardSlotError(
                f"cannot insert {target} in {self.path}: {exc}"
            ) from None
        self.card = target

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.card = None

    def close(self) -> None:
        self.remove()


def add_card_slots(slots: dict, demo: Path, names: list[str]) -> str:
    """A slot per name into ``slots`` (one at a time, so that a failure leaves
    the ones made to be closed): loop devices where the machine allows them,
    file slots otherwise. Returns one line saying which, and why."""
    missing = loop_missing()
    for name in names:
        slots[name] = (
            LoopCardSlot() if missing is None else FileCardSlot(demo / "slots" / name)
        )
    if missing is None:
        return "the cards are sparse files attached as loop devices"
    where = f"the cards are sparse files in {demo / 'cards'}, put in file slots"
    if os.geteuid() != 0:
        return (
            f"{where}, because this runs without root; as root they would be "
            "loop devices (block devices, seen through kernel events like a "
            "real card reader)"
        )
    return f"{where}, because loop devices need {missing}"


def blank_card(path: Path, size: int = CARD_BYTES) -> Path:
    """A new sparse card file (an empty card costs no disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def card_verifies(card: Path | str, bmap_path: Path) -> bool:
    """Every mapped range of the card has the sha256 the bmap gives it: the
    flash engine's hashing check, independent of the writer's compare."""
    try:
        verify(card, bmap_path)
    except FlashError:
        return False
    return True
