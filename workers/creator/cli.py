"""``python -m workers.creator build CONFIG.yaml OUT.img``: one image from an
image-creator YAML file, as ``image-creator CONFIG.yaml OUT.img`` makes it, but
without root, mount or loop device, and with ``OUT.img.bmap`` beside it. The
worker runs the same build for its tasks (``build.py``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import urllib.parse
from pathlib import Path

from outbound.guard import Allowed
from workers.common.progress import Canceled, PhaseBar
from workers.common.worker import UsageError, env_default, parse_size
from workers.creator import outbound
from workers.creator.build import (
    add_build_options,
    allowed_of,
    build,
    mirrors_of,
    prepare_folders,
)
from workers.creator.cache import ContentCache
from workers.creator.download import ContentError
from workers.creator.oci import OciError
from workers.creator.recipe import Recipe, RecipeError, load_recipe, parse_recipe
from workers.creator.tools import BuildError

log = logging.getLogger(__name__)
PROG = "python -m workers.creator build"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Build one SD-card image from an image-creator YAML file, "
        "without root, mount or loop device; its block map goes beside it.",
    )
    parser.add_argument(
        "config", metavar="CONFIG.yaml", help="image-creator YAML: a path or a URL"
    )
    parser.add_argument("output", metavar="OUT.img", type=Path, help="image to write")
    parser.add_argument(
        "--bmap", type=Path, help="where the block map goes (default OUT.img.bmap)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT.img (image-creator's --overwrite)",
    )
    add_build_options(parser)
    parser.add_argument(
        "--progress",
        choices=["auto", "bar", "log"],
        default="auto",
        help="progress bars in a terminal, log lines otherwise (default auto)",
    )
    parser.add_argument(
        "--log-level",
        default=env_default("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser


def read_recipe(source: str, allowed: Allowed) -> Recipe:
    if urllib.parse.urlparse(source).scheme in ("http", "https"):
        try:
            return parse_recipe(outbound.read_text(source, allowed))
        except OSError as exc:
            raise RecipeError(f"cannot read the recipe: {exc}") from None
    return load_recipe(Path(source))


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        allowed = allowed_of(options)
        recipe = read_recipe(options.config, allowed)
        output = options.output
        if output.exists() and not options.overwrite:
            raise UsageError(f"{output} exists: remove it or pass --overwrite")
        mirrors = mirrors_of(options)
        limit = parse_size(options.cache_size)
        prepare_folders(options)
        bar = PhaseBar(output.name, mode=options.progress)
        cache = ContentCache(options.cache_dir, limit, allowed=allowed)
        with cache, bar:
            built = build(
                recipe,
                output,
                cache=cache,
                work_dir=options.work_dir,
                bmap_path=options.bmap,
                mirrors=mirrors,
                downloads=options.downloads,
                progress=lambda phase, percent: bar.update(phase, percent or 0.0),
                cancel=stop.is_set,
            )
    except (UsageError, RecipeError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Canceled:
        print(f"{PROG}: canceled; nothing was left behind", file=sys.stderr)
        return 130
    except (BuildError, ContentError, OciError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{built.image}: {built.size} bytes, {built.bmap.mapped_bytes} of them "
        f"mapped; block map {built.bmap_path}"
    )
    return 0
