"""The hotspot's OCI images: pulled by skopeo for the Raspberry Pi, kept in the
content cache, and put where image-creator puts them.

image-creator exports each image with docker-export for ``linux/arm64/v8`` into
``images/<docker-export's file name>`` on the data partition, a ``docker save``
archive that the base image's ``docker-images-loader`` loads at first boot by
its tag. Here skopeo does the pulling (docker-export speaks HTTPS to the
registry named in the image only): first into an OCI layout kept in the cache
between attempts, so that an interrupted pull fetches only the blobs it lacks,
then into a ``docker-archive`` tagged as docker-export tags it. The archive is
a cache entry keyed by the image, the platform and the digest the registry
gives today, with its size and sha256 recorded and checked at each use.

A registry mirror (``HOST=MIRROR``) sends every pull of HOST's images to
MIRROR instead, for machines that cannot reach the public registry; an
``http://`` mirror is used without TLS.

skopeo reaches the network itself: before it runs, the registry it will dial
(the mirror, when there is one) is checked with the guarded client's rule
(``outbound.check_registry``); the redirects skopeo follows are not. Its
messages quote what registries answer: the order's failure reason says what
went wrong in our words, and the creator's log has skopeo's own message.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from docker_export import Image, Platform, get_export_filename

from outbound.guard import Refused
from workers.common.progress import Cancel, Canceled, Progress
from workers.creator import outbound
from workers.creator.cache import ContentCache
from workers.creator.recipe import OciImage
from workers.creator.tools import tool_path

# docker-export configures the root logger when it is imported (basicConfig with
# its own format): each program configures logging its own way
# (workers.common.worker.main), so that handler goes.
logging.root.handlers[:] = [
    handler
    for handler in logging.root.handlers
    if getattr(handler.formatter, "_fmt", None) != "%(levelname)s: %(message)s"
]

#: image-creator's only target (its constants.Global.platform): a Raspberry Pi
PLATFORM = Platform.parse("linux/arm64/v8")
#: the folder of the data partition that holds the exported images
IMAGES_FOLDER = PurePosixPath("images")
#: what skopeo says when retrying cannot help
PERMANENT = re.compile(
    r"manifest unknown|name unknown|not found|no image found|denied|unauthorized"
    r"|invalid reference|choosing an image from manifest list",
    re.IGNORECASE,
)
#: (what skopeo says, what the failure reason says), the first that matches
REASONS = (
    (r"choosing an image from manifest list", f"no {PLATFORM} image in its list"),
    (
        r"manifest unknown|name unknown|not found|no image found",
        "the registry has no such image",
    ),
    (r"denied|unauthorized", "the registry refuses access to it"),
    (r"invalid reference", "not a valid image reference"),
    (r"x509|certificate|tls", "TLS failed with the registry"),
    (r"timeout|timed out", "the registry did not answer in time"),
    (
        r"connection refused|no such host|dial tcp|connection reset|EOF",
        "cannot reach the registry",
    ),
    (r"digest", "a blob does not match its digest"),
    (r"no space left", "no space left on the cache's disk"),
)

log = logging.getLogger(__name__)


class OciError(Exception):
    """An image could not be pulled; ``retryable`` when the registry may
    answer another time."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Mirror:
    location: str  # host[:port][/path]
    insecure: bool  # plain HTTP


def parse_mirrors(values: Iterable[str]) -> dict[str, Mirror]:
    """``HOST=MIRROR`` settings (MIRROR: ``[http[s]://]host[:port][/path]``) by
    registry; ValueError naming a bad one."""
    mirrors = {}
    for value in values:
        registry, sep, target = value.strip().partition("=")
        registry = registry.strip().lower()
        if registry == "index.docker.io":
            registry = "docker.io"
        scheme, _, location = target.strip().rpartition("://")
        location = location.rstrip("/")
        if (
            not sep
            or not re.fullmatch(r"[a-z0-9.-]+(:\d+)?", registry)
            or scheme not in ("", "http", "https")
            or not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._/-]+)?", location)
        ):
            raise ValueError(
                f"registry mirror {value!r}: write REGISTRY=MIRROR, e.g. "
                "ghcr.io=http://10.0.0.5:5000 or docker.io=mirror.example.org/hub"
            )
        mirrors[registry] = Mirror(location=location, insecure=scheme == "http")
    return mirrors


def export_name(ident: str) -> str:
    """docker-export's file name of the image, as image-creator stores it."""
    return get_export_filename(image=Image.parse(ident), platform=PLATFORM)


def repo_tag(ident: str) -> str:
    """The tag the exported archive carries (docker-export's RepoTags)."""
    image = Image.parse(ident)
    return f"{image.reg_fullname}:{image.tag}"


class Puller:
    """Pulls a build's images into ``cache`` (pinned); ``config_dir`` holds
    skopeo's registries.conf for the mirrors."""

    def __init__(
        self,
        cache: ContentCache,
        *,
        mirrors: dict[str, Mirror] | None = None,
        config_dir: Path,
    ) -> None:
        self.cache = cache
        self.mirrors = dict(mirrors or {})
        self.options = ["--insecure-policy"]  # digests are checked, signatures not
        if mirrors:
            conf = Path(config_dir) / "registries.conf"
            conf.write_text(_registries_conf(mirrors), encoding="utf-8")
            self.options += ["--registries-conf", str(conf)]

    def pull_all(
        self,
        images: Sequence[OciImage],
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> list[Path]:
        """The archive of each image, in order; progress by declared sizes."""
        total = sum(image.filesize for image in images) or 1
        done, paths = 0, []
        try:
            for image in images:
                if progress:
                    progress("pulling images", done * 100.0 / total)
                paths.append(self.pull(image, cancel))
                done += image.filesize
        except BaseException:
            for path in paths:
                self.cache.unpin(path)
            raise
        if progress:
            progress("pulling images", 100.0)
        return paths

    def pull(self, image: OciImage, cancel: Cancel | None = None) -> Path:
        parsed = Image.parse(image.ident)
        digest = parsed.digest or self._digest(image, parsed, cancel)
        key = f"oci:{parsed.reg_fullname}:{parsed.tag}@{digest}:{PLATFORM}"
        meta = {"ident": image.ident, "digest": digest, "platform": str(PLATFORM)}
        for _attempt in range(2):
            path = self.cache.produce(
                key,
                export_name(image.ident),
                lambda part: self._export(image, parsed, digest, key, part, cancel),
                meta=meta,
                hashed=True,
            )
            if self.cache.verify(path):
                return path
            self.cache.discard(path)  # damaged since it was cached: pull again
        raise OciError(f"{image.label}: {image.ident}: its cached archive is damaged")

    def _digest(self, image: OciImage, parsed: Image, cancel: Cancel | None) -> str:
        output = self._skopeo(
            [
                *_platform_options(),
                "inspect",
                "--no-tags",
                "--format",
                "{{.Digest}}",
                f"docker://{parsed.reg_fullname}:{parsed.tag}",
            ],
            image,
            cancel,
        )
        digest = output.strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise OciError(f"{image.label}: {image.ident}: no digest from the registry")
        return digest

    def _export(
        self,
        image: OciImage,
        parsed: Image,
        digest: str,
        key: str,
        part: Path,
        cancel: Cancel | None,
    ) -> None:
        layout = self.cache.scratch(key)
        source = f"docker://{parsed.reg_fullname}@{digest}"
        self._skopeo(
            [
                *_platform_options(),
                "copy",
                "--quiet",
                "--retry-times",
                "3",
                source,
                f"oci:{layout}:image",
            ],
            image,
            cancel,
        )
        self._skopeo(
            [
                "copy",
                "--quiet",
                f"oci:{layout}:image",
                f"docker-archive:{part}:{repo_tag(image.ident)}",
            ],
            image,
            cancel,
        )
        shutil.rmtree(layout, ignore_errors=True)

    def _check_registry(self, image: OciImage) -> None:
        """OciError unless the registry skopeo dials for ``image`` is allowed."""
        registry = Image.parse(image.ident).registry
        if registry == "index.docker.io":
            registry = "docker.io"
        mirror = self.mirrors.get(registry)
        try:
            outbound.check_registry(
                mirror.location if mirror else registry, self.cache.allowed
            )
        except Refused as exc:
            raise OciError(
                f"{image.label}: cannot pull {image.ident}: {exc.reason}",
                retryable=False,
            ) from None

    def _skopeo(self, args: list[str], image: OciImage, cancel: Cancel | None) -> str:
        if any(arg.startswith("docker://") for arg in args):
            self._check_registry(image)
        command = ["skopeo", *self.options, *args]
        environment = outbound.tool_environment(
            PATH=tool_path(),
            # skopeo's big temporary files stay on the cache's disk.
            TMPDIR=str(self.cache.root / "tmp"),
        )
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
        )
        try:
            while True:
                try:
                    out, err = process.communicate(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel():
                        raise Canceled(f"pull of {image.ident} canceled") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            message = _skopeo_message(err)
            log.warning("skopeo %s: %s", " ".join(args), message)
            raise OciError(
                f"{image.label}: cannot pull {image.ident} for {PLATFORM}: "
                f"{_reason(message)} (the creator's log has skopeo's message)",
                retryable=not PERMANENT.search(message),
            )
        return out


def _platform_options() -> list[str]:
    options = ["--override-os", PLATFORM.os, "--override-arch", PLATFORM.architecture]
    if PLATFORM.variant:
        options += ["--override-variant", PLATFORM.variant]
    return options


def _registries_conf(mirrors: dict[str, Mirror]) -> str:
    # A prefix rewritten to another location, not a [[registry.mirror]]: a pull
    # never falls back to the public registry the host cannot reach.
    blocks = []
    for registry, mirror in sorted(mirrors.items()):
        blocks.append(
            "[[registry]]\n"
            f'prefix = "{registry}"\n'
            f'location = "{mirror.location}"\n'
            f"insecure = {'true' if mirror.insecure else 'false'}\n"
        )
    return "\n".join(blocks)


def _reason(message: str) -> str:
    """What went wrong, in our words: skopeo quotes what registries answer."""
    for pattern, reason in REASONS:
        if re.search(pattern, message, re.IGNORECASE):
            return reason
    return "skopeo failed"


def _skopeo_message(stderr: str) -> str:
    """skopeo's last error, on one line (its logrus msg="…" when there is one)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    found = re.search(r'msg="((?:[^"\\]|\\.)*)"', last)
    text = found.group(1).replace('\\"', '"') if found else last
    return " ".join(text.split())[:500]
