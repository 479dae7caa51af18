"""Reading one page of a Kiwix OPDS catalog (``/catalog/v2/entries``).

libkiwix answers Atom XML (OPDS 1.2 with Kiwix's own elements: ``name``,
``flavour``, ``category``, ``tags``, ``language`` in ISO 639-3, comma-separated)
and pages with ``start``/``count`` and ``totalResults``/``startIndex``/
``itemsPerPage``. Pure functions: no database, no network.

The parser is the standard library's: its expat (2.4 and later) refuses
entity-expansion bombs, and pages are size-capped before they are parsed.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from datetime import date, datetime
from urllib.parse import urljoin, urlsplit

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/terms/}"
ACQUISITION = "http://opds-spec.org/acquisition"
THUMBNAIL = "http://opds-spec.org/image/thumbnail"
ZIM_TYPE = "application/x-zim"
#: Kiwix names its files ``<name>_<flavour>_<YYYY-MM>.zim``.
PERIOD_IN_NAME = re.compile(r"_(\d{4}-\d{2})\.zim$")
LANGUAGE = re.compile(r"^[a-z]{2,3}$")
#: An ``&`` that starts no entity or character reference: not XML.
BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")


class OpdsError(ValueError):
    """The page is not an OPDS feed we can read."""


@dataclass(frozen=True)
class ParsedEntry:
    """What the import keeps of one OPDS entry (the Entry model's fields)."""

    opds_id: str
    name: str
    title: str
    summary: str
    languages: str
    category: str
    tags: str
    flavour: str
    publisher: str
    date: date | None
    period: str
    size: int
    download_url: str
    metalink_url: str
    checksum_url: str
    illustration_url: str

    def fields(self) -> dict:
        return asdict(self)

    @property
    def content_hash(self) -> str:
        data = {**self.fields(), "date": self.date.isoformat() if self.date else ""}
        encoded = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class Page:
    entries: list[ParsedEntry]
    #: Ids of the entries without a download link (kiwix-serve lists a ZIM added
    #: without ``url`` so): nothing a card could get, so not offered.
    skipped: list[str]
    total: int | None
    start: int
    next_url: str | None


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path)
    return " ".join((found.text or "").split()) if found is not None else ""


def _integer(text: str, what: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise OpdsError(f"{what} is not a number: {text[:40]!r}") from None


def _date(text: str) -> date | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _category(element: ET.Element, tags: str) -> str:
    category = _text(element, f"{ATOM}category")
    if category:
        return category
    for tag in tags.split(";"):
        if tag.startswith("_category:"):
            return tag.removeprefix("_category:")
    return ""


def _languages(text: str) -> str:
    codes = [code.strip().lower() for code in text.split(",")]
    kept = [code for code in codes if LANGUAGE.match(code)]
    return f",{','.join(dict.fromkeys(kept))}," if kept else ""


def _links(element: ET.Element, base_url: str) -> tuple[dict, str]:
    acquisition, illustration = {}, ""
    for link in element.findall(f"{ATOM}link"):
        rel, kind = link.get("rel", ""), link.get("type", "")
        href = link.get("href", "")
        if not href:
            continue
        if rel.startswith(ACQUISITION) and kind.split(";")[0] == ZIM_TYPE:
            acquisition = {
                "href": urljoin(base_url, href),
                "length": link.get("length"),
            }
        elif rel == THUMBNAIL and not illustration:
            illustration = urljoin(base_url, href)
    return acquisition, illustration


def entry_id(element: ET.Element) -> str:
    raw_id = _text(element, f"{ATOM}id")
    opds_id = raw_id.removeprefix("urn:uuid:")
    if not opds_id or len(opds_id) > 64:
        raise OpdsError(f"an entry has no usable id ({raw_id[:80]!r})")
    return opds_id


def parse_entry(element: ET.Element, base_url: str) -> ParsedEntry | None:
    """The entry, or None when it has no download link."""
    opds_id = entry_id(element)
    acquisition, illustration = _links(element, base_url)
    if not acquisition:
        return None
    size = _integer(acquisition["length"] or "", f"entry {opds_id}: length")
    if size is None or size <= 0:
        return None
    metalink = acquisition["href"]
    download_url = metalink.removesuffix(".meta4")
    if urlsplit(download_url).scheme not in {"http", "https"}:
        return None
    updated = _date(_text(element, f"{ATOM}updated") or _text(element, f"{DC}issued"))
    period_match = PERIOD_IN_NAME.search(urlsplit(download_url).path)
    if period_match:
        period = period_match.group(1)
    else:
        period = updated.strftime("%Y-%m") if updated else ""
    tags = _text(element, f"{ATOM}tags")
    return ParsedEntry(
        opds_id=opds_id,
        name=_text(element, f"{ATOM}name")[:200],
        title=(_text(element, f"{ATOM}title") or opds_id)[:300],
        summary=_text(element, f"{ATOM}summary")[:2000],
        languages=_languages(_text(element, f"{ATOM}language"))[:200],
        category=_category(element, tags)[:100],
        tags=tags[:1000],
        flavour=_text(element, f"{ATOM}flavour")[:100],
        publisher=_text(element, f"{ATOM}publisher/{ATOM}name")[:200],
        date=updated,
        period=period,
        size=size,
        download_url=download_url,
        metalink_url=metalink if metalink != download_url else "",
        # Kiwix's mirrors publish <file>.sha256 beside every file; the creator
        # reads the digest from there (workers/creator: checksum_url).
        checksum_url=f"{download_url}.sha256",
        illustration_url=illustration,
    )


def parse_page(body: bytes, base_url: str) -> Page:
    """One page of ``/catalog/v2/entries``; relative links are resolved against
    ``base_url`` (the address the page was read from)."""
    # kiwix-serve 3.3 (libkiwix 11, Debian 12) writes the query of its own
    # links unescaped (href="...?count=1&start=1"): repair before parsing.
    body = BARE_AMPERSAND.sub(b"&amp;", body)
    try:
        root = ET.fromstring(body)  # noqa: S314 - see the import
    except ET.ParseError as exc:
        raise OpdsError(f"not XML: {exc}") from None
    if root.tag != f"{ATOM}feed":
        raise OpdsError(f"not an Atom feed (the root element is {root.tag[:80]!r})")
    entries, skipped = [], []
    for element in root.findall(f"{ATOM}entry"):
        entry = parse_entry(element, base_url)
        if entry is None:
            skipped.append(entry_id(element))
        else:
            entries.append(entry)
    next_url = None
    for link in root.findall(f"{ATOM}link"):
        if link.get("rel") == "next" and link.get("href"):
            next_url = urljoin(base_url, link.get("href"))
    total = _integer(_text(root, f"{ATOM}totalResults"), "totalResults")
    start = _integer(_text(root, f"{ATOM}startIndex"), "startIndex") or 0
    return Page(entries, skipped, total, start, next_url)
