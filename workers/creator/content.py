"""The recipe's files on their way to the data partition: fetched through the
content cache, decoded or expanded, and laid out in the staging tree that
``mke2fs -d`` copies (links into the cache, not copies, for downloads).

In image-creator's order: content and local files first, then downloads, each
later file replacing an earlier one at the same path.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from offspot_config.constants import POST_EXPANSION_UNWANTED_PATTERNS

from outbound.guard import Allowed
from workers.common.progress import Cancel, Progress
from workers.creator import outbound
from workers.creator.cache import ContentCache
from workers.creator.download import ContentError, parse_checksum_text
from workers.creator.filesystem import link_or_copy, make_folders
from workers.creator.recipe import Checksum, FileEntry
from workers.creator.tools import check_cancel

#: folders macOS's archive tool adds, removed after expanding (offspot-config)
MACOS_FOLDER = "__MACOSX"

log = logging.getLogger(__name__)


def fetch_files(
    files: Sequence[FileEntry],
    cache: ContentCache,
    *,
    workers: int = 3,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> dict[str, Path]:
    """Cache paths (pinned) of the entries with a URL, by label.

    Each is checked against its checksum (read from its URL for kind: url), else
    against ``<url>.sha256`` or ``.md5`` when published; a file without any is
    used as downloaded, as image-creator does.
    """
    downloads = [entry for entry in files if entry.url is not None]
    items = [
        {"url": entry.url, **_checksums(entry, cache.allowed)} for entry in downloads
    ]
    paths = cache.fetch_all(
        items,
        workers=workers,
        progress=progress,
        cancel=cancel,
        require_checksum=False,
    )
    return {entry.label: path for entry, path in zip(downloads, paths, strict=True)}


def _checksums(entry: FileEntry, allowed: Allowed) -> dict:
    if entry.checksum is None:
        return {}
    where = f"{entry.label}.checksum"
    return {"checksums": resolve_checksum(entry.checksum, where, allowed)}


def resolve_checksum(
    checksum: Checksum, where: str, allowed: Allowed
) -> dict[str, str]:
    """{algorithm: digest}, the digest read from its URL for ``kind: url``
    (through the guarded client, what ``allowed`` allows)."""
    value = checksum.value
    if checksum.kind == "url":
        try:
            text = outbound.read_text(value, allowed)
        except OSError as exc:
            raise ContentError(f"{where}: {exc}") from None
        value = parse_checksum_text(value, checksum.algo, text)[checksum.algo]
    return {checksum.algo: value}


def stage_files(
    files: Sequence[FileEntry],
    fetched: dict[str, Path],
    staging: Path,
    cancel: Cancel | None = None,
) -> dict[str, int]:
    """Lay the files out under ``staging`` (the data partition's root); the
    bytes each one brings (expanded, for archives), by label."""
    ordered = [e for e in files if not e.is_remote] + [e for e in files if e.is_remote]
    brought = {}
    for entry in ordered:
        check_cancel(cancel)
        target = staging.joinpath(*entry.to.parts)
        make_folders(staging, entry.to if entry.is_archive else entry.to.parent)
        if entry.is_archive:
            brought[entry.label] = expand(fetched[entry.label], entry, target, cancel)
            continue
        _make_room_for_file(target, entry)
        if entry.content is not None:
            target.write_bytes(entry.payload())
            os.chmod(target, 0o644)
        else:
            link_or_copy(fetched[entry.label], target)
        brought[entry.label] = target.stat().st_size
    return brought


def _make_room_for_file(target: Path, entry: FileEntry) -> None:
    if target.is_dir() and not target.is_symlink():
        raise ContentError(
            f"{entry.label}.to: /data/{entry.to} is a folder on the data partition"
        )
    target.unlink(missing_ok=True)


def expand(src: Path, entry: FileEntry, target: Path, cancel: Cancel | None) -> int:
    """Expand an archive into ``target``, refusing members that would land
    outside it; the bytes of its files. Messages do not quote the archive (its
    members' names, what zipfile read): the log has them."""
    where = f"{entry.label} ({entry.url})"
    try:
        if entry.via == "zip":
            total = _unzip(src, target, where, cancel)
        else:
            total = _untar(src, target, where, cancel)
    except (zipfile.BadZipFile, tarfile.ReadError, EOFError) as exc:
        log.warning("%s: not a %s archive: %s", where, entry.via, exc)
        raise ContentError(
            f"{where}: not a {entry.via} archive, or a damaged one"
        ) from None
    _remove_unwanted(target)
    return total


def _check_member(name: str, target: Path, where: str) -> None:
    path = PurePosixPath(name)
    inside = (target / name).resolve()
    if path.is_absolute() or not inside.is_relative_to(target.resolve()):
        log.warning("%s: member %r would land outside its folder", where, name)
        raise ContentError(
            f"{where}: a member would land outside its folder (an absolute path or "
            "a ..); the creator's log names it"
        )


def _unzip(src: Path, target: Path, where: str, cancel: Cancel | None) -> int:
    total = 0
    with zipfile.ZipFile(src) as archive:
        members = archive.infolist()
        for member in members:
            _check_member(member.filename, target, where)
        for member in members:
            check_cancel(cancel)
            path = Path(archive.extract(member, target))
            # Python ignores the members' modes: as image-creator gets them (root,
            # umask 022), whatever this process's umask.
            os.chmod(path, 0o755 if member.is_dir() else 0o644)
            total += 0 if member.is_dir() else member.file_size
    return total


def _untar(src: Path, target: Path, where: str, cancel: Cancel | None) -> int:
    total = 0
    # "r:*": the compression is read from the file, as shutil.unpack_archive does.
    with tarfile.open(src, "r:*") as archive:
        for member in archive:
            check_cancel(cancel)
            _check_member(member.name, target, where)
            try:
                # The data filter refuses links that leave the folder and device
                # files, and drops setuid bits and the owner's identity.
                archive.extract(member, target, filter="data")
            except tarfile.FilterError as exc:
                log.warning("%s: member %r: %s", where, member.name, exc)
                raise ContentError(
                    f"{where}: a member is a link leaving its folder or a device "
                    "file; the creator's log names it"
                ) from None
            total += member.size if member.isfile() else 0
    return total


def _remove_unwanted(target: Path) -> None:
    """Drop what archive tools of other systems leave (offspot-config's list)."""
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        unwanted = path.name == MACOS_FOLDER or any(
            fnmatch.fnmatch(path.name, pattern)
            for pattern in POST_EXPANSION_UNWANTED_PATTERNS
        )
        if not unwanted or not os.path.lexists(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
