"""Loop devices as card slots for tests: ``losetup DEV FILE`` is a card going in,
``losetup -d DEV`` a card coming out.

Each slot gets a loop device of its own, made with LOOP_CTL_ADD at a high
number: between a card going out and the next going in, the device is free, and
``losetup -f`` of a test running beside ours takes the lowest free device, so it
would take loop0-7 long before ours (it must never write through our "slot").
"""

import subprocess
from pathlib import Path

import pytest

from demo.cards import CARD_BYTES, LoopCardSlot, loop_missing

MiB = 1024 * 1024
OLD = b"\xaa"  # what a card holds before it is written


MISSING = loop_missing()
needs_loop = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout.strip()


def make_card(path: Path, size: int = 80 * MiB, *, capacity: int = CARD_BYTES) -> Path:
    """A card of ``capacity`` bytes (8 GB by default: orders name 8 GB cards at
    least, and the writer is given no smaller one) whose first ``size`` bytes are
    OLD (not zeros, so a block the writer skipped cannot pass for one it wrote);
    the rest is a hole of the sparse file."""
    with open(path, "wb") as out:
        for _ in range(size // MiB):
            out.write(OLD * MiB)
        out.truncate(max(size, capacity))
    return path


def head(card: Path, length: int) -> bytes:
    """The first ``length`` bytes of a card (never read a whole 8 GB card)."""
    with open(card, "rb") as handle:
        return handle.read(length)


@pytest.fixture
def loop_card_slots():
    """loop_card_slots() -> a new LoopCardSlot; all are detached and removed
    afterwards."""
    made: list[LoopCardSlot] = []

    def make() -> LoopCardSlot:
        slot = LoopCardSlot()
        made.append(slot)
        return slot

    yield make
    for slot in reversed(made):
        slot.close()
