"""What a configuration puts on the hotspot: its content entries.

Two kinds, each mapped onto an offspot-config package by ``apps.orders.recipes``:

- ``zim`` (the default when ``kind`` is absent): a ZIM file, as an OPDS entry of
  Kiwix's catalog describes it: ``title``, ``url``, ``size``, one of ``sha256``,
  ``md5`` or ``checksum_url``, and optionally ``ident`` (``publisher:name:flavour``),
  ``name``, ``flavour``, ``version``, ``description``, ``languages``, ``tags``.
  With an ``ident`` the file lands where offspot-config puts it
  (``publisher_name_flavour.zim``); without one (the simple entry of earlier
  versions) it lands under the URL's file name, percent-decoded, and that name
  is its ident and name.
- ``package``: an app or files package of offspot-config's own catalog
  (``offspot_config.catalog``), named by its ``ident`` alone.
"""

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.translation import gettext as _
from offspot_config.catalog import app_catalog

from apps.common.outbound import fetch_problem

ZIM = "zim"
PACKAGE = "package"
KINDS = (ZIM, PACKAGE)
MAX_CONTENT_ENTRIES = 500
#: 2**53: exact in every JSON parser, and 500 such sizes still add up to less than
#: a 64-bit integer (MongoDB refuses bigger ones).
MAX_SIZE = 2**53
HEX = re.compile(r"^[0-9a-f]+$")
#: publisher:name:flavour, as offspot-config reads a ZIM ident.
ZIM_IDENT = re.compile(r"^([^:/\x00-\x1f]*):([^:/\x00-\x1f]+):([^/\x00-\x1f]*)$")
ZIM_KEYS = {
    "kind",
    "ident",
    "name",
    "flavour",
    "version",
    "title",
    "description",
    "languages",
    "tags",
    "url",
    "size",
    "sha256",
    "md5",
    "checksum_url",
}
PACKAGE_KEYS = {"kind", "ident"}
#: A checksum_url's suffix -> the algorithm image-creator checks it with.
CHECKSUM_ALGORITHMS = {
    ".sha256": "sha-256",
    ".md5": "md5",
    ".sha1": "sha-1",
    ".sha512": "sha-512",
}
#: ext4 file names have at most 255 bytes.
MAX_NAME_BYTES = 255


def kind_of(entry: dict) -> str:
    return entry.get("kind") or ZIM


def file_name_of(url: str) -> str:
    """The file name of a URL's last path segment, percent-decoded: the name a
    ZIM file without an ident lands under. ``%2F`` stays inside the segment, so
    it decodes to a "/" that ``file_name_problem`` refuses."""
    segment = urlsplit(url).path.rsplit("/", 1)[-1]
    return unquote(segment, errors="strict")


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file's name on the hotspot, or None."""
    if not name:
        return _("the URL names no file (it ends with /)")
    if name in {".", ".."}:
        return _("“%(name)s” is not a file name") % {"name": name}
    if "/" in name:
        return _("its name “%(name)s” contains a / (%%2F in the URL)") % {"name": name}
    if "\x00" in name:
        # Not %-formatted: %00 is the URL's own escape, so tell gettext (and the
        # placeholder check) that this is no format string.
        # xgettext:no-python-format
        return _("its name contains a NUL character (%00 in the URL)")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return _("its name contains a control character")
    if len(name.encode()) > MAX_NAME_BYTES:
        return _("its name has more than %(n)d bytes") % {"n": MAX_NAME_BYTES}
    return None


def url_file_name(url: str) -> str:
    """The decoded file name of ``url``, or ValueError saying why it is none."""
    try:
        name = file_name_of(url)
    except UnicodeDecodeError:
        raise ValueError(
            _("its name is not UTF-8 once percent-decoded; rename the file")
        ) from None
    problem = file_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def checksum_algorithm(checksum_url: str) -> str | None:
    """The algorithm a checksum URL's suffix names (``.sha256``, ``.md5``…)."""
    path = urlsplit(checksum_url).path.lower()
    return next(
        (algo for suffix, algo in CHECKSUM_ALGORITHMS.items() if path.endswith(suffix)),
        None,
    )


def entry_size(entry: dict) -> int:
    """Bytes of content an entry brings: its file, or its catalog package."""
    if kind_of(entry) == PACKAGE:
        package = app_catalog.get(entry.get("ident"))
        return package.size if package is not None else 0
    size = entry.get("size")
    return size if isinstance(size, int) else 0


def total_size(contents: Iterable[dict]) -> int:
    return sum(entry_size(entry) for entry in contents or [])


def validate_contents(value) -> None:
    """The chosen content: a list of ZIM and package entries (module docstring).

    Every message names the entry ("Content entry 2: …") and says what to fix.
    """
    if not isinstance(value, list) or not value:
        raise ValidationError(_("Choose at least one content entry."))
    if len(value) > MAX_CONTENT_ENTRIES:
        raise ValidationError(
            _("At most %(n)d content entries.") % {"n": MAX_CONTENT_ENTRIES}
        )
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(value, start=1):
        where = _("Content entry %(i)d") % {"i": index}
        try:
            keys = _check_entry(entry)
        except ValueError as exc:
            raise ValidationError(f"{where}: {exc}") from None
        for key in keys:
            if key in seen:
                raise ValidationError(f"{where}: {listed_twice(key, seen[key])}")
            seen[key] = index


def listed_twice(key: tuple[str, str], first: int) -> str:
    """Why an entry whose ``key`` (url, file or package) entry ``first`` has too
    is refused."""
    kind, value = key
    if kind == "url":
        message = _("this URL is listed twice (also content entry %(j)d).")
    elif kind == "file":
        message = _(
            "it would land on the hotspot as “%(name)s”, as content entry %(j)d "
            "does; rename one of the files, or give one of them an ident."
        )
    else:
        message = _("the package %(name)s is listed twice (also content entry %(j)d).")
    return message % {"name": value, "j": first}


def _check_entry(entry) -> list[tuple[str, str]]:
    """ValueError saying what is wrong with one entry; else the keys that must be
    unique among the entries (its URL, the file it lands as, its package)."""
    if not isinstance(entry, dict):
        raise ValueError(_("must be an object."))
    kind = kind_of(entry)
    if kind not in KINDS:
        raise ValueError(_("kind is zim or package."))
    allowed = PACKAGE_KEYS if kind == PACKAGE else ZIM_KEYS
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(
            _("unknown keys %(keys)s.") % {"keys": ", ".join(sorted(unknown))}
        )
    if kind == PACKAGE:
        ident = entry.get("ident")
        if ident not in app_catalog:
            raise ValueError(
                _(
                    "%(ident)r is not a package of offspot-config's catalog; name "
                    "one of its app or files packages, such as %(example)s."
                )
                % {"ident": ident, "example": "nomad.offspot.kiwix.org"}
            )
        return [("package", ident)]
    return _check_zim(entry)


def _check_fetchable(key: str, url: str) -> None:
    """Refuse at once a URL the creator would refuse to fetch (DESIGN 6)."""
    problem = fetch_problem(url)
    if problem:
        raise ValueError(
            _(
                "%(key)s %(url)s is refused: %(why)s. Content is fetched from "
                "public addresses only."
            )
            % {"key": key, "url": url, "why": problem}
        )


def _check_zim(entry: dict) -> list[tuple[str, str]]:
    title = entry.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 200:
        raise ValueError(_("title has 1 to 200 chars."))
    url = entry.get("url")
    url_check = URLValidator(schemes=["http", "https"])
    try:
        url_check(url if isinstance(url, str) else "")
    except ValidationError:
        raise ValueError(_("url must be an http or https URL.")) from None
    _check_fetchable("url", url)
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_SIZE:
        raise ValueError(_("size must be a positive number of bytes."))
    for key, length in (("sha256", 64), ("md5", 32)):
        digest = entry.get(key)
        well_formed = (
            isinstance(digest, str) and len(digest) == length and HEX.match(digest)
        )
        if digest is not None and not well_formed:
            raise ValueError(
                _("%(key)s must be %(n)d lowercase hex digits.")
                % {"key": key, "n": length}
            )
    checksum_url = entry.get("checksum_url")
    if checksum_url is not None:
        try:
            url_check(checksum_url if isinstance(checksum_url, str) else "")
        except ValidationError:
            raise ValueError(_("checksum_url must be an http(s) URL.")) from None
        _check_fetchable("checksum_url", checksum_url)
        if checksum_algorithm(checksum_url) is None:
            raise ValueError(
                _(
                    "checksum_url must end in .sha256, .md5, .sha1 or .sha512, so "
                    "that the algorithm is known; or give sha256 or md5 instead."
                )
            )
    for key in ("name", "flavour", "version", "description"):
        if key in entry and not isinstance(entry[key], str):
            raise ValueError(_("%(key)s must be text.") % {"key": key})
    for key in ("languages", "tags"):
        if key in entry and (
            not isinstance(entry[key], list)
            or not all(isinstance(item, str) for item in entry[key])
        ):
            raise ValueError(_("%(key)s must be a list of texts.") % {"key": key})
    keys = [("url", url)]
    ident = entry.get("ident")
    if ident is None:
        try:
            name = url_file_name(url)
            if not name.endswith(".zim"):
                raise ValueError(
                    _(
                        "its name “%(name)s” does not end in .zim, and the "
                        "hotspot serves only .zim files"
                    )
                    % {"name": name}
                )
            keys.append(("file", name))
        except ValueError as exc:
            raise ValueError(
                _(
                    "the file of %(url)s cannot be stored on the hotspot: %(why)s. "
                    "Rename the file, or give the entry an ident."
                )
                % {"url": url, "why": exc}
            ) from None
    elif not isinstance(ident, str) or not ZIM_IDENT.match(ident):
        raise ValueError(
            _(
                "ident must be publisher:name:flavour, as in Kiwix's catalog "
                "(openZIM:wikipedia_en_all:maxi), without / or control characters."
            )
        )
    return keys
