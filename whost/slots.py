"""Naming slots: a card goes in, whost sees which reader it went into, and
records the reader's stable physical path under the slot's name; later it checks
that each name still finds its reader where it was named.

Works on any *source* of ``whost.readers`` (pyudev, or recorded property sets in
the tests) and prints through ``say``: no terminal, no file here.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from whost.config import Config, SlotEntry
from whost.readers import Disk, gigabytes, readers

POLL = 0.5  # seconds between looks when no uevent comes


class Refused(Exception):
    """This card's reader cannot be told apart from another slot's; the message
    says why and what to do."""


class NoCard(Exception):
    """Nothing happened in time."""


@dataclass
class Watch:
    """What ``identify`` looks at: readers from ``source``, with the loop
    devices named in ``loops`` counting as readers, less ``exclude``."""

    source: object
    loops: Iterable[str] = ()
    exclude: Iterable[str] = ()

    def readers(self) -> list[Disk]:
        return readers(self.source, self.loops, self.exclude)


def identify(
    config: Config,
    watch: Watch,
    names: list[str],
    *,
    timeout: float = 300,
    say: Callable[[str], None] = print,
    ticking: Callable[[float], None] | None = None,
) -> Iterator[SlotEntry]:
    """Ask for a card in each slot of ``names`` in turn and yield each slot as it
    is named (the caller saves it at once: an interruption keeps what was done).
    Raises Refused or NoCard."""
    renamed = set(names)
    taken = {
        slot.path: slot.name
        for slot in config.slots.values()
        if slot.name not in renamed
    }
    known = {
        slot.name: slot for slot in config.slots.values() if slot.name not in renamed
    }
    busy = [disk for disk in watch.readers() if disk.size > 0]
    if busy:
        say(
            "note: "
            + ", ".join(f"{disk.node} ({disk.describe()})" for disk in busy)
            + " hold a card now; take the card out of any reader you want to name."
        )
    for index, name in enumerate(names):
        # Looked at before asking: a card that goes in at once is still new.
        before = {disk.devpath: disk.size for disk in watch.readers()}
        say(f"Insert a card in the reader of {name} (within {timeout:.0f} s).")
        disk = arrival(watch, before, time.monotonic() + timeout, name, ticking)
        problem = refusal(disk, name, taken)
        if problem:
            raise Refused(problem)
        entry = SlotEntry(
            name=name,
            path=disk.path,
            reader=disk.reader,
            model=disk.model,
            lun=disk.lun,
        )
        twins = sorted(
            other.name
            for other in known.values()
            if entry.reader
            and other.reader == entry.reader
            and other.lun == entry.lun
            and other.path != entry.path
        )
        taken[disk.path] = name
        known[name] = entry
        yield entry
        say(f"{name} = {disk.path} ({disk.describe()}).")
        if twins:
            say(
                f"note: the reader of {name} is identical to that of "
                f"{', '.join(twins)} (same model and serial): whost tells them "
                "apart by their USB port only. Label them and keep each in its "
                "port: whost slots check cannot see two identical readers swapped."
            )
        if index < len(names) - 1:
            say("Take the card out.")
            removal(watch, disk, time.monotonic() + timeout)


def arrival(
    watch: Watch,
    before: dict[str, int],
    deadline: float,
    name: str,
    ticking: Callable[[float], None] | None = None,
) -> Disk:
    """The reader that gets a card (its size goes from 0, in ``before``, to
    more) before ``deadline``; Refused if two do at once."""
    started = time.monotonic()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoCard(
                f"no card arrived in a reader for {name}: check that the reader "
                "is plugged in (whost slots list shows the readers), then run "
                f"whost slots identify {name}"
            )
        watch.source.wait(min(POLL, remaining))
        if ticking is not None:
            ticking(time.monotonic() - started)
        now = watch.readers()
        new = [d for d in now if d.size > 0 and before.get(d.devpath, 0) == 0]
        if len(new) > 1:
            raise Refused(
                "cards arrived in "
                + " and ".join(f"{d.node} ({d.describe()})" for d in new)
                + f" at once, so whost cannot tell which is {name}'s: insert one "
                f"card at a time (whost slots identify {name})"
            )
        if new:
            return new[0]
        before = {disk.devpath: disk.size for disk in now}


def removal(watch: Watch, disk: Disk, deadline: float) -> None:
    while time.monotonic() < deadline:
        now = {d.devpath: d for d in watch.readers()}
        if now.get(disk.devpath) is None or now[disk.devpath].size == 0:
            return
        watch.source.wait(POLL)
    raise NoCard(f"the card is still in {disk.node}: take it out, then go on")


def refusal(disk: Disk, name: str, taken: dict[str, str]) -> str:
    """Why ``disk`` cannot become slot ``name`` ('' when it can)."""
    if not disk.path:
        return (
            f"udev gave {disk.node} ({disk.describe()}) no ID_PATH, so whost "
            "cannot name the port it is plugged into and could not tell it from "
            "another reader: is udevd running (systemctl status systemd-udevd)? "
            f"Then run whost slots identify {name} again"
        )
    other = taken.get(disk.path)
    if other and other != name:
        return (
            f"the card went into the reader of {other} ({disk.path}, "
            f"{disk.describe()}): whost cannot tell {name} from {other}, as the "
            "reader shows them as one device (a reader whose sockets share one "
            "device is one slot). Use another reader for "
            f"{name} (whost slots identify {name}), or whost slots remove {other}"
        )
    return ""


# --- after a reboot or a re-plug --------------------------------------------------


@dataclass(frozen=True)
class Finding:
    slot: str
    state: str  # ok, moved, missing
    message: str


def check(config: Config, disks: list[Disk]) -> list[Finding]:
    """Is each named slot's reader where it was named? A reader found at
    another port is a slot that *moved* (cards would go to the wrong name);
    no reader at all is a *missing* slot."""
    at = {disk.path: disk for disk in disks if disk.path}
    named = {slot.path for slot in config.slots.values()}
    twins: dict[tuple[str, str], list[str]] = {}
    for slot in config.slots.values():
        if slot.reader:
            twins.setdefault((slot.reader, slot.lun), []).append(slot.name)
    findings = []
    for slot in config.slots.values():
        disk = at.get(slot.path)
        same = twins.get((slot.reader, slot.lun), [])
        if disk is not None:
            if slot.reader and disk.reader and disk.reader != slot.reader:
                findings.append(swapped(slot, disk, disks))
                continue
            note = ""
            if len(same) > 1:
                note = (
                    f"; identical to {', '.join(n for n in same if n != slot.name)}"
                    ": a swap of their ports cannot be seen"
                )
            findings.append(
                Finding(
                    slot.name,
                    "ok",
                    f"{slot.name}: {disk.describe()} at {slot.path}, "
                    f"{card(disk)}{note}",
                )
            )
            continue
        away = [
            disk
            for disk in disks
            if slot.reader
            and disk.reader == slot.reader
            and disk.lun == slot.lun
            and disk.path not in named
        ]
        if len(away) == 1:
            findings.append(
                Finding(
                    slot.name,
                    "moved",
                    f"{slot.name} moved: its reader ({away[0].describe()}) is now "
                    f"at {away[0].path or away[0].node}, not {slot.path}. Plug it "
                    f"back into its port, or run whost slots identify {slot.name}",
                )
            )
        elif away:
            findings.append(
                Finding(
                    slot.name,
                    "moved",
                    f"{slot.name} moved: no reader at {slot.path}, and readers "
                    f"identical to its own are at "
                    f"{', '.join(d.path or d.node for d in away)}: whost cannot "
                    f"tell which is {slot.name}'s. Plug it back into its port, or "
                    f"run whost slots identify {slot.name}",
                )
            )
        else:
            findings.append(
                Finding(
                    slot.name,
                    "missing",
                    f"{slot.name} missing: no reader at {slot.path} "
                    f"({slot.model or 'as named'}). Plug it in, or whost slots "
                    f"remove {slot.name}",
                )
            )
    return findings


def swapped(slot: SlotEntry, disk: Disk, disks: list[Disk]) -> Finding:
    own = [d for d in disks if d.reader == slot.reader and d.lun == slot.lun]
    where = f"is at {own[0].path or own[0].node}" if own else "is not plugged in"
    return Finding(
        slot.name,
        "moved",
        f"{slot.name} moved: another reader ({disk.describe()}) is in its port "
        f"{slot.path}; its own ({slot.model} {slot.reader.split(' ', 1)[-1]}) "
        f"{where}. Put the readers back, or run whost slots identify {slot.name}",
    )


def card(disk: Disk | None) -> str:
    if disk is None:
        return "reader missing"
    return f"card {gigabytes(disk.size)}" if disk.size else "no card"


def table(config: Config, disks: list[Disk]) -> list[tuple[str, str, str, str]]:
    """Rows (slot, reader, stable path, card) of the named slots, then of the
    readers no slot names yet."""
    at = {disk.path: disk for disk in disks if disk.path}
    rows = []
    for slot in config.slots.values():
        disk = at.get(slot.path)
        reader = disk.describe() if disk else f"({slot.model or 'reader'})"
        rows.append((slot.name, reader, slot.path, card(disk)))
    named = {slot.path for slot in config.slots.values()}
    for disk in disks:
        if disk.path not in named or not disk.path:
            rows.append(
                (
                    "-",
                    disk.describe(),
                    disk.path or f"{disk.node}, no ID_PATH",
                    card(disk),
                )
            )
    return rows
