"""Flash engine benchmark: our engine against dd on the same loop device, as root.

    .venv/bin/python bench/flash_bench.py [--size-mib 2048] [--mapped 0.5]
        [--dir DIR] [--repeat 5] [--loop-direct-io on|off] [--baseline DIR]

One sparse image (random data in extents of 64 KiB-8 MiB, ``--mapped`` of it
data), one loop device over a preallocated file. Rows: full-image write (engine
without bmap vs ``dd bs=4M oflag=direct conv=fsync``), bmap write (first card of
an image, which checks the image against the bmap, and the next card), verify
(what flash() does: the bmap's ranges compared with the image; the bmap's sha256
without the image; the whole image) vs ``dd iflag=direct`` read, bmaptool copy
for reference. Each engine run is a child process that reports its own peak RSS
(VmHWM). The median of ``--repeat`` runs is shown; MB = 10^6 bytes.
``--baseline DIR`` (another checkout's root, e.g. ``git archive OLD workers |
tar -x -C DIR``) runs its engine too, in the same rounds beside this one, on
the same device: a "before" column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.common.bmap import create_bmap  # noqa: E402

MiB = 1024 * 1024

# Runs in a child so each engine run has its own peak RSS (a fork of this process
# would start with our memory).
CHILD = """
import json, sys, time
from workers.writer.flash import flash, verify
op, image, device, bmap = sys.argv[1:5]
started = time.perf_counter()
if op == "write-full":
    done = flash(image, device, verify=False).bytes_written
elif op == "write-bmap":
    done = flash(image, device, bmap, verify=False).bytes_written
elif op == "write-bmap-next":  # the image was checked for the card before
    flash(image, device, bmap, verify=False)
    started = time.perf_counter()
    done = flash(image, device, bmap, verify=False).bytes_written
elif op == "verify-ranges":
    done = verify(device, bmap, image=image)
elif op == "verify-sha256":
    done = verify(device, bmap)
else:
    done = verify(device, image)
seconds = time.perf_counter() - started
status = open("/proc/self/status").read()
hwm = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"bytes": done, "seconds": seconds, "hwm_kib": hwm}))
"""


def make_image(path: Path, size: int, mapped: float, seed: int = 7) -> None:
    """Sparse image: data extents of 64 KiB-8 MiB separated by holes."""
    rng = random.Random(seed)  # noqa: S311 - test data
    with open(path, "wb") as out:
        out.truncate(size)
        pos = 0
        while pos < size:
            extent = min(rng.choice((64 * 1024, MiB, 4 * MiB, 8 * MiB)), size - pos)
            out.seek(pos)
            out.write(rng.randbytes(extent))
            hole = int(extent * (1 - mapped) / mapped) if mapped < 1 else 0
            pos += extent + hole // 4096 * 4096


def engine(op: str, image: Path, device: str, bmap: Path, root: Path = ROOT) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, op, str(image), device, str(bmap)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--mapped", type=float, default=0.5, help="data fraction")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="scratch folder")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop-direct-io", choices=("on", "off"), default="on")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose engine runs beside"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: run as root (the benchmark attaches a loop device)")
    size = args.size_mib * MiB

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="flash-bench-", dir=args.dir))
    device = None
    try:
        image, bmap_path = work / "bench.img", work / "bench.bmap"
        make_image(image, size, args.mapped)
        started = time.perf_counter()
        bmap = create_bmap(image, bmap_path)
        map_seconds = time.perf_counter() - started
        card = work / "card.raw"
        with open(card, "wb") as out:
            os.posix_fallocate(out.fileno(), 0, size)
        device = subprocess.run(
            ["losetup", "-f", "--show", f"--direct-io={args.loop_direct_io}", card],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        blocks = str(size // (4 * MiB))
        dd_write = ["dd", f"if={image}", f"of={device}", "bs=4M", "oflag=direct"]
        dd_write += ["conv=fsync", "status=none"]
        dd_read = ["dd", f"if={device}", "of=/dev/null", "bs=4M", "iflag=direct"]
        dd_read += [f"count={blocks}", "status=none"]
        bmaptool = ["bmaptool", "-q", "copy", "--bmap", str(bmap_path), str(image)]
        bmaptool.append(device)
        # Warm-up: page-cache the image and write every block of the card once,
        # so no run pays for first-time allocation or reading the image from disk.
        timed(["cat", str(image)])
        timed(dd_write)

        runs: dict[str, list[float]] = {}
        peaks: dict[str, list[int]] = {"": [], "before": []}
        engines = [("", ROOT)] + ([("before", args.baseline)] if args.baseline else [])

        def run_dd() -> None:
            runs.setdefault("dd-write", []).append(timed(dd_write))
            runs.setdefault("dd-read", []).append(timed(dd_read))

        for round_ in range(args.repeat):
            if round_ % 2:  # alternate who goes first: the machine may be shared
                run_dd()
            ops = ("write-full", "write-bmap", "write-bmap-next")
            ops += ("verify-ranges", "verify-sha256", "verify-full")
            for op in ops:
                # Side by side: each op by both engines, who goes first alternates.
                for tag, root in engines[:: -1 if round_ % 2 else 1]:
                    if op == "verify-ranges":  # the card must hold the image
                        engine("write-full", image, device, bmap_path)
                    result = engine(op, image, device, bmap_path, root)
                    runs.setdefault(op + tag, []).append(result["seconds"])
                    peaks[tag].append(result["hwm_kib"])
            if not round_ % 2:
                run_dd()
            if shutil.which("bmaptool"):
                runs.setdefault("bmaptool", []).append(timed(bmaptool))

        best = {name: statistics.median(times) for name, times in runs.items()}
        mapped = bmap.mapped_bytes
        ops_bytes = {"write-full": size, "write-bmap": mapped}
        ops_bytes |= {"write-bmap-next": mapped, "verify-ranges": mapped}
        ops_bytes |= {"verify-sha256": mapped, "verify-full": size}

        def rate(nbytes: int, seconds: float) -> float:
            return nbytes / 1e6 / seconds

        dd_read = rate(size, best["dd-read"])

        def versus_read(nbytes: int, op: str) -> str:
            return f"{rate(nbytes, best[op]) / dd_read:.2f} x dd read speed"

        rows = [
            ("dd write, full image", size, best["dd-write"], "1.00 x"),
            (
                "engine write, full image",
                size,
                best["write-full"],
                f"{best['dd-write'] / best['write-full']:.2f} x dd speed",
            ),
            (
                "engine write, bmap, 1st card",
                mapped,
                best["write-bmap"],
                f"{mapped / size:.2f} x bytes, "
                f"{best['dd-write'] / best['write-bmap']:.2f} x faster than dd",
            ),
            (
                "engine write, bmap, next",
                mapped,
                best["write-bmap-next"],
                f"{best['dd-write'] / best['write-bmap-next']:.2f} x faster than dd",
            ),
            ("dd read (iflag=direct)", size, best["dd-read"], "1.00 x"),
            (
                "verify, ranges vs image",
                mapped,
                best["verify-ranges"],
                versus_read(mapped, "verify-ranges"),
            ),
            (
                "verify, ranges sha256",
                mapped,
                best["verify-sha256"],
                versus_read(mapped, "verify-sha256"),
            ),
            (
                "verify, whole image",
                size,
                best["verify-full"],
                versus_read(size, "verify-full"),
            ),
        ]
        if "bmaptool" in best:
            rows.append(
                (
                    "bmaptool copy, bmap (ref.)",
                    mapped,
                    best["bmaptool"],
                    f"{best['bmaptool'] / best['write-bmap']:.2f} x engine time",
                )
            )
        print(
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"{os.cpu_count()} cores, Linux {platform.release()}; image "
            f"{size / MiB:.0f} MiB, {mapped / size:.1%} mapped; loop direct-io="
            f"{args.loop_direct_io}; median of {args.repeat}; load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
        )
        print(
            f"bmap created in {map_seconds:.2f} s ({rate(size, map_seconds):.0f} MB/s)"
        )
        print(f"{'operation':28} {'MB':>8} {'seconds':>8} {'MB/s':>8}  ratio")
        for name, nbytes, seconds, ratio in rows:
            print(
                f"{name:28} {nbytes / 1e6:8.0f} {seconds:8.2f} "
                f"{rate(nbytes, seconds):8.0f}  {ratio}"
            )
        print(f"engine peak RSS (VmHWM): {max(peaks['']) / 1024:.1f} MiB")
        if args.baseline:
            print(f"before ({args.baseline}), same rounds:")
            for op, nbytes in ops_bytes.items():
                after, before = best[op], best[op + "before"]
                versus = ""
                if op.startswith("verify"):
                    versus = (
                        f", {rate(nbytes, before) / dd_read:.2f} -> "
                        f"{rate(nbytes, after) / dd_read:.2f} x dd read speed"
                    )
                print(
                    f"{op:28} {before:8.2f} s -> {after:.2f} s "
                    f"({before / after:.2f} x){versus}"
                )
            print(f"before peak RSS (VmHWM): {max(peaks['before']) / 1024:.1f} MiB")
    finally:
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
