"""The storage root on disk: its folders, free space and the disk reserve, files
kept aside after a hash mismatch, and deletions the API asks for.

Layout: ``orders/<order id>/<name>`` is served; ``quarantine/`` holds rejected
files (administrators only); ``.warehouse/`` is the server's own state (the
spool of reports to send), reachable by nobody over FTP.
"""

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from ftp import paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """Which file a path held: a replaced file has another identity."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> "Identity":
        st = os.stat(path, follow_symlinks=False)
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


class Storage:
    def __init__(self, root: str, *, reserve: int = 0):
        self.root = os.path.abspath(root)
        self.reserve = reserve
        self.orders = os.path.join(self.root, paths.ORDERS)
        self.quarantine = os.path.join(self.root, paths.QUARANTINE)
        self.internal = os.path.join(self.root, paths.INTERNAL)
        self.spool = os.path.join(self.internal, "spool")
        # Completing an upload and moving a rejected file aside both rename
        # served files; one at a time, so a check-then-move is never stale.
        self.renames = threading.Lock()

    def prepare(self) -> None:
        for folder in (self.root, self.orders, self.quarantine, self.spool):
            os.makedirs(folder, exist_ok=True)
        # The state folder is nobody's business but the server's.
        os.chmod(self.internal, 0o700)

    def real(self, api_path: str) -> str:
        """The disk path of ``orders/<order>/<name>``, checked to stay inside."""
        location = paths.parse_api_path(api_path)
        real = paths.to_real(self.root, location.path)
        if not paths.within(self.root, real):
            raise paths.BadPath(f"{api_path} leads outside the storage root")
        return real

    # --- space -------------------------------------------------------------------

    def usage(self) -> tuple[int, int]:
        """(capacity, free) bytes of the file system holding the root."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def room_for(self, nbytes: int = 0) -> bool:
        """Whether ``nbytes`` more still leave the reserve free."""
        return self.usage()[1] - max(nbytes, 0) >= self.reserve

    def refusal(self, nbytes: int = 0) -> str:
        """Why an upload of ``nbytes`` more is refused ("" if it is not)."""
        free = self.usage()[1]
        if free - max(nbytes, 0) >= self.reserve:
            return ""
        need = f"; this upload needs {nbytes} more" if nbytes > 0 else ""
        return (
            f"Not enough disk space: {free} bytes free and {self.reserve} must "
            f"stay free{need}. Try again later or ask the operator to free space."
        )

    # --- files -------------------------------------------------------------------

    def set_aside(self, api_path: str) -> str:
        """Move a rejected file into quarantine; returns its new disk path."""
        location = paths.parse_api_path(api_path)
        source = self.real(api_path)
        folder = os.path.join(self.quarantine, location.order)
        os.makedirs(folder, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = os.path.join(folder, f"{location.name}.{stamp}")
        os.replace(source, target)
        return target

    def delete(self, api_path: str) -> bool:
        """Delete a served file and any unfinished upload of it; True if the
        file was there. Removes the order folder once it is empty."""
        real = self.real(api_path)
        removed = False
        for path in (real, real + paths.PART):
            try:
                os.remove(path)
                removed = removed or path == real
            except FileNotFoundError:
                pass
        # Not empty: the other file of the image, or a new upload.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(real))
        return removed
