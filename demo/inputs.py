"""Small real inputs for the demo and the tests, made without root or network:
a base image with the offspot base image's layout and a PNG (the ZIM files are
``catalog``'s, the OCI images ``registry``'s).

The creator's default base image is Kiwix's offspot base image, a download
(Raspberry Pi OS, over 2 GB); offline demos and CI cannot fetch it, so they
build a 116 MiB stand-in with the same partitions, made with the tools the
creator needs anyway (sfdisk, mtools, mke2fs): a FAT boot partition with what
the runtime reads there (``cmdline.txt``, ``config.txt``, the default
``offspot.yaml``), an ext4 root partition of ``BASE_ROOTFS_SIZE`` and an ext4
data partition holding the ``master_fs`` flag (the card grows the partition to
its size at first boot) and the ``images`` folder OCI images are loaded from.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from workers.creator.tools import tool_path

MIB = 1024 * 1024
#: partitions start on 4 MiB boundaries, as the creator aligns them
BOOT_START = 4 * MIB
# mtools refuses FAT32 below 65525 clusters: 64 MiB with 512-byte clusters is enough.
BOOT_SIZE = 64 * MIB
ROOT_START = BOOT_START + BOOT_SIZE
#: the root partition's size: a recipe's base.rootfs_size for this image
BASE_ROOTFS_SIZE = 32 * MIB
DATA_START = ROOT_START + BASE_ROOTFS_SIZE
DATA_SIZE = 16 * MIB
BASE_SIZE = DATA_START + DATA_SIZE
#: the disk identifier, so that PARTUUIDs (cmdline.txt, fstab) are known
DISK_ID = "8c3e1f5a"
CMDLINE = (
    f"console=serial0,115200 console=tty1 root=PARTUUID={DISK_ID}-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait systemd.restore_state=0 rfkill.default_state=1 quiet "
    "init=/usr/sbin/offspot_bi_init_resize.sh\n"
)
CONFIG_TXT = "[all]\narm_64bit=1\ndtoverlay=i2c-rtc,pcf2127\n"
#: the base image's own runtime configuration, replaced by a recipe's offspot
OFFSPOT_YAML = """# base image version
---
timezone: UTC
hostname: base-image
ethernet:
  type: dhcp
ap:
  ssid: Offspot base-image
  as-gateway: true
"""
FSTAB = f"""proc            /proc           proc    defaults          0       0
PARTUUID={DISK_ID}-01  /boot/firmware  vfat    defaults          0       2
PARTUUID={DISK_ID}-02  /               ext4    defaults,noatime  0       1
PARTUUID={DISK_ID}-03  /data           ext4   defaults,noatime  0       0
"""


class ToolError(Exception):
    """A tool failed; the message names it and carries its output."""


def run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a tool (found in the sbin folders too, like the creator's); its
    output, or ToolError naming it with its last line of output."""
    try:
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": tool_path()},
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{command[0]} is missing: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip().splitlines()[-1:] or [""]
        raise ToolError(f"{command[0]} failed (exit {result.returncode}): {output[0]}")
    return result


def make_base_image(
    path: Path, *, label: str = "dos", data_partition: bool = True
) -> Path:
    """A 116 MiB image with the offspot base image's layout (see above); without
    ``data_partition``, boot and root only, the root taking the rest, as older
    Raspberry Pi images are. ``label`` is "dos" or "gpt". Built without root."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    with part.open("wb") as image:
        image.truncate(BASE_SIZE)
    root_size = BASE_ROOTFS_SIZE if data_partition else BASE_SIZE - ROOT_START - MIB
    fat, linux = ("c", "83") if label == "dos" else ("U", "L")
    script = [
        f"label: {label}",
        *([f"label-id: 0x{DISK_ID}"] if label == "dos" else []),
        f"start={BOOT_START // 512}, size={BOOT_SIZE // 512}, type={fat}",
        f"start={ROOT_START // 512}, size={root_size // 512}, type={linux}",
    ]
    if data_partition:
        script.append(f"start={DATA_START // 512}, type={linux}")
    run("sfdisk", "--no-reread", "--no-tell-kernel", str(part), stdin="\n".join(script))
    boot = f"{part}@@{BOOT_START}"
    run(
        "mformat", "-i", boot, "-F", "-c", "1", "-v", "bootfs", "-h", "64", "-s", "32",
        "-T", str(BOOT_SIZE // 512), "-H", str(BOOT_START // 512), "::",
    )  # fmt: skip
    tree = path.with_name(path.name + ".tree")
    shutil.rmtree(tree, ignore_errors=True)
    folders = ("boot", "root/etc", "root/boot/firmware", "root/data", "data/images")
    for folder in folders:
        (tree / folder).mkdir(parents=True)
    (tree / "boot" / "cmdline.txt").write_text(CMDLINE)
    (tree / "boot" / "config.txt").write_text(CONFIG_TXT)
    (tree / "boot" / "offspot.yaml").write_text(OFFSPOT_YAML)
    (tree / "root" / "etc" / "hostname").write_text("base-image\n")
    (tree / "root" / "etc" / "fstab").write_text(FSTAB)
    (tree / "data" / "master_fs").write_text("")
    try:
        for name in ("cmdline.txt", "config.txt", "offspot.yaml"):
            run("mcopy", "-i", boot, str(tree / "boot" / name), f"::/{name}")
        run(
            "mke2fs", "-q", "-F", "-t", "ext4", "-L", "rootfs",
            "-E", f"offset={ROOT_START},root_owner=0:0", "-d", str(tree / "root"),
            str(part), f"{root_size // 1024}k",
        )  # fmt: skip
        if data_partition:
            run(
                "mke2fs", "-q", "-F", "-t", "ext4", "-L", "data", "-m", "1",
                "-E", f"offset={DATA_START},root_owner=0:0", "-d", str(tree / "data"),
                str(part), f"{DATA_SIZE // 1024}k",
            )  # fmt: skip
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    # Renamed only when complete, so a second run never reuses half an image.
    part.rename(path)
    return path


def png_48x48() -> bytes:
    """A 48x48 RGB PNG, as zimwriterfs wants for the illustration."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes((x * 5, 120, 200)) * 48 for x in range(48))
    header = struct.pack(">IIBBBBB", 48, 48, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
