"""The warehouse's upload rules as plain functions; the pyftpdlib handler
(``server.py``) only calls them and answers what they say.

- Bytes land in ``NAME.part``, hashed as they arrive; ``NAME`` appears only
  when the upload is complete, so nothing half-received is ever served.
- A creator uploads only the names it declared to the API, and ``SIZE NAME``
  answers it the size of the ``.part``, so it can resume: ``APPE NAME`` goes on
  at the end of the ``.part``, ``REST n`` + ``STOR NAME`` at ``n`` (never beyond
  what was received), a plain ``STOR`` starts over.
- An upload is refused when the free space, less what the declared size still
  needs, would fall below the reserve.
- Fewer bytes than declared: the ``.part`` stays, with its running hash, for a
  resume. Complete: the report to the API is spooled before the rename.
"""

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ftp import paths, policy
from ftp.accounts import Denied, Unavailable
from ftp.hashing import HashingFile, HashStates, open_part
from ftp.reporter import Report
from ftp.storage import Identity, Storage

APPE, STOR = "APPE", "STOR"


class Refused(Exception):
    """An upload the rules refuse; ``reply`` is the FTP answer, code first."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class Uploads:
    """Files being written right now: one session per file at a time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def acquire(self, path: str) -> bool:
        with self._lock:
            if path in self._busy:
                return False
            self._busy.add(path)
            return True

    def release(self, path: str) -> None:
        with self._lock:
            self._busy.discard(path)

    def busy(self, path: str) -> bool:
        with self._lock:
            return path in self._busy


@dataclass
class Upload:
    where: paths.Location
    final: str
    part: str
    file: HashingFile
    declared: int | None
    offset: int


def part_of(path: str) -> str:
    """Where the bytes of an upload to ``path`` land until it is complete."""
    return path + paths.PART


def received(path: str) -> int:
    """Bytes received so far for an upload to ``path`` (0: none)."""
    try:
        return os.lstat(part_of(path)).st_size
    except FileNotFoundError:
        return 0


def resume_size(role: str, path: str) -> int | None:
    """What ``SIZE path`` answers a creator while an upload of it is under way
    (the ``.part``'s size, where it resumes); None: the ordinary answer."""
    part = part_of(path)
    if role == policy.CREATOR and os.path.isfile(part):
        return os.path.getsize(part)
    return None


def start_offset(command: str, rest: int, received: int) -> int:
    """Where an upload starts: APPE at the end of what was received, REST n +
    STOR at n, a plain STOR at 0."""
    if command == APPE:
        return received
    if rest:
        if rest > received:
            raise Refused(
                f"554 REST position {rest} is beyond the {received} bytes "
                "received so far."
            )
        return rest
    return 0


def declared_size(info: Mapping | None, where: paths.Location) -> int | None:
    """The size the creator declared for ``where`` (None: nothing declared
    yet); a name it did not declare is refused."""
    if info is None:
        return None
    sizes = {info["file_name"]: info["size"], info["bmap_name"]: info["bmap_size"]}
    if where.name not in sizes:
        names = " and ".join(sorted(sizes))
        raise Refused(f"553 Order {where.order} declared {names}; upload those names.")
    return int(sizes[where.name])


def ask_declared(accounts, session, where: paths.Location) -> int | None:
    """The declared size of ``where``, asked with the session's token; None
    for an administrator's upload, which declares nothing."""
    if session.role != policy.CREATOR:
        return None
    try:
        info = accounts.declared(session.user_id, session.token, where.order)
    except Unavailable as exc:
        raise Refused(f"451 {exc}; try again in a minute.") from exc
    except Denied as exc:
        raise Refused(f"530 {exc}.") from exc
    return declared_size(info, where)


def needed(declared: int | None, offset: int) -> int:
    """Bytes the upload still needs on disk (0 when nothing was declared)."""
    return declared - offset if declared is not None else 0


def begin(
    storage: Storage,
    hashes: HashStates,
    *,
    command: str,
    rest: int,
    where: paths.Location,
    final: str,
    declared: int | None,
) -> Upload:
    """Open the ``.part`` of an upload to ``final`` where it starts, its hash
    resumed; Refused when the rules or the disk say no."""
    part = part_of(final)
    have = received(final)
    offset = start_offset(command, rest, have)
    # What the .part holds past ``offset`` is cut when it opens: room for this
    # upload (a STOR that starts over needs no room twice).
    refusal = storage.refusal(needed(declared, offset) - max(0, have - offset))
    if refusal:
        raise Refused(f"452 {refusal}")
    try:
        os.makedirs(os.path.dirname(final), exist_ok=True)
        hasher = hashes.resume(part, offset)
        raw = open_part(part, offset, truncate=offset == 0)
    except OSError as exc:
        raise Refused(f"550 {exc.strerror or exc}.") from exc
    stream = HashingFile(raw, part, hasher, offset, has_room=storage.room_for)
    return Upload(where, final, part, stream, declared, offset)


def is_short(declared: int | None, size: int) -> bool:
    """Whether fewer bytes than declared arrived: then the ``.part`` is kept
    for a resume instead of being taken for the whole file."""
    return declared is not None and size < declared


def keep(upload: Upload, hashes: HashStates) -> None:
    """Keep an unfinished upload's running hash for its resume."""
    hashes.keep(upload.part, upload.file.size, upload.file.hasher)


def complete(upload: Upload, *, storage: Storage, reporter, hashes) -> Report:
    """Make a received upload the file: reported, then renamed."""
    stream = upload.file
    identity = Identity.of(upload.part)
    report = Report(
        path=upload.where.api_path,
        size=stream.size,
        sha256=stream.hexdigest(),
        inode=identity.inode,
        mtime_ns=identity.mtime_ns,
    )
    # Spooled before the rename: the file is never served unverified.
    with storage.renames:
        reporter.add(report)
        try:
            os.replace(upload.part, upload.final)
        except OSError:
            reporter.spool.remove(report)
            raise
    hashes.drop(upload.part)
    return report
