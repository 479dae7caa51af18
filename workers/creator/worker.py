"""The creator worker: claims ``create`` tasks and builds each order's recipe.

A task's work is ``{"upload_folder": …}``, its claim names the warehouse, and its
recipe (image-creator's YAML) is fetched from ``tasks/{id}/recipe/``. Per task:
the recipe is built as ``python -m workers.creator build`` builds it
(``build.py``: base image, OCI images and content from the shared cache, image
sized to its content unless the recipe fixes it, block map) → sha256 → declare
the image to the API → upload the image and its block map to the warehouse
(resumable) → report success. The lease carries the phase and percentage all
along; a lost lease or a cancel stops the build and removes its files.
"""

import argparse
import errno
import logging
import shutil
from pathlib import Path

from outbound.guard import Refused
from workers.common.api import ApiError
from workers.common.ftp import FtpError, upload
from workers.common.hashing import sha256_file
from workers.common.lease import (
    SUCCEEDED,
    Failure,
    Lease,
    failed,
    run_under_lease,
)
from workers.common.names import WorkerKind
from workers.common.progress import PhaseBar
from workers.common.worker import Worker, add_common_options, parse_size
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
from workers.creator.recipe import RecipeError, parse_recipe
from workers.creator.tools import BuildError

log = logging.getLogger(__name__)

#: the build's phases as the API shows them
API_PHASES = {
    "decompressing base": "downloading base",
    "staging content": "building",
    "copying base": "building",
    "partitioning": "building",
    "building filesystem": "building",
    "writing config": "building",
    "writing block map": "building",
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.creator",
        description="Build SD-card images for orders and upload them to the "
        "warehouse. `python -m workers.creator build CONFIG.yaml OUT.img` builds "
        "one image from a file instead (see its --help).",
    )
    add_common_options(parser)
    add_build_options(parser)
    return parser


def judge(exc: Exception) -> Failure | None:
    """How a failed build is reported."""
    if isinstance(exc, RecipeError | ContentError | Refused):
        # A refused recipe, a missing file, a wrong checksum or an address the
        # rule refuses will not heal by retrying.
        return failed(str(exc), retryable=False)
    if isinstance(exc, OciError):
        return failed(str(exc), retryable=exc.retryable)
    if isinstance(exc, BuildError | FtpError | OSError | ApiError):
        return failed(str(exc))
    return None


#: a full disk (or quota) on this machine
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def disk_full(exc: Exception) -> bool:
    """Whether ``exc`` is this machine's disk being full: an OSError, or a
    tool (mke2fs, sfdisk, mtools) that said so."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL
    return isinstance(exc, BuildError) and "No space left on device" in str(exc)


class Creator(Worker):
    kind = WorkerKind.CREATOR

    def __init__(self, options, api=None):
        super().__init__(options, api)
        self.cache_limit = parse_size(options.cache_size)
        self.mirrors = mirrors_of(options)
        self.allowed = allowed_of(options)
        prepare_folders(options)

    def capabilities(self) -> dict:
        return {"free_disk": shutil.disk_usage(self.options.work_dir).free}

    def claim_body(self) -> dict:
        return {**super().claim_body(), **self.capabilities()}

    def execute(self, task: dict) -> None:
        folder = self.options.work_dir / task["order"]
        bar = PhaseBar(f"order {task['order'][:8]}", mode=self.options.progress)
        try:
            outcome = run_under_lease(
                self.api,
                task,
                lambda lease: self.build_and_upload(task, lease, folder, bar),
                interval=self.options.renew,
                judge=self.judge,
                bar=bar,
            )
        finally:
            # Whatever happened, the build's files are of no more use here.
            shutil.rmtree(folder, ignore_errors=True)
        if outcome.state == SUCCEEDED:
            log.info("order %s built and uploaded", task["order"])

    def judge(self, exc: Exception) -> Failure | None:
        """``judge``, with a full disk named: a write's ENOSPC names no file."""
        if not disk_full(exc):
            return judge(exc)
        folder = self.full_folder()
        return failed(
            f"no space left on device in {folder} ({exc}); the build's files "
            "are removed and the task is tried again: make room there or give "
            "the creator a larger disk"
        )

    def full_folder(self) -> Path:
        """Of the work and cache folders, the one whose disk has the least
        room now (the build's files are still there)."""
        folders = [self.options.work_dir, self.options.cache_dir]
        return min(folders, key=lambda folder: shutil.disk_usage(folder).free)

    def build_and_upload(self, task, lease: Lease, folder: Path, bar) -> dict:
        work = task["work"]
        # The recipe is fetched apart: claims stay light (apps/orders/pipeline.py).
        answer = self.api.get(f"api/v1/tasks/{task['id']}/recipe/")
        if not isinstance(answer, dict) or not answer.get("recipe"):
            raise RecipeError(
                "the task has no recipe: the scheduler is older than this creator"
            )
        recipe = parse_recipe(answer["recipe"])
        warehouse = work.get("warehouse") or task.get("warehouse")
        if not warehouse:
            raise BuildError("the claim named no warehouse to upload to")
        folder.mkdir(parents=True, exist_ok=True)

        def cancel() -> bool:
            return lease.lost.is_set() or lease.canceled.is_set()

        def progress(phase: str, percent: float | None) -> None:
            lease.check()
            phase = API_PHASES.get(phase, phase)
            lease.progress(phase, percent)
            if percent is not None:
                bar.update(phase, percent)

        image, bmap_path = folder / "image.img", folder / "image.bmap"
        cache = ContentCache(
            self.options.cache_dir, self.cache_limit, allowed=self.allowed
        )
        with cache:
            built = build(
                recipe,
                image,
                cache=cache,
                work_dir=folder / "build",
                bmap_path=bmap_path,
                mirrors=self.mirrors,
                downloads=self.options.downloads,
                progress=progress,
                cancel=cancel,
            )
        lease.check()
        lease.progress("hashing", 0)
        sha256 = sha256_file(
            image,
            progress=lambda done, size: progress("hashing", 100.0 * done / size),
        )
        bmap_sha256 = sha256_file(bmap_path)
        self.api.post(
            f"api/v1/tasks/{task['id']}/image/",
            {
                "lease_id": task["lease_id"],
                "file_name": image.name,
                "size": image.stat().st_size,
                "sha256": sha256,
                "bmap_name": bmap_path.name,
                "bmap_size": bmap_path.stat().st_size,
                "bmap_sha256": bmap_sha256,
            },
        )
        lease.progress("uploading", 0)
        total = image.stat().st_size + bmap_path.stat().st_size
        sent_before = 0

        def uploaded(done, _total):
            percent = 100 * (sent_before + done) / total
            lease.progress("uploading", percent)
            bar.update("uploading", percent)

        for path in (bmap_path, image):
            upload(
                warehouse,
                self.api.username,
                lambda: self.api.access_token,
                path,
                f"{work['upload_folder']}/{path.name}",
                progress=uploaded,
                cancel=cancel,
            )
            sent_before += path.stat().st_size
        return {
            "size": built.size,
            "sha256": sha256,
            "mapped_bytes": built.bmap.mapped_bytes,
        }
