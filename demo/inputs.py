"""Small real inputs for the demo and the tests, made without root or network:
a Raspberry-Pi-like base image and a PNG (the ZIM files are ``catalog``'s).

The creator's default base image is a download; offline demos and CI cannot fetch
it, so they build a 128 MiB stand-in with the same layout (FAT32 boot, ext4 root)
using the tools the creator needs anyway (sfdisk, mtools, mke2fs).
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
BASE_SIZE = 128 * MIB
BOOT_START = 1 * MIB
# mtools refuses FAT32 below 65525 clusters: 64 MiB with 512-byte clusters is enough.
BOOT_SIZE = 64 * MIB
ROOT_START = BOOT_START + BOOT_SIZE


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
    path: Path, *, label: str = "dos", data_partition: bool = False
) -> Path:
    """A 128 MiB Raspberry-Pi-like image: FAT32 boot, ext4 root and, if asked, an
    ext4 data partition; ``label`` is "dos" or "gpt". Built without root."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    with part.open("wb") as image:
        image.truncate(BASE_SIZE)
    root_size = 40 * MIB if data_partition else BASE_SIZE - ROOT_START - MIB
    fat, linux = ("c", "83") if label == "dos" else ("U", "L")
    script = [
        f"label: {label}",
        f"start={BOOT_START // 512}, size={BOOT_SIZE // 512}, type={fat}",
        f"start={ROOT_START // 512}, size={root_size // 512}, type={linux}",
    ]
    if data_partition:
        script.append(f"start={(ROOT_START + root_size) // 512}, type={linux}")
    run("sfdisk", "--no-reread", "--no-tell-kernel", str(part), stdin="\n".join(script))
    boot = f"{part}@@{BOOT_START}"
    run(
        "mformat", "-i", boot, "-F", "-c", "1", "-v", "BOOT", "-h", "64", "-s", "32",
        "-T", str(BOOT_SIZE // 512), "-H", str(BOOT_START // 512), "::",
    )  # fmt: skip
    tree = path.with_name(path.name + ".tree")
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "root" / "etc").mkdir(parents=True)
    (tree / "root" / "etc" / "hostname").write_text("hotspot\n")
    (tree / "cmdline.txt").write_text("console=serial0 root=PARTUUID=0-02\n")
    try:
        run("mcopy", "-i", boot, str(tree / "cmdline.txt"), "::/cmdline.txt")
        run(
            "mke2fs", "-q", "-F", "-t", "ext4", "-L", "rootfs",
            "-E", f"offset={ROOT_START}", "-d", str(tree / "root"), str(part),
            f"{root_size // 1024}k",
        )  # fmt: skip
        if data_partition:
            (tree / "data").mkdir()
            (tree / "data" / "old.txt").write_text("from the base image\n")
            start = ROOT_START + root_size
            run(
                "mke2fs", "-q", "-F", "-t", "ext4", "-E", f"offset={start}",
                "-d", str(tree / "data"), str(part), f"{(BASE_SIZE - start) // 1024}k",
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
