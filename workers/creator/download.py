"""Content over HTTP: a download that resumes with Range requests, hashes what
it receives (sha256 and md5) and survives dropped connections; the checksums a
download is checked against, given or published beside the content.

The content cache (``cache.py``) decides where a download goes and when it
counts; this module only moves bytes and says what they hash to. Its errors
reach the order's failure reason, which the client reads: they name the URL
and the reason, never bytes a server sent (a checksum file's text, a status
line) nor a digest computed here, which goes to the creator's log only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from outbound import client
from outbound.guard import Refused
from workers.common.hashing import hash_file, hashers
from workers.common.progress import Cancel, Canceled
from workers.creator.outbound import TEXT_LIMIT

log = logging.getLogger(__name__)

#: computed for every download: the cache records them
ALGORITHMS = ("sha256", "md5")
#: hex digits of each checksum a recipe may give (image-creator's list, by
#: hashlib's names: sha-256 is sha256)
HEX_LENGTHS = {
    "sha1": 40,
    "sha224": 56,
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "md5": 32,
    "adler32": 8,
}
READ_SIZE = 64 * 1024
TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}

#: on_bytes(bytes so far, bytes in all or None when unknown)
OnBytes = Callable[[int, int | None], None]


class ContentError(Exception):
    """A download or local file could not be used; the message names the URL."""


class Interrupted(Exception):
    """The server closed the connection before the whole body arrived."""


def expected_checksums(
    sha256: str | None = None, md5: str | None = None, **others: str | None
) -> dict[str, str]:
    """The checksums given (by hashlib name), checked to be hexadecimal digests."""
    expected = {}
    for algo, value in {"sha256": sha256, "md5": md5, **others}.items():
        if algo not in HEX_LENGTHS:
            raise ContentError(
                f"{algo} is not a checksum the creator knows: use one of "
                f"{', '.join(HEX_LENGTHS)}"
            )
        if value:
            value = value.strip().lower()
            if not re.fullmatch(f"[0-9a-f]{{{HEX_LENGTHS[algo]}}}", value):
                raise ContentError(
                    f"{value!r} is not a {algo} checksum "
                    f"({HEX_LENGTHS[algo]} hexadecimal digits expected)"
                )
            expected[algo] = value
    return expected


def algorithms_for(expected: Mapping[str, str]) -> tuple[str, ...]:
    """What a download computes: the recorded ones and those it is checked with."""
    return (*ALGORITHMS, *(algo for algo in expected if algo not in ALGORITHMS))


def check_digests(source: str, expected: Mapping[str, str], actual: Mapping) -> None:
    """ContentError on a mismatch. Neither digest is in the message: the
    expected one may have been read from a URL, and the computed one says
    something of bytes the client may not see; both go to the log."""
    for algo, value in expected.items():
        if actual[algo] != value:
            log.warning(
                "%s: %s checksum mismatch: expected %s, computed %s",
                source,
                algo,
                value,
                actual[algo],
            )
            raise ContentError(
                f"{source}: {algo} checksum mismatch: the file is corrupt or the "
                "checksum is outdated"
            )


def file_digests(
    path: Path,
    algorithms: tuple[str, ...] = ALGORITHMS,
    *,
    on_bytes: OnBytes | None = None,
) -> dict[str, str]:
    """Hex digests of a whole file (sha256 and md5 unless told)."""
    found = hash_file(path, algorithms, progress=on_bytes)
    return {algo: digest.hexdigest() for algo, digest in found.items()}


def parse_checksum_text(source: str, algo: str, text: str) -> dict[str, str]:
    """The digest at the start of a checksum file (``md5sum``'s format or the
    digest alone). A file that does not start with one is refused without
    quoting it: it may be anything the URL led to."""
    token = (text.split() or [""])[0]
    try:
        return expected_checksums(**{algo: token})
    except ContentError:
        raise ContentError(
            f"{source}: not a {algo} checksum file (it does not start with "
            f"{HEX_LENGTHS.get(algo, '?')} hexadecimal digits)"
        ) from None


def published_checksum(
    session: requests.Session,
    url: str,
    timeout: tuple[float, float],
    *,
    required: bool = True,
) -> dict[str, str]:
    """The checksum published beside ``url``: ``<url>.sha256``, else ``.md5``;
    {} when neither exists and none is ``required``."""
    for algo in ALGORITHMS:
        checksum_url = f"{url}.{algo}"
        try:
            body = client.fetch_bytes(
                session, checksum_url, max_bytes=TEXT_LIMIT, timeout=timeout
            )
        except client.OutboundError as exc:
            if exc.status == 404:
                continue
            raise ContentError(str(exc)) from None
        text = body.decode("utf-8", errors="replace")
        return parse_checksum_text(checksum_url, algo, text)
    if not required:
        return {}
    raise ContentError(
        f"{url}: no checksum given and neither {url}.sha256 nor {url}.md5 exists: "
        "pass sha256= or md5=, or publish a checksum file beside the content"
    )


def download(
    session: requests.Session,
    url: str,
    part: Path,
    *,
    size: int | None,
    on_bytes: OnBytes | None,
    cancel: Cancel | None,
    retries: int,
    timeout: tuple[float, float],
    reserve: Callable[[int], None] | None = None,
    algorithms: tuple[str, ...] = ALGORITHMS,
) -> tuple[dict[str, str], int]:
    """Download into `part`, resuming what is there; (digests, size).

    ``reserve(bytes)`` is called before the rest of the file is written, to
    make room for it. ``algorithms`` are the digests computed on the way. A
    dropped connection is retried ``retries`` times with a
    growing pause; the partial file is kept for the next call to resume.
    """
    digests, hashed = hashers(algorithms), 0
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            with session.get(
                url,
                headers={"Range": f"bytes={offset}-"} if offset else {},
                stream=True,
                timeout=timeout,
            ) as response:
                status = response.status_code
                if status == 416 and offset:
                    part.unlink(missing_ok=True)  # bigger than the file: restart
                    raise Interrupted(f"server refused to resume at {offset}")
                if status == 404:
                    raise ContentError(f"{url}: not found (HTTP 404): fix the URL")
                if status in TRANSIENT_HTTP:
                    raise Interrupted(client.status_text(status))
                if status not in (200, 206):
                    raise ContentError(f"{url}: {client.status_text(status)}")
                start, total = response_range(response)
                if status == 206 and start != offset:
                    part.unlink(missing_ok=True)
                    raise Interrupted(f"asked for byte {offset}, got {start}")
                if status == 200:
                    offset = 0  # the server ignores Range: start over
                if size is not None and total is not None and total != size:
                    part.unlink(missing_ok=True)
                    raise ContentError(
                        f"{url}: the server has {total} bytes, expected {size}: "
                        "the content changed or the size is wrong"
                    )
                if total is not None and reserve is not None:
                    reserve(total - offset)
                if hashed != offset:
                    digests = (
                        hash_file(part, algorithms, limit=offset)
                        if offset
                        else hashers(algorithms)
                    )
                    hashed = offset
                with part.open("r+b" if offset else "wb") as out:
                    out.seek(offset)
                    out.truncate()
                    # Small reads: a cut connection loses at most one read.
                    for chunk in response.iter_content(READ_SIZE):
                        if cancel and cancel():
                            raise Canceled(f"download of {url} canceled")
                        out.write(chunk)
                        for digest in digests.values():
                            digest.update(chunk)
                        hashed += len(chunk)
                        if on_bytes:
                            on_bytes(hashed, total if total is not None else size)
                if total is not None and hashed != total:
                    raise Interrupted(f"got {hashed} of {total} bytes")
                if size is not None and hashed != size:
                    part.unlink(missing_ok=True)
                    raise ContentError(f"{url}: got {hashed} bytes, not {size}")
                return {a: d.hexdigest() for a, d in digests.items()}, hashed
        except TRANSIENT_ERRORS as exc:
            failures += 1
            if failures > retries:
                last = exc if isinstance(exc, Interrupted) else client.reason(exc)
                raise ContentError(
                    f"{url}: download failed {failures} times, last: {last}; "
                    "the partial file is kept and the next fetch resumes it"
                ) from exc
            time.sleep(min(0.1 * 2**failures, 5.0))
        except (Refused, requests.RequestException) as exc:
            raise ContentError(client.describe(exc, url)) from None


#: worth a retry: the connection dropped or stalled, or the body came short
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    Interrupted,
)


def response_range(response: requests.Response) -> tuple[int, int | None]:
    """(first byte offset, total size or None) of a 200 or 206 response."""
    if response.status_code == 206:
        match = re.fullmatch(
            r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "")
        )
        if match:
            total = match.group(3)
            return int(match.group(1)), None if total == "*" else int(total)
        raise Interrupted("206 response without a usable Content-Range")
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None
