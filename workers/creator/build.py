"""One image from one recipe: what ``python -m workers.creator build`` and the
worker's tasks both run.

base image (cached, decompressed sparse) → OCI images (skopeo, cached) →
files (cached downloads, content, archives) → staging tree of the data
partition (the base's data partition, then images and files) → image size
(offspot-config's rule, or the recipe's fixed size) → image (``image.py``) →
block map. The build's scratch folder is removed whatever happens; a failed or
canceled build leaves no image and no block map.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from offspot_config.utils.sizes import get_margin_for, get_min_image_size_for

from outbound.guard import Allowed
from workers.common.bmap import Bmap, create_bmap
from workers.common.progress import Cancel, Progress
from workers.common.worker import UsageError, env_default
from workers.creator.base_image import prepare_base_image
from workers.creator.cache import ContentCache
from workers.creator.content import fetch_files, resolve_checksum, stage_files
from workers.creator.filesystem import (
    TreeUsage,
    dump_partition,
    link_or_copy,
    make_folders,
    minimum_data_size,
    tree_usage,
)
from workers.creator.image import PHASES as IMAGE_PHASES
from workers.creator.image import build_image
from workers.creator.oci import (
    IMAGES_FOLDER,
    Mirror,
    Puller,
    export_name,
    parse_mirrors,
)
from workers.creator.partitions import (
    ALIGNMENT,
    data_partition_start,
    read_partition_table,
)
from workers.creator.recipe import Recipe, RecipeError
from workers.creator.tools import check_cancel, check_tools

PHASES = (
    "downloading base",
    "decompressing base",
    "pulling images",
    "downloading content",
    "staging content",
    *IMAGE_PHASES,
    "writing block map",
)
#: the runtime's configuration, on the boot partition (/boot/firmware/offspot.yaml)
OFFSPOT_CONFIG = "offspot.yaml"


@dataclass(frozen=True)
class Built:
    image: Path
    bmap_path: Path
    bmap: Bmap

    @property
    def size(self) -> int:
        return self.bmap.image_size


def build(
    recipe: Recipe,
    output: Path,
    *,
    cache: ContentCache,
    work_dir: Path,
    bmap_path: Path | None = None,
    mirrors: dict[str, Mirror] | None = None,
    downloads: int = 3,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Built:
    """Build `recipe` into `output` and its block map (default `output`.bmap)."""
    output = Path(output)
    bmap_path = Path(bmap_path or f"{output}.bmap")
    report = progress or (lambda _phase, _percent: None)
    check_tools(oci=bool(recipe.images))
    check_fixed_size(recipe, declared_content(recipe, {}))
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=work_dir))
    try:
        base = prepare_base_image(
            recipe.base.source,
            cache=cache,
            checksums=(
                resolve_checksum(recipe.base.checksum, "base.checksum", cache.allowed)
                if recipe.base.checksum
                else None
            ),
            progress=progress,
            cancel=cancel,
        )
        if base.resolve() == output.resolve():
            raise RecipeError(f"base.source: {base} is also the output: name another")
        table = read_partition_table(base)
        data_start = data_partition_start(table, base)
        staging = scratch / "data"
        staging.mkdir()
        os.chmod(staging, 0o755)  # noqa: S103 - the data partition's root
        if table.get(3) is not None:
            dump_partition(base, table.get(3), staging)

        images = Puller(cache, mirrors=mirrors, config_dir=scratch).pull_all(
            recipe.images, progress=progress, cancel=cancel
        )
        report("downloading content", 0)
        fetched = fetch_files(
            recipe.files,
            cache,
            workers=downloads,
            progress=lambda _phase, percent: report("downloading content", percent),
            cancel=cancel,
        )
        report("staging content", None)
        if images:
            make_folders(staging, IMAGES_FOLDER)
        for image, path in zip(recipe.images, images, strict=True):
            target = staging.joinpath(*IMAGES_FOLDER.parts, export_name(image.ident))
            target.unlink(missing_ok=True)
            link_or_copy(path, target)
        brought = stage_files(recipe.files, fetched, staging, cancel)
        check_cancel(cancel)
        usage = tree_usage(staging)
        size = image_size(
            recipe,
            base_bytes=base.stat().st_size,
            data_start=data_start,
            usage=usage,
            content=declared_content(recipe, brought),
        )
        boot_files = []
        if recipe.offspot:
            config = scratch / OFFSPOT_CONFIG
            config.write_text(yaml.safe_dump(recipe.offspot), encoding="utf-8")
            boot_files.append((config, OFFSPOT_CONFIG))
        build_image(
            base_image=base,
            output=output,
            image_size=size,
            staging=staging,
            usage=usage,
            work_dir=scratch,
            boot_files=boot_files,
            progress=progress,
            cancel=cancel,
        )
        check_cancel(cancel)
        report("writing block map", None)
        bmap = create_bmap(output, bmap_path)
    except BaseException:
        output.unlink(missing_ok=True)
        bmap_path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Built(image=output, bmap_path=bmap_path, bmap=bmap)


# -- sizes --------------------------------------------------------------------------


def declared_content(recipe: Recipe, brought: dict[str, int]) -> int:
    """offspot-config's raw content size: each image's archive and expanded
    size, each file's (expanded) size; a size the recipe does not give is what
    the file brought (0 before it is fetched)."""
    images = sum(image.filesize + image.fullsize for image in recipe.images)
    files = sum(
        entry.size if entry.size is not None else brought.get(entry.label, 0)
        for entry in recipe.files
    )
    return images + files


def offspot_minimum(recipe: Recipe, content: int) -> int:
    """image-creator's smallest image: root file system, content and
    offspot-config's margin, in whole sectors."""
    return get_min_image_size_for(
        rootfs_size=recipe.base.rootfs_size,
        content_size=content,
        margin=get_margin_for(content),
    )


def check_fixed_size(recipe: Recipe, content: int, needed: int = 0) -> None:
    """Refuse a fixed output.size the content does not fit in."""
    if recipe.size is None:
        return
    minimum = max(offspot_minimum(recipe, content), needed)
    if recipe.size < minimum:
        raise RecipeError(
            f"output.size: {recipe.size} bytes is less than the {minimum} bytes this "
            "recipe needs (root file system, content and a 10% margin): give at "
            f"least {-(-minimum // 10**9)}G, or auto"
        )


def image_size(
    recipe: Recipe,
    *,
    base_bytes: int,
    data_start: int,
    usage: TreeUsage,
    content: int,
) -> int:
    """The recipe's output.size, or for auto the bigger of offspot-config's
    minimum and what the staged tree needs, rounded up to 4 MiB (the
    partitions' alignment, and whole blocks for the writer's buffers)."""
    needed = max(base_bytes, data_start + minimum_data_size(usage))
    check_fixed_size(recipe, content, needed)
    if recipe.size is not None:
        return recipe.size
    size = max(offspot_minimum(recipe, content), needed)
    return -(-size // ALIGNMENT) * ALIGNMENT


# -- options ------------------------------------------------------------------------


def add_build_options(parser: argparse.ArgumentParser) -> None:
    """The options `build` and the worker share."""
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=env_default("CREATOR_WORK_DIR", "var/creator/work"),
        help="where images are built; needs room for one image and its expanded "
        "archives per build (CREATOR_WORK_DIR)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=env_default("CREATOR_CACHE_DIR", "var/creator/cache"),
        help="shared cache of base images, OCI images and content (CREATOR_CACHE_DIR)",
    )
    parser.add_argument(
        "--cache-size",
        default=env_default("CREATOR_CACHE_SIZE", "50G"),
        help="size limit of the cache, e.g. 50G (CREATOR_CACHE_SIZE)",
    )
    parser.add_argument(
        "--downloads",
        type=int,
        default=int(env_default("CREATOR_DOWNLOADS", 3)),
        help="content files downloaded at once (CREATOR_DOWNLOADS, default 3)",
    )
    parser.add_argument(
        "--registry-mirror",
        action="append",
        default=None,
        metavar="REGISTRY=MIRROR",
        help="pull REGISTRY's images (e.g. ghcr.io) from MIRROR instead "
        "([http[s]://]host[:port][/path]; http:// without TLS); repeat for "
        "several (CREATOR_REGISTRY_MIRRORS, separated by spaces)",
    )
    parser.add_argument(
        "--outbound-allow",
        action="append",
        default=None,
        metavar="NETWORK|HOST",
        help="fetch from this network (10.0.0.0/8), address or host name "
        "(mirror.lan, *.lan) besides public addresses: a private mirror; repeat "
        "for several (CREATOR_OUTBOUND_ALLOWED, separated by commas or spaces)",
    )


def mirrors_of(options: argparse.Namespace) -> dict[str, Mirror]:
    values = options.registry_mirror
    if values is None:
        values = re.split(r"[\s,]+", env_default("CREATOR_REGISTRY_MIRRORS", ""))
    try:
        return parse_mirrors(value for value in values if value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def allowed_of(options: argparse.Namespace) -> Allowed:
    """What the creator may fetch from besides public addresses."""
    values = options.outbound_allow
    if values is None:
        values = [env_default("CREATOR_OUTBOUND_ALLOWED", "")]
    try:
        return Allowed.parse(values)
    except ValueError as exc:
        raise UsageError(f"--outbound-allow: {exc}") from None


def prepare_folders(options: argparse.Namespace) -> None:
    """Make the work and cache folders, or say why not."""
    for folder in (options.work_dir, options.cache_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {folder}: {exc.strerror}") from exc
