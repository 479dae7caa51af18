"""HTTP byte ranges (RFC 9110, 14): which parts of a file a request asks for,
whether its validators allow a partial answer, and the validators themselves.

Plain functions over header values, so every odd case is tested without a
socket; ``ftp.web`` puts them on the wire.
"""

import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

#: More ranges than this in one request are answered with the whole file: a
#: request for thousands of tiny overlapping ranges costs the server, not the
#: client (RFC 9110, 14.2).
MAX_RANGES = 16
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class Span:
    """Bytes ``start`` to ``end`` of a file, both included."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(Exception):
    """No range of the request overlaps the file: 416."""


def parse(header: str | None, size: int) -> list[Span] | None:
    """The spans a ``Range`` header asks of a file of ``size`` bytes.

    ``None``: answer with the whole file (no header, a unit other than bytes,
    a malformed header, or too many ranges: all may be ignored). Raises
    ``Unsatisfiable`` when the ranges are well formed but none overlaps the
    file. Overlapping or adjacent spans are merged, in the order asked.
    """
    if not header:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    spans = []
    for part in parts:
        match = _SPEC.match(part)
        if match is None or match[1] == match[2] == "":
            return None
        first, last = match[1], match[2]
        if first == "":  # the last N bytes
            if int(last) == 0:
                continue
            spans.append(Span(max(size - int(last), 0), size - 1))
            continue
        start = int(first)
        if last and int(last) < start:
            return None  # syntactically invalid: the header is ignored
        if start >= size:
            continue
        end = int(last) if last else size - 1
        spans.append(Span(start, min(end, size - 1)))
    if not spans or size == 0:
        raise Unsatisfiable
    return _merged(spans)


def _merged(spans: list[Span]) -> list[Span]:
    ordered = sorted(spans, key=lambda s: s.start)
    merged = [ordered[0]]
    for span in ordered[1:]:
        last = merged[-1]
        if span.start <= last.end + 1:
            merged[-1] = Span(last.start, max(last.end, span.end))
        else:
            merged.append(span)
    return merged


def etag(inode: int, size: int, mtime_ns: int) -> str:
    """A strong validator: another upload of the name is another file (inode)."""
    return f'"{inode:x}-{size:x}-{mtime_ns:x}"'


def http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


def _date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def if_range_holds(header: str | None, tag: str, mtime: float) -> bool:
    """Whether ``If-Range`` lets the ranges apply: no header, the same strong
    entity tag, or exactly the file's modification date (to the second)."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(("W/", '"')):
        return header == tag  # weak tags never match (RFC 9110, 13.1.5)
    when = _date(header)
    return when is not None and int(when) == int(mtime)


def not_modified(
    if_none_match: str | None, if_modified_since: str | None, tag: str, mtime: float
) -> bool:
    """Whether a GET or HEAD may be answered 304 (RFC 9110, 13.1.2 and 13.1.3)."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or tag in tags
    if if_modified_since is not None:
        when = _date(if_modified_since)
        return when is not None and int(mtime) <= int(when)
    return False
