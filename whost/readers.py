"""Card readers as udev shows them, and the one place their properties become a
``Disk``.

A reader's slot is named by its *stable physical path*: udev's ``ID_PATH``
(``pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0``: the PCI controller, the USB port
chain, the LUN), which stays the same across reboots and re-plugs into the same
port, unlike ``/dev/sdX``. A loop device (the demo's and the tests' reader) has
no port: its sysfs path (``/devices/virtual/block/loop203``) stands for one.

A *source* gives ``devices()`` (pairs of udev properties and the medium's size
in 512-byte sectors, from sysfs) and ``wait(timeout)`` (returns early on a block
uevent). ``UdevSource`` is pyudev; the tests replay recorded property sets of
real USB readers through the same interface. As in the writer, events only say
when to look again: what is in a reader is read afresh each time.
"""

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from whost.config import LOOP_PREFIX, device_for

READER_BUSES = {"usb", "mmc"}


@dataclass(frozen=True)
class Disk:
    node: str  # /dev/sdb (changes between boots)
    devpath: str  # its sysfs path below /sys (changes when re-plugged)
    path: str  # the stable physical path, "" when udev gave none
    size: int  # bytes of the medium: 0 is a reader without a card
    model: str  # "Generic STORAGE DEVICE"
    reader: str  # "05e3:0751 000000000819": the reader, the same for each LUN
    lun: str  # "0:0", "0:1" for the slots of a multi-slot reader
    bus: str  # usb, mmc, loop or what udev says

    @property
    def device(self) -> str:
        return device_for(self.path) if self.path else self.node

    def describe(self) -> str:
        what = self.model or self.bus
        if self.reader:
            what += f" {self.reader.split(' ', 1)[-1]}"
        if self.lun and self.lun != "0:0":
            what += f" LUN {self.lun}"
        return what


def disk_from_udev(properties: Mapping[str, str], sectors: int) -> Disk:
    """A Disk from a block device's udev properties and its sysfs size."""
    devpath = properties.get("DEVPATH", "")
    name = devpath.rsplit("/", 1)[-1]
    if devpath.startswith(LOOP_PREFIX):
        bus, path = "loop", devpath
    else:
        bus = properties.get("ID_BUS", "")
        # Without udevd there is no ID_BUS: the sysfs path still says the bus.
        if not bus and "/mmc_host/" in devpath:
            bus = "mmc"
        elif not bus and "/usb" in devpath:
            bus = "usb"
        path = properties.get("ID_PATH", "")
    model = " ".join(
        part.replace("_", " ").strip()
        for part in (properties.get("ID_VENDOR", ""), properties.get("ID_MODEL", ""))
        if part
    )
    if not model and bus == "mmc":
        model = f"SD card reader {properties.get('ID_NAME', '')}".strip()
    reader = ""
    if properties.get("ID_VENDOR_ID") and properties.get("ID_MODEL_ID"):
        reader = f"{properties['ID_VENDOR_ID']}:{properties['ID_MODEL_ID']}"
        serial = properties.get("ID_SERIAL_SHORT", "")
        reader += f" {serial}" if serial else ""
    return Disk(
        node=properties.get("DEVNAME") or f"/dev/{name}",
        devpath=devpath,
        path=path,
        size=max(0, sectors)
        * 512,  # sysfs counts 512-byte sectors, whatever the card's
        model=model,
        reader=reader,
        lun=properties.get("ID_INSTANCE", ""),
        bus=bus,
    )


def readers(
    source, loops: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[Disk]:
    """The card readers ``source`` shows: USB and MMC disks, plus the loop
    devices named in ``loops`` (``/dev/loopN`` or their sysfs paths), less the
    disks in ``exclude`` (sysfs paths: the system's own disks)."""
    wanted = {_loop_devpath(loop) for loop in loops}
    skip = set(exclude)
    found = []
    for properties, sectors in source.devices():
        if properties.get("DEVTYPE") != "disk":
            continue
        disk = disk_from_udev(properties, sectors)
        if disk.devpath in skip:
            continue
        if disk.bus == "loop" and disk.devpath not in wanted:
            continue
        if disk.bus in READER_BUSES or disk.bus == "loop":
            found.append(disk)
    return sorted(found, key=lambda disk: (disk.path or "~", disk.devpath))


def _loop_devpath(loop: str) -> str:
    if loop.startswith(LOOP_PREFIX):
        return loop
    return LOOP_PREFIX + Path(os.path.realpath(loop)).name.removeprefix("loop")


def gigabytes(size: int) -> str:
    """Cards are sold in decimal gigabytes: say it the way the label does."""
    return f"{size / 10**9:.1f} GB"


def system_disks() -> set[str]:
    """Sysfs paths of the disks holding / and /boot: never a slot, whatever
    bus they are on (a writer host may boot from a USB disk)."""
    found = set()
    for mount in ("/", "/boot", "/boot/firmware"):
        try:
            st = os.stat(mount)
        except OSError:
            continue
        node = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
        try:
            real = node.resolve(strict=True)
        except OSError:
            continue  # not a block device (overlay, tmpfs)
        if (real / "partition").exists():
            real = real.parent
        found.add(str(real).removeprefix("/sys"))
    return found


def event_source() -> str:
    """As the writer: udevd's events where it runs (sent after it made the
    by-path links), the kernel's otherwise."""
    return "udev" if Path("/run/udev/control").exists() else "kernel"


class UdevSource:
    """Block disks as udev (through pyudev) sees them now, woken by uevents."""

    def __init__(self):
        import pyudev  # imported here: `whost --help` must work without it

        self._pyudev = pyudev
        self.context = pyudev.Context()
        self.monitor = pyudev.Monitor.from_netlink(self.context, source=event_source())
        self.monitor.filter_by("block")
        self.monitor.start()  # listening from now: no event lost before wait()

    def devices(self) -> list[tuple[dict, int]]:
        found = []
        for device in self.context.list_devices(subsystem="block", DEVTYPE="disk"):
            try:
                sectors = int(device.attributes.asstring("size"))
            except (KeyError, ValueError, self._pyudev.DeviceNotFoundError):
                sectors = 0
            found.append((dict(device.properties), sectors))
        return found

    def wait(self, timeout: float) -> None:
        self.monitor.poll(timeout=timeout)
        # Drain what else came at once (a reader sends several events per card).
        while self.monitor.poll(timeout=0.05) is not None:
            pass

    def close(self) -> None:
        self.monitor = None
