"""Progress of long work for people: a bar per phase in a terminal, a log line per
step of 10% otherwise (services, CI logs). How long work reports its progress
(``Progress``) and is told to stop: a ``cancel()`` callable it asks between
steps, and ``Canceled`` when it did."""

import logging
import sys
from collections.abc import Callable

from tqdm import tqdm

log = logging.getLogger(__name__)

#: progress(phase, percent or None when the total is unknown)
Progress = Callable[[str, float | None], None]
#: cancel() returns True when the caller wants the work stopped
Cancel = Callable[[], bool]


class Canceled(Exception):
    """cancel() returned True: the work stopped half-way, on purpose."""


class PhaseBar:
    def __init__(self, label: str, mode: str = "auto", stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode = mode
        self.phase: str | None = None
        self.bar: tqdm | None = None
        self.logged = -10.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, phase: str, percent: float) -> None:
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.logged = -10.0
            if self.mode == "bar":
                self.bar = tqdm(
                    total=100,
                    desc=f"{self.label}: {phase}",
                    unit="%",
                    file=self.stream,
                    bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
                )
        if self.bar is not None:
            self.bar.update(max(0.0, percent - self.bar.n))
        elif percent >= self.logged + 10 or percent >= 100 > self.logged:
            self.logged = percent
            log.info("%s: %s %.0f%%", self.label, phase, percent)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
