"""Loop devices as card readers for the whost tests: ``losetup DEV FILE`` is a
card going in, ``losetup -d DEV`` a card coming out. The one import of the
loop-device kit (``demo.cards``)."""

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from demo.cards import LoopCardSlot, loop_missing

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
MISSING = loop_missing()
needs_loop = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")


@pytest.fixture
def readers():
    """readers() -> a new LoopCardSlot; all are detached and removed afterwards."""
    made: list[LoopCardSlot] = []

    def make() -> LoopCardSlot:
        slot = LoopCardSlot()
        made.append(slot)
        return slot

    yield make
    for slot in reversed(made):
        slot.close()


def whost(
    *args: str, input: str | None = None, prefix=(), **env
) -> subprocess.CompletedProcess:
    """``[PREFIX…] python -m whost ARGS``: its exit code, output and errors."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "whost", *args],
        cwd=ROOT,
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


class Session:
    """``python -m whost ARGS`` running, read line by line as the operator would."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "whost", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.queue: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def expect(self, start: str, timeout: float = 30) -> str:
        """Read lines until one starts with ``start``; returns it."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(start):
                return line
        raise AssertionError(f"no line starting {start!r} in {self.lines}")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the end; returns (exit code, stderr), stdout in ``lines``."""
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        while line := self.queue.get_nowait() if not self.queue.empty() else None:
            self.lines.append(line)
        return code, self.process.stderr.read()
