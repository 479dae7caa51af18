"""Creator build benchmark, two modes.

``cp`` (the default): an image sized to its content against `cp` of it.

    .venv/bin/python bench/creator_bench.py [--content-gib 2] [--work DIR]
        [--size auto|29758586880]

Both sides read the same freshly written content files and end with an fsync of
what they wrote, in the same run. Targets: the image's build time (the block map
aside) <= 1.5 x cp time, and disk blocks of the image <= content + base + 5%.

``cards`` (issue 12): the same content ordered on 8, 32 and 128 GB cards, each
order's recipe frozen by a real API, built, hashed, uploaded to a real
warehouse and downloaded, phase by phase, side by side (``bench/card_sizes.py``).

    .venv/bin/python bench/creator_bench.py cards [--content-gib 1] [--rounds 2]
        [--cards 8 32 128] [--work DIR]

Targets: 128 GB total <= 1.1 x 8 GB total; image bytes <= content + base +
offspot-config's margin.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.card_sizes import main as cards_main
from bench.card_sizes import make_content
from demo.inputs import BASE_ROOTFS_SIZE, make_base_image
from workers.common.hashing import sha256_file
from workers.creator.build import build as build_recipe
from workers.creator.cache import ContentCache
from workers.creator.recipe import parse_recipe

MIB = 1024 * 1024


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    if sys.argv[1:2] == ["cards"]:
        cards_main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["cp"]:
        del sys.argv[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[2])
    parser.add_argument("--content-gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument(
        "--size",
        default="auto",
        help="the recipe's output.size (default auto: sized to the content; "
        "29758586880 is a 32 GB card's usable bytes)",
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

        recipe = parse_recipe(
            yaml.safe_dump(
                {
                    "base": {"source": str(base), "rootfs_size": BASE_ROOTFS_SIZE},
                    "output": {"size": args.size},
                    "files": [
                        {"url": f"file://{path}", "to": f"/data/zims/{path.name}"}
                        for path in content
                    ],
                    "offspot": {"ap": {"ssid": "bench", "passphrase": "benchmark"}},
                }
            )
        )

        marks = {}

        def mark(phase, _percent) -> None:
            marks.setdefault(phase, time.perf_counter())

        def build() -> None:
            marks["start"] = time.perf_counter()
            with ContentCache(work / "cache", 2**40) as cache:
                build_recipe(
                    recipe, output, cache=cache, work_dir=work / "build", progress=mark
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
        # The block map (a sha256 of every mapped range) is part of a build now;
        # the target compares the image alone, as before.
        bmap_seconds = marks["start"] + build_seconds - marks["writing block map"]
        image_seconds = build_seconds - bmap_seconds
        print(f"build         {build_seconds:.1f} s ({image_seconds:.1f} s image, "
              f"{bmap_seconds:.1f} s block map)")  # fmt: skip
        print(f"ratio         {image_seconds / cp_seconds:.2f} x (target <= 1.5)")
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
