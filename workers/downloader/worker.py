"""The downloader of a writer host: brings images from the warehouse to the host.

Per task: fetch the block map, then the image, over FTP into ``.part`` files
that a later attempt resumes (REST) → check size and sha256 of both against
what the creator declared → report success; the API then creates one write
task per copy, bound to this host. A file that fails the check is deleted and
the task reported failed: nothing unverified is ever written to a card.

Images live in ``<image dir>/<order id>/`` (the writers read them there). While
idle, the downloader asks the API which orders this host must keep (a download
or a copy still to do) and deletes the other order folders.
"""

import argparse
import logging
import re
import shutil
import time
from pathlib import Path

from workers.common.api import ApiError
from workers.common.ftp import FtpError, download
from workers.common.hashing import sha256_file
from workers.common.lease import (
    CANCELED,
    SUCCEEDED,
    Failure,
    Lease,
    failed,
    run_under_lease,
)
from workers.common.names import WorkerKind
from workers.common.progress import PhaseBar
from workers.common.worker import (
    UsageError,
    Worker,
    add_common_options,
    env_default,
    parse_size,
)

log = logging.getLogger(__name__)

ORDER_FOLDER = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.downloader",
        description="Download images from the warehouse to this writer host.",
    )
    add_common_options(parser)
    parser.add_argument(
        "--image-dir",
        type=Path,
        default=env_default("IMAGER_IMAGE_DIR", "var/images"),
        help="where images are kept for the writers, <order>/<file> "
        "(IMAGER_IMAGE_DIR; give the writers the same)",
    )
    parser.add_argument(
        "--reserve",
        default=env_default("DOWNLOADER_RESERVE", "1G"),
        help="free space never counted as room for images, e.g. 2G "
        "(DOWNLOADER_RESERVE, default 1G)",
    )
    return parser


class Refused(Exception):
    """The downloaded file is not the one the creator declared."""


def judge(exc: Exception) -> Failure | None:
    """How a failed download is reported. A refused file was deleted; after
    other failures the .part files stay: the next attempt resumes them."""
    if isinstance(exc, Refused | FtpError | OSError | ApiError):
        return failed(str(exc))
    return None


class Downloader(Worker):
    kind = WorkerKind.DOWNLOADER

    @property
    def lease_interval(self) -> float:
        return self.options.renew  # --renew / IMAGER_RENEW

    ftp_attempts = 6
    ftp_pause = 2.0  # seconds before the first resume; doubles up to a minute

    def __init__(self, options, api=None):
        super().__init__(options, api)
        self.reserve = parse_size(options.reserve)
        try:
            options.image_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create --image-dir {options.image_dir}: {exc.strerror}"
            ) from exc

    def free_disk(self) -> int:
        """Room for images: free space of the image folder less the reserve."""
        return max(0, shutil.disk_usage(self.options.image_dir).free - self.reserve)

    def capabilities(self) -> dict:
        return {"free_disk": self.free_disk()}

    def claim_body(self) -> dict:
        return {**super().claim_body(), "free_disk": self.free_disk()}

    def claim(self) -> dict | None:
        task = super().claim()
        if task is None:
            # Idle: the moment to drop images no copy needs any more. Not before
            # the claim: a .part of a task we get back is worth resuming.
            self.clean_up()
        return task

    def clean_up(self, busy: set[str] = frozenset()) -> list[str]:
        """Delete order folders this host no longer needs; returns their names."""
        try:
            answer = self.api.get(f"api/v1/workers/{self.worker_id}/keep/")
        except ApiError as exc:
            log.warning("cannot ask which images to keep, keeping all: %s", exc)
            return []
        keep = set(answer["orders"]) | set(busy)
        deleted = []
        for folder in sorted(self.options.image_dir.iterdir()):
            # Only folders we made: the image dir may hold other things.
            if not folder.is_dir() or not ORDER_FOLDER.match(folder.name):
                continue
            if folder.name in keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            log.info("deleted the image of order %s: no copy left here", folder.name)
            deleted.append(folder.name)
        return deleted

    def execute(self, task: dict) -> None:
        folder = self.options.image_dir / task["order"]
        bar = PhaseBar(f"order {task['order'][:8]}", mode=self.options.progress)
        outcome = run_under_lease(
            self.api,
            task,
            lambda lease: self.fetch(task, lease, folder, bar),
            interval=self.lease_interval,
            judge=judge,
            bar=bar,
        )
        if outcome.state == SUCCEEDED:
            log.info("order %s: image downloaded and verified", task["order"])
        elif outcome.state == CANCELED:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("task %s: files removed", task["id"])

    def image_of(self, task: dict) -> tuple[dict, str]:
        work = task.get("work") or {}
        image, url = work.get("image"), work.get("warehouse")
        if not image or not url:
            info = self.api.get(f"api/v1/tasks/{task['id']}/download-info/")
            image, url = info, info["ftp_url"]
        return image, url

    def fetch(self, task: dict, lease: Lease, folder: Path, bar) -> dict:
        image, url = self.image_of(task)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # The small block map first: a host that has it has begun this image.
        files = [
            (
                image["bmap_path"],
                image["bmap_name"],
                image["bmap_size"],
                image["bmap_sha256"],
            ),
            (image["path"], image["file_name"], image["size"], image["sha256"]),
        ]
        total = sum(size for _, _, size, _ in files)
        before = 0

        def cancel() -> bool:
            return lease.lost.is_set() or lease.canceled.is_set()

        def show(phase: str, percent: float) -> None:
            lease.progress(phase, percent)
            bar.update(phase, percent)

        lease.progress("downloading", 0)
        for remote, name, size, _sha in files:
            local = folder / name

            def received(done, _total, before=before):
                show("downloading", 100.0 * (before + done) / total)

            if not (local.exists() and local.stat().st_size == size):
                local.unlink(missing_ok=True)
                download(
                    url,
                    self.api.username,
                    lambda: self.api.access_token,
                    remote,
                    local,
                    size=size,
                    progress=received,
                    cancel=cancel,
                    attempts=self.ftp_attempts,
                    pause=self.ftp_pause,
                )
            before += size
        lease.check()
        lease.progress("verifying", 0)
        hashed = 0
        for remote, name, size, sha in files:
            local = folder / name

            def hashing(done, _size, hashed=hashed):
                lease.check()
                show("verifying", 100.0 * (hashed + done) / total)

            got_size = local.stat().st_size
            digest = sha256_file(local, hashing)
            if got_size != size or digest != sha:
                # Never keep it: a writer must not find it, and the next attempt
                # must download it again rather than resume a bad file.
                local.unlink(missing_ok=True)
                raise Refused(
                    f"{remote} is not the file the creator declared: "
                    f"{got_size} bytes with sha256 {digest}, expected {size} bytes "
                    f"with sha256 {sha}; it was deleted and will be downloaded again"
                )
            hashed += size
        return {
            "path": str(folder / image["file_name"]),
            "size": image["size"],
            "sha256": image["sha256"],
            "seconds": round(time.monotonic() - started, 3),
        }
