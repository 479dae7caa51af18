"""image-creator's YAML (the recipe), read and checked before anything is made.

The format is offspot/image-creator's, as Kiwix's offspot-config parses it
(``offspot_config.inputs``): ``base``, ``output``, ``oci_images``, ``files``,
``write_config`` and ``offspot``. A key the format does not have, or a value the
creator cannot honour, raises ``RecipeError`` with one line naming it, so that a
refused recipe costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from docker_export import Image
from offspot_config.utils.misc import parse_size

#: everything a recipe writes lands below this folder of the running hotspot,
#: the root of the data partition (the base image mounts partition 3 there)
DATA = PurePosixPath("/data")
VIAS = ("direct", "base64", "bztar", "gztar", "tar", "xztar", "zip")
ARCHIVES = VIAS[2:]
#: image-creator's checksum names (aria2's) -> hashlib's
CHECKSUM_ALGORITHMS = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
    "md5": "md5",
    "adler32": "adler32",
}
HEX_LENGTHS = {"sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96, "sha512": 128}
HEX_LENGTHS |= {"md5": 32, "adler32": 8}
#: base.source may be a base-image version, as offspot-config resolves it
BASE_VERSION = re.compile(r"\d+\.\d+\.\d+[a-z0-9._-]*")
BASE_VERSION_URL = "https://drive.hotspot.kiwix.org/base/offspot-base-arm64-{}.img"
#: where write_config puts the recipe (offspot-config's MainConfig.read_from)
RECIPE_COPY = PurePosixPath("image.yaml")

KEYS = ("base", "output", "oci_images", "files", "write_config", "offspot")
BASE_KEYS = ("source", "rootfs_size", "checksum")
OUTPUT_KEYS = ("size", "compress")
IMAGE_KEYS = ("ident", "url", "filesize", "fullsize")
FILE_KEYS = ("to", "url", "content", "via", "size", "checksum")
CHECKSUM_KEYS = ("algo", "value", "kind")


class RecipeError(ValueError):
    """The recipe cannot be built; one line naming the key and what to change."""


@dataclass(frozen=True)
class Checksum:
    algo: str  # hashlib's name
    value: str  # the digest, or the URL to read it from
    kind: str = "digest"  # or "url"


@dataclass(frozen=True)
class Base:
    source: str  # URL, file:// URL or path
    rootfs_size: int
    checksum: Checksum | None = None


@dataclass(frozen=True)
class FileEntry:
    label: str  # files[N] or write_config, for messages
    to: PurePosixPath  # relative to /data; "." is /data itself
    via: str
    url: str | None = None
    content: str | None = None
    size: int | None = None  # expanded size for archives; None when unknown
    checksum: Checksum | None = None

    @property
    def is_archive(self) -> bool:
        return self.via in ARCHIVES

    @property
    def is_remote(self) -> bool:
        return self.content is None and not self.url.startswith("file:")

    def payload(self) -> bytes:
        """The bytes of a content entry, as image-creator writes them."""
        if self.via == "base64":
            return base64.standard_b64decode(self.content.encode("ascii"))
        return self.content.encode("utf-8")


@dataclass(frozen=True)
class OciImage:
    label: str
    ident: str
    filesize: int
    fullsize: int


@dataclass(frozen=True)
class Recipe:
    text: str
    base: Base
    size: int | None  # bytes, or None for "auto"
    images: tuple[OciImage, ...]
    files: tuple[FileEntry, ...]  # write_config's copy of the recipe included
    offspot: dict | None


def load_recipe(path: Path) -> Recipe:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read the recipe {path}: {exc}") from None
    return parse_recipe(text)


def parse_recipe(text: str) -> Recipe:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"the recipe is not valid YAML{line}: {problem}") from None
    top = _mapping(document, "the recipe", KEYS, required=("base",))
    files = [
        _file(item, f"files[{index}]")
        for index, item in enumerate(_list(top.get("files"), "files"))
    ]
    if _optional_bool(top.get("write_config"), "write_config"):
        # offspot-config adds the recipe itself as a file, before parsing it.
        files.append(
            FileEntry(
                label="write_config",
                to=RECIPE_COPY,
                via="direct",
                content=text.strip(),
                size=len(text.encode("utf-8")),
            )
        )
    _check_destinations(files)
    offspot = top.get("offspot")
    if offspot is not None and not isinstance(offspot, dict):
        raise RecipeError("offspot: must be a mapping (the runtime's configuration)")
    return Recipe(
        text=text,
        base=_base(top["base"]),
        size=_output_size(top.get("output")),
        images=tuple(
            _image(item, f"oci_images[{index}]")
            for index, item in enumerate(_list(top.get("oci_images"), "oci_images"))
        ),
        files=tuple(files),
        offspot=offspot or None,
    )


# -- sections -----------------------------------------------------------------------


def _base(value: Any) -> Base:
    base = _mapping(value, "base", BASE_KEYS, required=("source", "rootfs_size"))
    source = base["source"]
    if not isinstance(source, str) or not source.strip():
        raise RecipeError("base.source: give a URL, a file:// URL, a path or a version")
    source = source.strip()
    if BASE_VERSION.fullmatch(source):
        source = BASE_VERSION_URL.format(source)
    scheme = urllib.parse.urlparse(source).scheme
    if scheme not in ("http", "https", "file", ""):
        raise RecipeError(
            f"base.source: {scheme}:// is not supported: use http(s)://, file:// or a "
            "path"
        )
    rootfs = _size(base["rootfs_size"], "base.rootfs_size")
    if rootfs is None or rootfs <= 0:
        raise RecipeError("base.rootfs_size: give the root partition's size, e.g. 5G")
    checksum = base.get("checksum")
    return Base(
        source=source,
        rootfs_size=rootfs,
        checksum=None if checksum is None else _checksum(checksum, "base.checksum"),
    )


def _output_size(value: Any) -> int | None:
    output = _mapping(value if value is not None else {}, "output", OUTPUT_KEYS)
    if output.get("compress") not in (None, False):
        raise RecipeError(
            "output.compress: only false is supported: the creator writes a sparse "
            ".img with its .bmap"
        )
    raw = output.get("size")
    if raw is None or raw == "auto":
        return None
    size = _size(raw, "output.size")
    if size is None or size <= 0:
        raise RecipeError(f"output.size: {raw!r} is not a size: use auto or e.g. 8G")
    return -(-size // 512) * 512  # image-creator's rounding to whole sectors


def _image(value: Any, where: str) -> OciImage:
    required = ("ident", "filesize", "fullsize")
    entry = _mapping(value, where, IMAGE_KEYS, required=required)
    ident = entry["ident"]
    if not isinstance(ident, str) or not ident.strip() or re.search(r"\s", ident):
        raise RecipeError(f"{where}.ident: give an image name, e.g. ghcr.io/x/y:1.0")
    try:
        image = Image.parse(ident)
    except ValueError as exc:
        raise RecipeError(
            f"{where}.ident: {ident!r} is not an image name: {exc}"
        ) from None
    if not image.tag:
        raise RecipeError(
            f"{where}.ident: {ident!r} has no tag: the hotspot loads images by their "
            "tag, write name:tag or name:tag@digest"
        )
    if entry.get("url") is not None and not isinstance(entry["url"], str):
        raise RecipeError(f"{where}.url: must be a URL or null")
    sizes = {}
    for key in ("filesize", "fullsize"):
        number = entry[key]
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise RecipeError(f"{where}.{key}: must be a whole number of bytes")
        sizes[key] = number
    return OciImage(label=where, ident=ident, **sizes)


def _file(value: Any, where: str) -> FileEntry:
    entry = _mapping(value, where, FILE_KEYS, required=("to",))
    via = entry.get("via", "direct")
    if via not in VIAS:
        raise RecipeError(
            f"{where}.via: {via!r} is not supported: use {', '.join(VIAS)}"
        )
    url, content = entry.get("url"), entry.get("content")
    if content is not None and not isinstance(content, str):
        raise RecipeError(f"{where}.content: must be text")
    if content is not None and content.strip():
        # Content wins over url, and is written stripped (offspot-config's File).
        url, content = None, content.strip()
        if via not in ("direct", "base64"):
            raise RecipeError(
                f"{where}.via: {via} expands a downloaded archive: a content entry "
                "is direct (text) or base64"
            )
        if via == "base64":
            try:
                base64.standard_b64decode(content.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError):
                raise RecipeError(f"{where}.content: not valid base64") from None
    elif isinstance(url, str) and url.strip():
        url, content = url.strip(), None
        _check_url(url, f"{where}.url")
        if via == "base64":
            raise RecipeError(
                f"{where}.via: base64 decodes a content entry, not a download: use "
                "direct or an archive kind"
            )
    else:
        raise RecipeError(f"{where}: give url or content")
    to = _destination(entry["to"], f"{where}.to", url if via == "direct" else None)
    if to == PurePosixPath(".") and via not in ARCHIVES:
        raise RecipeError(f"{where}.to: /data is a folder: name the file below it")
    size = _size(entry.get("size"), f"{where}.size")
    checksum = entry.get("checksum")
    return FileEntry(
        label=where,
        to=to,
        via=via,
        url=url,
        content=content,
        size=None if size is None or size < 0 else size,
        checksum=None if checksum is None else _checksum(checksum, f"{where}.checksum"),
    )


def _checksum(value: Any, where: str) -> Checksum:
    entry = _mapping(value, where, CHECKSUM_KEYS, required=("algo", "value"))
    algo = CHECKSUM_ALGORITHMS.get(entry["algo"])
    if algo is None:
        raise RecipeError(
            f"{where}.algo: {entry['algo']!r} is not supported: use "
            f"{', '.join(CHECKSUM_ALGORITHMS)}"
        )
    kind = entry.get("kind", "digest")
    text = entry["value"]
    if not isinstance(text, str):
        raise RecipeError(f"{where}.value: must be text")
    text = text.strip()
    if kind == "digest":
        text = text.lower()
        if not re.fullmatch(f"[0-9a-f]{{{HEX_LENGTHS[algo]}}}", text):
            raise RecipeError(
                f"{where}.value: not a {entry['algo']} digest "
                f"({HEX_LENGTHS[algo]} hexadecimal digits)"
            )
    elif kind == "url":
        if urllib.parse.urlparse(text).scheme not in ("http", "https"):
            raise RecipeError(f"{where}.value: kind url needs an http(s) URL")
    else:
        raise RecipeError(f"{where}.kind: {kind!r} is not supported: use digest or url")
    return Checksum(algo=algo, value=text, kind=kind)


# -- values -------------------------------------------------------------------------


def _mapping(value, where: str, allowed, required=()) -> dict:
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: must be a mapping with {', '.join(allowed)}")
    for key in value:
        if key not in allowed:
            name = key if where == "the recipe" else f"{where}.{key}"
            raise RecipeError(
                f"unknown key {name}: image-creator's format has "
                f"{', '.join(allowed)} there"
            )
    for key in required:
        if value.get(key) is None:
            name = key if where == "the recipe" else f"{where}.{key}"
            raise RecipeError(f"{name}: missing, and required")
    return value


def _list(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecipeError(f"{where}: must be a list of mappings")
    return value


def _optional_bool(value, where: str) -> bool:
    if value is not None and not isinstance(value, bool):
        raise RecipeError(f"{where}: must be true or false")
    return bool(value)


def _size(value, where: str) -> int | None:
    """Bytes in an int or a size text (offspot-config's parser: 8G is 8 * 10**9
    bytes, 8GiB 8 * 2**30); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RecipeError(f"{where}: {value!r} is not a size")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_size(value)
        except Exception:  # humanfriendly's InvalidSize, and what it lets through
            raise RecipeError(f"{where}: {value!r} is not a size, e.g. 8G") from None
    raise RecipeError(f"{where}: {value!r} is not a size")


def _check_url(url: str, where: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return
    if parsed.scheme == "file" and parsed.path.startswith("/"):
        return
    raise RecipeError(f"{where}: {url!r} is not supported: use http(s):// or file://")


def _destination(value, where: str, url: str | None) -> PurePosixPath:
    """`to` relative to /data. A `to` that ends with "/" names a folder: a file
    downloaded there takes its URL's last segment, percent-decoded."""
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{where}: give a path below /data")
    if "\0" in value:
        raise RecipeError(f"{where}: contains a NUL character")
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or not path.is_relative_to(DATA):
        raise RecipeError(
            f"{where}: {value!r} must be an absolute path below /data, without '..'"
        )
    relative = path.relative_to(DATA)
    if not value.endswith("/") or url is None:
        return relative
    raw = urllib.parse.urlparse(url).path.rsplit("/", 1)[-1]
    try:
        name = urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise RecipeError(
            f"{where}: the URL's file name is not UTF-8: give a name"
        ) from None
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise RecipeError(
            f"{where}: the URL gives no usable file name ({raw!r}): name the file"
        )
    return relative / name


def _check_destinations(files: list[FileEntry]) -> None:
    seen: dict[PurePosixPath, FileEntry] = {}
    for entry in files:
        if entry.to in seen:
            raise RecipeError(
                f"{entry.label}.to: /data/{entry.to} is also {seen[entry.to].label}'s"
            )
        seen[entry.to] = entry
    for entry in files:
        for parent in entry.to.parents:
            other = seen.get(parent)
            if other is not None and not other.is_archive:
                raise RecipeError(
                    f"{entry.label}.to: /data/{entry.to} is inside /data/{parent}, "
                    f"a file of {other.label}"
                )
