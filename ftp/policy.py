"""Who may do what where: one pure function over roles, operations and locations.

Operations are pyftpdlib's permission letters: ``e`` change directory, ``l`` list
(and SIZE, MDTM), ``r`` read, ``a`` append, ``w`` store, ``m`` make a directory,
``d`` delete, ``f`` rename, ``M`` chmod, ``T`` set a modification time.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ftp.paths import Kind, Location
from workers.common.names import Role

ADMINS = frozenset({Role.ADMIN, Role.MANAGER, Role.WAREHOUSE})
READERS = frozenset({Role.DOWNLOADER, Role.WRITER})
CREATOR = Role.CREATOR
ROLES = ADMINS | READERS | {CREATOR}
KNOWN_ROLES = ROLES | {Role.CLIENT}

# The letters each role may ever use (MLSD shows them as the "perm" fact).
LETTERS = {
    **dict.fromkeys(ADMINS, "elradfmwT"),
    **dict.fromkeys(READERS, "elr"),
    CREATOR: "elawmd",
}


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str = ""


ALLOW = Decision(True)
UPLOAD_HERE = (
    "Uploads go to orders/<order id>/<name>.img or .bmap (letters, digits, _ . - only)."
)
PRIVATE = "This folder is the warehouse's own; nobody reaches it over FTP."
BROWSABLE = {Kind.ROOT, Kind.ORDERS, Kind.ORDER, Kind.ORDER_FILE}


def deny(reason: str) -> Decision:
    return Decision(False, reason)


def decide(
    role: str,
    perm: str,
    where: Location,
    *,
    pending: bool = False,
    holds: Callable[[str], bool] | None = None,
) -> Decision:
    """May ``role`` do ``perm`` at ``where``?

    ``pending``: the file waits for the API's verdict on its hash, so only
    administrators may read it. ``holds(order)``: whether the creator holds that
    order's create task (may ask the API, so it is called last).
    """
    if where.kind is Kind.INTERNAL:
        return deny(PRIVATE)
    if role in ADMINS:
        return _admin(perm, where)
    if role in READERS:
        return _reader(perm, where, pending)
    if role == CREATOR:
        return _creator(perm, where, holds)
    return deny(f"The role {role!r} has no access to the warehouse.")


def _uploadable(where: Location) -> Decision:
    if where.kind is not Kind.ORDER_FILE or not where.valid_name:
        return deny(UPLOAD_HERE)
    if where.is_part:
        return deny(
            "Upload to the final name; the warehouse writes NAME.part itself "
            "and renames it when the upload is complete."
        )
    return ALLOW


def _admin(perm: str, where: Location) -> Decision:
    if perm in "elr":
        return ALLOW
    if perm in "wa":
        return _uploadable(where)
    if perm == "m":
        if where.kind in (Kind.ORDER, Kind.OTHER, Kind.QUARANTINE):
            return ALLOW
        return deny("This folder exists already.")
    if perm in "dfT":
        if where.kind in (Kind.ROOT, Kind.ORDERS) or where.path == "/quarantine":
            return deny("The warehouse's top folders stay where they are.")
        return ALLOW
    return deny("Changing file modes is not offered.")


def _reader(perm: str, where: Location, pending: bool) -> Decision:
    if perm in "el" and where.kind in BROWSABLE:
        return ALLOW
    if perm == "r" and where.kind is Kind.ORDER_FILE:
        if where.is_part or not where.valid_name:
            return deny("Only complete images (.img, .bmap) can be downloaded.")
        if pending:
            return deny(
                "This file is being verified (its hash is not confirmed yet); "
                "try again in a minute."
            )
        return ALLOW
    return deny("Downloaders may only list folders and download images.")


def _creator(
    perm: str, where: Location, holds: Callable[[str], bool] | None
) -> Decision:
    if perm in "el" and where.kind in BROWSABLE:
        return ALLOW
    if perm in "wa":
        decision = _uploadable(where)
    elif perm == "m" and where.kind is Kind.ORDER:
        decision = ALLOW
    elif perm == "d" and where.kind is Kind.ORDER_FILE and where.is_part:
        decision = ALLOW if where.valid_name else deny(UPLOAD_HERE)
    else:
        return deny(
            "Creators may only upload (STOR, APPE, REST) into the folders of "
            "orders whose create task they hold, and delete their own .part files."
        )
    if not decision.ok:
        return decision
    if holds is None or not holds(where.order):
        return deny(
            f"You do not hold the create task of order {where.order}; "
            "claim it before uploading."
        )
    return ALLOW
