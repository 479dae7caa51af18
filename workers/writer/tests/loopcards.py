"""Loop devices as card slots for tests: ``losetup DEV FILE`` is a card going in,
``losetup -d DEV`` a card coming out.

Each slot gets a loop device of its own, made with LOOP_CTL_ADD at a high
number: between a card going out and the next going in, the device is free, and
``losetup -f`` of a test running beside ours takes the lowest free device, so it
would take loop0-7 long before ours (it must never write through our "slot").
"""

import fcntl
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

MiB = 1024 * 1024
OLD = b"\xaa"  # what a card holds before it is written
LOOP_CTL_ADD, LOOP_CTL_REMOVE = 0x4C80, 0x4C81


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "root, to attach loop devices"
    if not Path("/dev/loop-control").exists():
        return "/dev/loop-control (the loop driver)"
    if shutil.which("losetup") is None:
        return "the losetup command"
    return None


MISSING = _missing()
needs_loop = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout.strip()


def make_card(path: Path, size: int = 80 * MiB) -> Path:
    """A card's content before writing: every byte OLD (not zeros, so a block
    the writer skipped cannot pass for one it wrote)."""
    with open(path, "wb") as out:
        for _ in range(size // MiB):
            out.write(OLD * MiB)
    return path


class LoopSlot:
    """A loop device of our own: a card reader with no card in it."""

    def __init__(self):
        control = os.open("/dev/loop-control", os.O_RDWR)
        try:
            for _ in range(50):
                number = random.randrange(200, 1000)
                try:
                    fcntl.ioctl(control, LOOP_CTL_ADD, number)
                except FileExistsError:
                    continue
                break
            else:
                raise RuntimeError("no free loop device number in 200-999")
        finally:
            os.close(control)
        self.number = number
        self.device = f"/dev/loop{number}"
        deadline = time.monotonic() + 5
        while not Path(self.device).exists():  # devtmpfs (or udev) makes the node
            assert time.monotonic() < deadline, f"{self.device} did not appear"
            time.sleep(0.02)
        self.card: Path | None = None

    def insert(self, card: Path) -> None:
        run("losetup", self.device, str(card))
        self.card = card

    def remove(self) -> None:
        run("losetup", "-d", self.device)
        self.card = None

    def close(self) -> None:
        """Take the card out and give the device back, whatever happened."""
        subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)
        control = os.open("/dev/loop-control", os.O_RDWR)
        try:
            # A detach is finished by the last close; a writer thread that is
            # still closing it makes the removal fail with EBUSY for a moment.
            for _ in range(50):
                try:
                    fcntl.ioctl(control, LOOP_CTL_REMOVE, self.number)
                    return
                except OSError:
                    time.sleep(0.1)
        finally:
            os.close(control)


@pytest.fixture
def loop_slots():
    """loop_slots() -> a new LoopSlot; all are detached and removed afterwards."""
    made: list[LoopSlot] = []

    def make() -> LoopSlot:
        slot = LoopSlot()
        made.append(slot)
        return slot

    yield make
    for slot in reversed(made):
        slot.close()
