"""The one stand-in of the whost tests: recorded udev property sets of real USB
card readers (``readers/*.json``; no USB reader is attached to the machines the
tests run on), replayed through the interface of ``whost.readers.UdevSource``.

``devices()`` answers what udev would show now; each ``wait()`` is one uevent:
it applies the next scripted change (a card in, a card out, a re-plug), as the
operator's hand would between two looks.
"""

import copy
import json
from collections import deque
from pathlib import Path

FOLDER = Path(__file__).parent / "readers"
CARD = 15_523_840  # sectors of an 8 GB card (7.9 GB, as /sys/block/sdX/size says)


def recording(name: str) -> dict[str, dict]:
    """The devices of ``readers/NAME.json``: {label: {"size", "properties"}}."""
    return json.loads((FOLDER / f"{name}.json").read_text())["devices"]


class RecordedUdev:
    def __init__(self, *devices: dict):
        self.now: dict[str, dict] = {}  # DEVPATH -> record
        for device in devices:
            self.plug(device)
        self.script: deque = deque()
        self.waits = 0

    # -- the source interface ------------------------------------------------------

    def devices(self) -> list[tuple[dict, int]]:
        return [(dict(r["properties"]), r["size"]) for r in self.now.values()]

    def wait(self, timeout: float) -> None:
        self.waits += 1
        if self.script:
            self.script.popleft()()

    # -- what the operator does -----------------------------------------------------

    def then(self, *steps) -> "RecordedUdev":
        """Queue steps, one per uevent: ``("insert", record)``, ``("remove",
        record)``, ``("plug", record)``, ``("unplug", record)``, ``("idle",)``."""
        for step in steps:
            action, *args = step
            self.script.append(
                lambda action=action, args=args: getattr(self, action)(*args)
            )
        return self

    def plug(self, record: dict) -> None:
        record = copy.deepcopy(record)
        self.now[record["properties"]["DEVPATH"]] = record

    def unplug(self, record: dict) -> None:
        del self.now[record["properties"]["DEVPATH"]]

    def insert(self, record: dict, sectors: int = CARD) -> None:
        self.now[record["properties"]["DEVPATH"]]["size"] = sectors

    def remove(self, record: dict) -> None:
        self.now[record["properties"]["DEVPATH"]]["size"] = 0

    def idle(self) -> None:
        """An event about something else (another disk, a partition)."""
