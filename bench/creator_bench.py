"""Creator build benchmark: an image for a 32 GB card against `cp` of its content.

    .venv/bin/python bench/creator_bench.py [--content-gib 2] [--work DIR]
        [--image-bytes 29758586880]

Both sides read the same freshly written content files and end with an fsync of
what they wrote, in the same run. Targets: build time <= 1.5 x cp time, and disk
blocks of the image <= content + base + 5%.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.inputs import make_base_image
from workers.common.hashing import sha256_file
from workers.creator.image import build_image

MIB = 1024 * 1024
#: work["image_bytes"] the API gives for a 32 GB card
IMAGE_BYTES_32GB = 29_758_586_880


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def make_content(folder: Path, total: int, count: int) -> list[Path]:
    """`count` files of random (incompressible, non-zero) bytes, `total` in all."""
    folder.mkdir()
    rng = random.Random(42)  # noqa: S311 - test data, not secrets
    files = []
    for index in range(count):
        path = folder / f"content{index:02d}.zim"
        with path.open("wb") as stream:
            left = total // count
            while left:
                step = min(left, 16 * MIB)
                stream.write(rng.randbytes(step))
                left -= step
        files.append(path)
    return files


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content-gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument(
        "--image-bytes",
        type=int,
        default=IMAGE_BYTES_32GB,
        help="image size, what the API gives for the card (default: a 32 GB card)",
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="creator-bench-", dir=args.work))
    try:
        base = make_base_image(work / "base.img")
        content = make_content(
            work / "content", int(args.content_gib * 1024**3), args.files
        )
        content_bytes = sum(path.stat().st_size for path in content)
        subprocess.run(["sync", *map(str, content)], check=True)

        copies = work / "cp"
        copies.mkdir()

        def copy() -> None:
            subprocess.run(["cp", *map(str, content), str(copies)], check=True)
            subprocess.run(["sync", *map(str, copies.iterdir())], check=True)

        output = work / "out" / "order.img"

        def build() -> None:
            build_image(
                base_image=base,
                output=output,
                image_bytes=args.image_bytes,
                content_files=[(path, f"zims/{path.name}") for path in content],
                hotspot_config={"name": "bench", "wifi_password": "benchmark"},
                work_dir=work / "build",
            )
            with output.open("rb") as stream:
                os.fsync(stream.fileno())

        cp_seconds = timed(copy)
        shutil.rmtree(copies)
        build_seconds = timed(build)
        hash_seconds = timed(lambda: sha256_file(output))

        budget = int((content_bytes + allocated(base)) * 1.05)
        print(f"date          {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine       {platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.system()} {platform.release()}")  # fmt: skip
        print(
            f"content       {content_bytes / 1024**3:.2f} GiB in {len(content)} files"
        )
        print(f"image         {output.stat().st_size / 1e9:.2f} GB")
        print(f"cp            {cp_seconds:.1f} s")
        print(f"build         {build_seconds:.1f} s")
        print(f"ratio         {build_seconds / cp_seconds:.2f} x (target <= 1.5)")
        print(f"allocated     {allocated(output) / MIB:.0f} MiB")
        print(f"budget        {budget / MIB:.0f} MiB (content + base + 5%)")
        print(f"sha256_file   {hash_seconds:.1f} s")
    finally:
        if args.keep:
            print(f"kept          {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
