"""Virtual FTP paths: normalisation, what a path designates, and its place on disk.

Clients see the storage root as ``/``. A path is normalised lexically (``..``
cannot climb above ``/``), then mapped under the root, and the real path must be
that path once resolved: no symbolic link below the root is followed, so neither
``..``, absolute paths nor a link (pointing outside, or to ``.warehouse``) reach
anything but what the policy decided on.
"""

import os
import posixpath
import re
from dataclasses import dataclass
from enum import Enum

ORDERS = "orders"
QUARANTINE = "quarantine"
INTERNAL = ".warehouse"
PART = ".part"

ORDER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What the API accepts as declared names (apps/scheduler/api/serializers.py),
# restricted to ASCII so every file system and client agrees on them.
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\.(img|bmap)$")


class Kind(Enum):
    ROOT = "root"
    ORDERS = "orders"
    ORDER = "order"
    ORDER_FILE = "order file"
    QUARANTINE = "quarantine"
    INTERNAL = "internal"
    OTHER = "other"


@dataclass(frozen=True)
class Location:
    """What a normalised virtual path designates."""

    path: str
    kind: Kind
    order: str = ""
    name: str = ""

    @property
    def is_part(self) -> bool:
        return self.name.endswith(PART)

    @property
    def image_name(self) -> str:
        """The final name: ``x.img`` for both ``x.img`` and ``x.img.part``."""
        return self.name[: -len(PART)] if self.is_part else self.name

    @property
    def valid_name(self) -> bool:
        return bool(FILE_NAME.match(self.image_name))

    @property
    def api_path(self) -> str:
        """``orders/<order>/<name>``, as the API names files."""
        return self.path.lstrip("/")


class BadPath(ValueError):
    """A path no client may use (NUL byte, control characters)."""


def check_text(arg: str) -> None:
    if "\x00" in arg or any(ord(c) < 32 for c in arg):
        raise BadPath("Paths may not contain control characters.")


def normalize(cwd: str, arg: str) -> str:
    """The absolute virtual path of ``arg`` seen from ``cwd``; ``..`` stops at /."""
    check_text(arg)
    joined = posixpath.join(cwd or "/", arg) if arg else (cwd or "/")
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def classify(path: str) -> Location:
    """Say what a normalised virtual path is: the orders tree, a file, etc."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Location("/", Kind.ROOT)
    top = parts[0]
    if top == INTERNAL:
        return Location(path, Kind.INTERNAL)
    if top == QUARANTINE:
        return Location(path, Kind.QUARANTINE, name=parts[-1] if parts[1:] else "")
    if top != ORDERS:
        return Location(path, Kind.OTHER)
    if len(parts) == 1:
        return Location(path, Kind.ORDERS)
    if not ORDER_ID.match(parts[1]):
        return Location(path, Kind.OTHER)
    if len(parts) == 2:
        return Location(path, Kind.ORDER, order=parts[1])
    if len(parts) == 3:
        return Location(path, Kind.ORDER_FILE, order=parts[1], name=parts[2])
    return Location(path, Kind.OTHER)


def parse_api_path(path: str) -> Location:
    """A file path the API sent (``orders/<order>/<name>``), or ``BadPath``."""
    check_text(path)
    location = classify(normalize("/", path))
    if location.kind is not Kind.ORDER_FILE or not location.valid_name:
        raise BadPath(f"not an image path: {path!r}")
    if location.is_part:
        raise BadPath(f"not an image path: {path!r}")
    return location


def to_real(root: str, path: str) -> str:
    """The disk path of a normalised virtual path."""
    return os.path.join(root, *[p for p in path.split("/") if p])


def to_virtual(root: str, real: str) -> str:
    """The virtual path of a disk path under ``root`` (``/`` if outside)."""
    relative = os.path.relpath(os.path.normpath(real), root)
    if relative == "." or relative.startswith(".."):
        return "/"
    return "/" + relative.replace(os.sep, "/")


def within(root: str, real: str) -> bool:
    """Whether ``real`` is under ``root`` without following any symbolic link
    below the root: the warehouse never makes links, and a link inside the root
    could lead a permitted path (``orders/…``) to a forbidden one (``.warehouse``)."""
    try:
        relative = os.path.relpath(os.path.normpath(real), root)
        if relative == "." or relative.startswith(".."):
            return relative == "."
        expected = os.path.join(os.path.realpath(root), relative)
        return os.path.realpath(real) == expected
    except ValueError:  # a NUL byte: no such file can exist
        return False
