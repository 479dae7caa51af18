"""The creator worker: claims ``create`` tasks and turns each order into an image.

Per task: base image (cached) → content (cached, several at a time) → build without
root → block map → sha256 → declare the image to the API → upload the image and its
block map to the warehouse (resumable) → report success. The lease is renewed with
the phase and percentage all along; a lost lease or a cancel stops the build and
removes its files.
"""

import argparse
import logging
import re
import shutil
from pathlib import Path

import requests

from workers.common.api import ApiError
from workers.common.bmap import create_bmap
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
from workers.common.worker import (
    UsageError,
    Worker,
    add_common_options,
    env_default,
    parse_size,
)
from workers.creator.base_image import prepare_base_image
from workers.creator.cache import ContentCache
from workers.creator.download import ContentError
from workers.creator.image import BuildError, build_image

log = logging.getLogger(__name__)

GIB = 1024**3
#: Offspot's published Raspberry Pi OS base image; override with --base-image.
DEFAULT_BASE_IMAGE = "https://drive.offspot.it/base/base-image_1.4.1.img.xz"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.creator",
        description="Build SD-card images for orders and upload them to the warehouse.",
    )
    add_common_options(parser)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=env_default("CREATOR_WORK_DIR", "var/creator/work"),
        help="where images are built; needs room for one image per build "
        "(CREATOR_WORK_DIR)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=env_default("CREATOR_CACHE_DIR", "var/creator/cache"),
        help="shared cache of base images and content (CREATOR_CACHE_DIR)",
    )
    parser.add_argument(
        "--cache-size",
        default=env_default("CREATOR_CACHE_SIZE", "50G"),
        help="size limit of the cache, e.g. 50G (CREATOR_CACHE_SIZE)",
    )
    parser.add_argument(
        "--base-image",
        default=env_default("CREATOR_BASE_IMAGE", DEFAULT_BASE_IMAGE),
        help="URL or path of the base image, .img, .img.xz or .img.zst "
        "(CREATOR_BASE_IMAGE)",
    )
    parser.add_argument(
        "--base-sha256",
        default=env_default("CREATOR_BASE_SHA256"),
        help="sha256 of the published base image file (CREATOR_BASE_SHA256); "
        "without it, <url>.sha256 is read",
    )
    parser.add_argument(
        "--downloads",
        type=int,
        default=int(env_default("CREATOR_DOWNLOADS", 3)),
        help="content files downloaded at once (CREATOR_DOWNLOADS, default 3)",
    )
    return parser


def content_destination(entry: dict, source: Path) -> str:
    """Where a content file goes on the data partition."""
    name = Path(entry["url"].split("?")[0]).name or source.name
    folder = "zim" if name.endswith(".zim") else "packages"
    return f"{folder}/{name}"


def checksums(entry: dict) -> dict:
    """The entry's checksum, read from its checksum_url when that is all it has."""
    found = {k: entry[k] for k in ("sha256", "md5") if entry.get(k)}
    if found or not entry.get("checksum_url"):
        return found
    try:
        response = requests.get(entry["checksum_url"], timeout=30)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ContentError(
            f"{entry['checksum_url']}: cannot read the checksum: {exc}"
        ) from exc
    digest = (response.text.split() or [""])[0].lower()
    kind = {64: "sha256", 32: "md5"}.get(len(digest))
    if kind is None or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ContentError(f"{entry['checksum_url']}: no sha256 or md5 in that file")
    return {kind: digest}


def judge(exc: Exception) -> Failure | None:
    """How a failed build is reported."""
    if isinstance(exc, ContentError):
        # A missing file or a wrong checksum will not heal by retrying.
        return failed(str(exc), retryable=False)
    if isinstance(exc, BuildError | FtpError | OSError | ApiError):
        return failed(str(exc))
    return None


class Creator(Worker):
    kind = WorkerKind.CREATOR

    def __init__(self, options, api=None):
        super().__init__(options, api)
        self.cache_limit = parse_size(options.cache_size)
        for folder in (options.work_dir, options.cache_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {folder}: {exc.strerror}") from exc

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
                judge=judge,
                bar=bar,
            )
        finally:
            # Whatever happened, the build's files are of no more use here.
            shutil.rmtree(folder, ignore_errors=True)
        if outcome.state == SUCCEEDED:
            log.info("order %s built and uploaded", task["order"])

    def build_and_upload(self, task, lease: Lease, folder: Path, bar) -> dict:
        work = task["work"]
        config = work["config"]
        folder.mkdir(parents=True, exist_ok=True)

        def cancel() -> bool:
            return lease.lost.is_set() or lease.canceled.is_set()

        def report(phase):
            def progress(_name, percent):
                lease.check()
                if percent is not None:
                    lease.progress(phase, percent)
                    bar.update(phase, percent)

            return progress

        with ContentCache(self.options.cache_dir, self.cache_limit) as cache:
            lease.progress("downloading base", 0)
            base = prepare_base_image(
                self.options.base_image,
                cache=cache,
                sha256=self.options.base_sha256,
                progress=report("downloading base"),
                cancel=cancel,
            )
            lease.progress("downloading content", 0)
            entries = [
                {"url": e["url"], "size": e["size"], **checksums(e)}
                for e in config["contents"]
            ]
            paths = cache.fetch_all(
                entries,
                workers=self.options.downloads,
                progress=report("downloading content"),
                cancel=cancel,
            )
            content = [
                (path, content_destination(entry, path))
                for entry, path in zip(config["contents"], paths, strict=True)
            ]
            boot_files, branding = self.branding(task, folder)
            lease.progress("building", 0)
            image = folder / "image.img"
            build_image(
                base_image=base,
                output=image,
                image_bytes=work["image_bytes"],
                content_files=content,
                hotspot_config={
                    "name": config["name"],
                    "ssid": config["ssid"],
                    "language": config["language"],
                    "timezone": config["timezone"],
                    "admin": {
                        "login": config["admin_login"],
                        "password": config["admin_password"],
                    },
                    "wifi_password": config.get("wifi_password") or None,
                    "branding": branding,
                },
                work_dir=folder / "build",
                progress=report("building"),
                cancel=cancel,
                boot_files=boot_files,
            )
        lease.check()
        bmap_path = folder / "image.bmap"
        bmap = create_bmap(image, bmap_path)
        lease.progress("hashing", 0)
        hashing = report("hashing")
        sha256 = sha256_file(
            image, progress=lambda done, size: hashing(None, 100.0 * done / size)
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
                work["warehouse"],
                self.api.username,
                lambda: self.api.access_token,
                path,
                f"{work['upload_folder']}/{path.name}",
                progress=uploaded,
                cancel=cancel,
            )
            sent_before += path.stat().st_size
        return {
            "size": image.stat().st_size,
            "sha256": sha256,
            "mapped_bytes": bmap.mapped_bytes,
        }

    def branding(self, task, folder: Path) -> tuple[list, dict]:
        """Fetch the order's logo and favicon for the boot partition."""
        files, names = [], {}
        for which, name in (task["work"]["config"].get("branding") or {}).items():
            if not name:
                continue
            target = folder / f"{which}{Path(name).suffix.lower()}"
            self.api.download(f"api/v1/tasks/{task['id']}/branding/{which}/", target)
            files.append((target, target.name))
            names[which] = target.name
        return files, names
