"""Content cache: resumable, checksum-verified downloads shared by concurrent builds.

Layout under the cache root::

    .lock              held briefly to commit or evict entries (processes and threads)
    data/NAME          verified entries; mtime is the last use (LRU order)
    meta/NAME.json     url, size and checksums of an entry
    tmp/NAME.part      downloads in progress, resumed with HTTP Range requests
    tmp/KEY.work/      what a producer keeps between attempts (an OCI layout's blobs)
    locks/NAME.lock    one download of NAME at a time, across processes

A build pins the entries it uses with a shared flock on the entry file; eviction
takes an exclusive non-blocking flock, so a pinned entry (in any process) is never
evicted, and a crashed build's pins vanish with its file descriptors. The bytes
themselves move in ``download.py``, through the guarded client: the cache's
``allowed`` list (the creator's ``--outbound-allow``) says what it may fetch
from besides public addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from outbound.guard import PUBLIC_ONLY, Allowed
from workers.common.progress import Cancel, Canceled, Progress
from workers.creator import outbound
from workers.creator.download import (
    ContentError,
    OnBytes,
    algorithms_for,
    check_digests,
    download,
    expected_checksums,
    file_digests,
    parse_checksum_text,
    published_checksum,
)

ENTRY_KEYS = {"url", "sha256", "md5", "size", "checksums"}


def local_path(source: str | os.PathLike) -> Path | None:
    """The local path `source` names (plain path or file:// URL), None for others."""
    if isinstance(source, os.PathLike):
        return Path(source)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "":
        return Path(source)
    return None


def _expected(
    sha256: str | None, md5: str | None, checksums: Mapping[str, str] | None
) -> dict[str, str]:
    given = {"sha256": sha256, "md5": md5, **(checksums or {})}
    return expected_checksums(**{algo: value for algo, value in given.items() if value})


def _url_filename(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlparse(url).path).rsplit("/", 1)[-1]
    return name or "content"


def _percent_reporter(progress: Progress | None, phase: str) -> OnBytes | None:
    if progress is None:
        return None

    def on_bytes(done: int, total: int | None) -> None:
        progress(phase, min(100.0, done * 100.0 / total) if total else None)

    return on_bytes


@contextlib.contextmanager
def _unpinned(path: Path) -> Iterator[bool | None]:
    """True while we hold `path` exclusively (no build pins it), False when a
    build pins it, None when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


class ContentCache:
    """Size-bounded LRU cache of downloaded content, safe across threads and processes.

    Paths returned by `fetch` and `fetch_all` stay pinned (never evicted) until
    `unpin(path)` or `close()`; use the cache as a context manager in a build.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        limit_bytes: int,
        *,
        retries: int = 5,
        timeout: tuple[float, float] = (10.0, 60.0),
        allowed: Allowed = PUBLIC_ONLY,
    ) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"limit_bytes must be positive, got {limit_bytes}")
        self.root = Path(root)
        self.limit_bytes = int(limit_bytes)
        self.retries = retries
        self.timeout = timeout
        #: what fetches may reach besides public addresses
        self.allowed = allowed
        for sub in ("data", "meta", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._pins: dict[Path, list[int]] = {}
        self._pins_lock = threading.Lock()
        # requests.Session is not documented as thread-safe: one per thread.
        self._local = threading.local()

    # -- public API ---------------------------------------------------------

    def __enter__(self) -> ContentCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release every pin this object holds."""
        with self._pins_lock:
            fds = [fd for fds in self._pins.values() for fd in fds]
            self._pins.clear()
        for fd in fds:
            os.close(fd)

    def fetch(
        self,
        url: str | os.PathLike,
        *,
        sha256: str | None = None,
        md5: str | None = None,
        checksums: Mapping[str, str] | None = None,
        size: int | None = None,
        require_checksum: bool = True,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> Path:
        """Path of the verified content at `url`, downloading it if needed.

        `checksums` maps hashlib names (sha256, sha512, md5, adler32…) to hex
        digests, besides `sha256` and `md5`. Without any, `<url>.sha256` (else
        `<url>.md5`) gives it; when neither exists the download is refused,
        unless `require_checksum` is false. Local paths and file:// URLs are
        verified (when a checksum or a .sha256/.md5 file beside them exists) and
        returned as they are, not copied into the cache.
        """
        return self._fetch(
            url,
            expected=_expected(sha256, md5, checksums),
            size=size,
            require_checksum=require_checksum,
            on_bytes=_percent_reporter(progress, "downloading"),
            cancel=cancel,
        )

    def fetch_all(
        self,
        entries: Iterable[str | Mapping],
        workers: int = 3,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        require_checksum: bool = True,
    ) -> list[Path]:
        """Fetch several entries at a time; paths in the order of `entries`.

        An entry is a URL or a mapping with "url" and optional "sha256", "md5",
        "checksums", "size" (as `fetch` takes them). On the first failure the
        other downloads stop (their partial files are kept for a later resume)
        and the error is raised.
        """
        items = [
            {"url": e} if isinstance(e, str | os.PathLike) else dict(e) for e in entries
        ]
        for item in items:
            unknown = set(item) - ENTRY_KEYS
            if "url" not in item or unknown:
                raise ValueError(
                    f"bad content entry {item!r}: give a URL or a mapping with 'url' "
                    "and optional 'sha256', 'md5', 'checksums', 'size'"
                )
        state = [[0, item.get("size")] for item in items]
        state_lock = threading.Lock()
        failed = threading.Event()

        def stop() -> bool:
            return failed.is_set() or bool(cancel and cancel())

        def on_bytes_for(index: int) -> OnBytes:
            def on_bytes(done: int, total: int | None) -> None:
                with state_lock:
                    state[index] = [done, total]
                    totals = [t for _, t in state]
                    done_all = sum(d for d, _ in state)
                if progress is None:
                    return
                if None in totals or not sum(totals):
                    progress("downloading", None)
                else:
                    progress("downloading", min(100.0, done_all * 100.0 / sum(totals)))

            return on_bytes

        def run(index: int) -> Path:
            item = items[index]
            if stop():
                raise Canceled("download not started")
            try:
                return self._fetch(
                    item["url"],
                    expected=_expected(
                        item.get("sha256"), item.get("md5"), item.get("checksums")
                    ),
                    size=item.get("size"),
                    require_checksum=require_checksum,
                    on_bytes=on_bytes_for(index),
                    cancel=stop,
                )
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(run, index) for index in range(len(items))]
        results: list[Path] = []
        errors: list[BaseException] = []
        for future in futures:
            error = future.exception()
            if error is None:
                results.append(future.result())
            else:
                errors.append(error)
        if errors:
            for path in results:
                self.unpin(path)
            # The first real error explains the failure; the others only stopped.
            real = [e for e in errors if not isinstance(e, Canceled)]
            raise (real or errors)[0]
        return results

    def produce(
        self,
        key: str,
        filename: str,
        producer: Callable[[Path], None],
        *,
        meta: Mapping | None = None,
        hashed: bool = False,
    ) -> Path:
        """Cached (pinned) file for `key`, made by `producer(tmp_path)` when missing.

        With `hashed`, the entry's size and sha256 are recorded, for `verify`.
        """
        name = self._entry_name(key, filename)
        data = self.root / "data" / name
        with self._flock(self.root / "locks" / f"{name}.lock"):
            if self._read_meta(name) is not None and self._pin(data):
                os.utime(data)
                return data
            part = self.root / "tmp" / f"{name}.part"
            part.unlink(missing_ok=True)
            try:
                producer(part)
                facts = {"key": key, **(meta or {})}
                if hashed:
                    facts |= {"size": part.stat().st_size, **file_digests(part)}
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            return self._commit(name, part, facts, key)

    def verify(self, path: Path) -> bool:
        """Whether a (pinned) entry still has the size and sha256 recorded."""
        meta = self.metadata(path) or {}
        if "sha256" not in meta or Path(path).stat().st_size != meta.get("size"):
            return False
        return file_digests(Path(path), ("sha256",))["sha256"] == meta["sha256"]

    def scratch(self, key: str) -> Path:
        """A folder kept for `key` between attempts (an OCI layout whose blobs a
        later pull reuses); the caller removes it once done with it."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        folder = self.root / "tmp" / f"{digest}.work"
        folder.mkdir(exist_ok=True)
        return folder

    def discard(self, path: Path) -> None:
        """Remove a damaged entry this object pins (other builds' pins win)."""
        self.unpin(path)
        with self._flock(self.root / ".lock"):
            self._try_evict(Path(path))

    def metadata(self, path: Path) -> dict | None:
        """What the cache knows of an entry path (url, size, sha256, md5)."""
        path = Path(path)
        if path.parent != self.root / "data":
            return None
        return self._read_meta(path.name)

    def unpin(self, path: Path) -> None:
        """Release one pin of `path` taken by this object (no-op if none)."""
        with self._pins_lock:
            fds = self._pins.get(Path(path))
            if not fds:
                return
            fd = fds.pop()
            if not fds:
                del self._pins[Path(path)]
        os.close(fd)

    def is_pinned(self, path: Path) -> bool:
        """True when some build (any process, this one included) pins `path`."""
        with _unpinned(path) as free:
            return free is False

    def entries(self) -> list[Path]:
        """Cached entry paths, least recently used first."""
        return [path for path, _ in self._entries()]

    def usage_bytes(self) -> int:
        """Disk space the entries use (allocated blocks, so sparse files count less)."""
        return sum(stat.st_blocks * 512 for _, stat in self._entries())

    # -- internals ------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = outbound.session(self.allowed)
        return session

    @staticmethod
    def _entry_name(key: str, filename: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[-100:].lstrip(".")
        return f"{digest}-{safe or 'content'}"

    @contextlib.contextmanager
    def _flock(self, path: Path) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_meta(self, name: str) -> dict | None:
        try:
            meta = json.loads((self.root / "meta" / f"{name}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return meta if (self.root / "data" / name).is_file() else None

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        for path in (self.root / "data").iterdir():
            try:
                found.append((path, path.stat()))
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
        return sorted(found, key=lambda item: item[1].st_mtime_ns)

    def _pin(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        fcntl.flock(fd, fcntl.LOCK_SH)
        # The entry may have been evicted or replaced between open() and flock().
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        with self._pins_lock:
            self._pins.setdefault(path, []).append(fd)
        return True

    def _try_evict(self, path: Path) -> bool:
        with _unpinned(path) as free:
            if free:
                path.unlink(missing_ok=True)
                (self.root / "meta" / f"{path.name}.json").unlink(missing_ok=True)
            return free is not False

    def _make_room(self, need: int, replacing: Path | None = None) -> tuple[bool, int]:
        """Evict unpinned LRU entries until `need` more bytes fit; call under .lock."""
        entries = self._entries()
        used = sum(stat.st_blocks * 512 for _, stat in entries)
        for path, stat in entries:
            if used + need <= self.limit_bytes:
                break
            if path == replacing:
                continue
            if self._try_evict(path):
                used -= stat.st_blocks * 512
        if replacing is not None and used + need > self.limit_bytes:
            for path, stat in entries:
                if path == replacing and self._try_evict(path):
                    used -= stat.st_blocks * 512
        return used + need <= self.limit_bytes, used

    def _commit(self, name: str, part: Path, meta: Mapping, source: str) -> Path:
        data = self.root / "data" / name
        with self._flock(self.root / ".lock"):
            need = part.stat().st_blocks * 512
            fits, used = self._make_room(need, replacing=data)
            if not fits:
                part.unlink(missing_ok=True)
                raise ContentError(
                    f"{source}: the content cache {self.root} is limited to "
                    f"{self.limit_bytes} bytes, {used} are pinned by running builds "
                    f"and this file needs {need}: raise the cache limit"
                )
            meta_path = self.root / "meta" / f"{name}.json"
            tmp_meta = meta_path.with_suffix(".json.tmp")
            tmp_meta.write_text(json.dumps(dict(meta), sort_keys=True))
            os.replace(tmp_meta, meta_path)
            # Builds hard-link entries into the image: keep them world-readable.
            os.chmod(part, 0o644)
            os.replace(part, data)
            if not self._pin(data):
                raise ContentError(f"{source}: cache entry {data} vanished")
        return data

    def _fetch(
        self,
        url: str | os.PathLike,
        *,
        expected: dict[str, str],
        size: int | None,
        require_checksum: bool,
        on_bytes: OnBytes | None,
        cancel: Cancel | None,
    ) -> Path:
        path = local_path(url)
        if path is not None:
            return self._fetch_local(path, expected, size, on_bytes)
        source = str(url)
        if urllib.parse.urlparse(source).scheme not in ("http", "https"):
            raise ContentError(
                f"{source}: unsupported URL: use http(s)://, file:// or a path"
            )
        name = self._entry_name(source, _url_filename(source))
        data = self.root / "data" / name
        with self._flock(self.root / "locks" / f"{name}.lock"):
            meta = self._read_meta(name)
            if meta is not None and self._pin(data):
                if self._meta_matches(name, data, meta, expected, size):
                    os.utime(data)  # most recently used
                    if on_bytes:
                        on_bytes(meta["size"], meta["size"])
                    return data
                self.unpin(data)
            if not expected:
                expected = published_checksum(
                    self._session(), source, self.timeout, required=require_checksum
                )
            part = self.root / "tmp" / f"{name}.part"
            digests, total = download(
                self._session(),
                source,
                part,
                size=size,
                on_bytes=on_bytes,
                cancel=cancel,
                retries=self.retries,
                timeout=self.timeout,
                reserve=self._reserve,
                algorithms=algorithms_for(expected),
            )
            try:
                check_digests(source, expected, digests)
            except ContentError:
                part.unlink(missing_ok=True)
                raise
            return self._commit(
                name, part, {"url": source, "size": total, **digests}, source
            )

    def _meta_matches(
        self,
        name: str,
        data: Path,
        meta: dict,
        expected: Mapping[str, str],
        size: int | None,
    ) -> bool:
        """Whether the (pinned) entry is the expected content; a checksum the
        entry was not hashed with yet is computed once and recorded."""
        if size is not None and meta.get("size") != size:
            return False
        missing = tuple(algo for algo in expected if algo not in meta)
        if missing:
            meta.update(file_digests(data, missing))
            meta_path = self.root / "meta" / f"{name}.json"
            tmp_meta = meta_path.with_suffix(".json.tmp")
            tmp_meta.write_text(json.dumps(meta, sort_keys=True))
            os.replace(tmp_meta, meta_path)
        return all(meta.get(algo) == value for algo, value in expected.items())

    def _fetch_local(
        self,
        path: Path,
        expected: dict[str, str],
        size: int | None,
        on_bytes: OnBytes | None,
    ) -> Path:
        if not path.is_file():
            raise ContentError(f"{path}: no such file: check the path")
        if size is not None and path.stat().st_size != size:
            raise ContentError(
                f"{path}: size is {path.stat().st_size} bytes, expected {size}"
            )
        if not expected:
            # A local file is trusted without checksum: no transfer could damage it.
            for algo in ("sha256", "md5"):
                sidecar = path.with_name(f"{path.name}.{algo}")
                if sidecar.is_file():
                    expected = parse_checksum_text(
                        str(sidecar), algo, sidecar.read_text()
                    )
                    break
        if expected:
            digests = file_digests(path, tuple(expected), on_bytes=on_bytes)
            check_digests(str(path), expected, digests)
        elif on_bytes:
            on_bytes(path.stat().st_size, path.stat().st_size)
        return path

    def _reserve(self, need: int) -> None:
        # Best effort: evict before writing so the disk does not fill up; the
        # limit itself is enforced when the download is committed.
        with self._flock(self.root / ".lock"):
            self._make_room(need)
