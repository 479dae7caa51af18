"""Card slots of a writer host: which card is in which reader, and when that changes.

A slot is a card reader bound to a stable device path (``/dev/disk/by-path/…``,
which names the USB port, not the order in which the kernel found the reader).
The truth about a slot is read from /sys each time: a card is present when the
path resolves to a block device whose size is above 0 (a USB reader without a
medium, and a loop device without a backing file, have size 0). pyudev events
only say *when* to look again, so a missed or reordered event costs at most one
poll interval, never a wrong answer.

A *file slot* (``NAME=file:/abs/path``) lets a machine without root, or without
card readers, run the writer: the slot is a path, and a card is in when that
path resolves to a non-empty regular file (``ln -s card.img PATH`` puts a card
in, ``rm PATH`` takes it out). No kernel event concerns it: polling alone sees
it. It is an explicit opt-in, so a typo in a device path still fails loudly.
"""

import logging
import os
import re
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyudev

log = logging.getLogger(__name__)

NAME = re.compile(r"^[\w.-]{1,50}$")
SERIAL_CHARS = 100  # what the API keeps of a card serial
FILE = "file:"  # the prefix of a file slot
SYNTAX = "write NAME=/dev/disk/by-path/… (or NAME=file:/absolute/path for a file slot)"


@dataclass(frozen=True, slots=True)
class Card:
    """A card in a slot: its kernel device, capacity in bytes and serial."""

    device: str
    rdev: int
    capacity: int
    serial: str


def parse_slots(specs: list[str]) -> dict[str, str]:
    """``["a=/dev/x", "b=/dev/y,c=file:/srv/c"]`` -> ``{name: path}`` (a file
    slot keeps its ``file:`` prefix); ValueError says what is wrong with which
    entry."""
    slots: dict[str, str] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, path = item.partition("=")
            name, path = name.strip(), path.strip()
            if not sep or not name or not path:
                raise ValueError(f"{item!r}: {SYNTAX}")
            if not NAME.match(name):
                raise ValueError(
                    f"{name!r}: a slot name has 1-50 letters, digits, '.', '_', '-'"
                )
            if is_file_slot(path):
                file = slot_path(path)
                if not os.path.isabs(file):
                    raise ValueError(
                        f"{item!r}: a file slot needs an absolute path, "
                        f"e.g. {name}=file:/srv/cards/{name}"
                    )
                if os.path.normpath(file).startswith("/dev/"):
                    raise ValueError(
                        f"{item!r}: a file slot is a regular file's path, not a "
                        f"device; write {name}={file} for a card reader"
                    )
                path = FILE + os.path.normpath(file)
            elif not path.startswith("/dev/"):
                raise ValueError(
                    f"{item!r}: the device path must be under /dev/ "
                    "(or start with file: for a file slot)"
                )
            if name in slots:
                raise ValueError(f"slot {name!r} is given twice")
            slots[name] = path
    return slots


def is_file_slot(path: str) -> bool:
    return path.startswith(FILE)


def slot_path(path: str) -> str:
    """The file system path of a slot: a file slot's without its prefix."""
    return path.removeprefix(FILE)


def card_in(path: str) -> Card | None:
    """The card in the reader at ``path`` (or the file slot ``file:PATH``), or
    None when there is none."""
    if is_file_slot(path):
        return _file_card(slot_path(path))
    try:
        st = os.stat(path)  # follows the by-path symlink
    except OSError:
        return None  # the reader itself is unplugged: its symlink is gone
    if not stat.S_ISBLK(st.st_mode):
        return None
    node = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    try:
        sectors = int((node / "size").read_text())
    except (OSError, ValueError):
        return None
    if sectors <= 0:
        return None
    return Card(
        device=os.path.realpath(path),
        rdev=st.st_rdev,
        capacity=sectors * 512,  # /sys counts 512-byte sectors whatever the card's
        serial=_serial(node),
    )


def _file_card(path: str) -> Card | None:
    """A file slot's card: the regular file its path resolves to. Its inode is
    its identity (the flash engine's too), so a file put in its place is
    another card even under the same name."""
    try:
        st = os.stat(path)  # follows the symlink that put the card in
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size <= 0:
        return None
    real = os.path.realpath(path)
    return Card(
        device=real, rdev=st.st_ino, capacity=st.st_size, serial=real[-SERIAL_CHARS:]
    )


def _serial(node: Path) -> str:
    """The card's own serial where the kernel knows it: SD cards in an MMC
    reader have one; USB readers show only their own (useless to tell cards
    apart), so none; a loop device's "card" is its backing file."""
    for name in ("device/serial", "loop/backing_file"):
        try:
            value = (node / name).read_text().strip()
        except OSError:
            continue
        if value:
            return value[-SERIAL_CHARS:]
    return ""


def udev_source() -> str:
    """'udev' when udevd runs (its events come after it made the symlinks),
    'kernel' otherwise (containers, minimal hosts: the raw kernel events)."""
    return "udev" if Path("/run/udev/control").exists() else "kernel"


class SlotMonitor:
    """Calls ``on_event(slot_name, action)`` when a block device event concerns
    a slot: the device its path resolves to now, the one it resolved to before
    (a removed reader's symlink is gone already), or a udev symlink equal to it.
    """

    def __init__(
        self,
        slots: dict[str, str],
        on_event: Callable[[str, str], None],
        *,
        source: str | None = None,
    ):
        self.slots = dict(slots)
        self.on_event = on_event
        self.source = source or udev_source()
        self._known: dict[str, str] = {}  # slot -> last resolved device node
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: pyudev.Monitor | None = None

    def start(self) -> None:
        context = pyudev.Context()
        self._monitor = pyudev.Monitor.from_netlink(context, source=self.source)
        self._monitor.filter_by("block")
        self._monitor.start()  # listening from now: no event lost before run()
        for name, path in self.slots.items():
            self._known[name] = os.path.realpath(path)
        self._thread = threading.Thread(
            target=self._run, name="slot-monitor", daemon=True
        )
        self._thread.start()
        log.info(
            "watching %d slot(s) for cards (%s events)", len(self.slots), self.source
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                device = self._monitor.poll(timeout=0.5)
            except (OSError, pyudev.DeviceNotFoundError) as exc:
                log.warning("udev monitor: %s", exc)
                continue
            if device is not None:
                self.handle(
                    device.action or "", device.device_node, device.device_links
                )

    def handle(self, action: str, node: str | None, links=()) -> list[str]:
        """Dispatch one event; returns the slots it concerned."""
        if not node:
            return []
        links = set(links or ())
        hit = []
        for name, path in self.slots.items():
            now = os.path.realpath(path)
            if node in {now, self._known.get(name)} or path in links:
                hit.append(name)
                if now.startswith("/dev/") and os.path.exists(now):
                    self._known[name] = now
        for name in hit:
            log.debug("slot %s: %s %s", name, action, node)
            try:
                self.on_event(name, action)
            except Exception:
                log.exception("slot %s: handling a %s event failed", name, action)
        return hit
