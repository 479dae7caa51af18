"""Refreshing the catalog from its OPDS sources.

A refresh never takes the catalog down: every page is read and parsed before
anything is written, so a source that is down, slow or answers nonsense changes
nothing but its ``CatalogSource`` record (when, and why it failed). Then:
new entries are created in batches, an entry whose content hash is unchanged is
not written, and entries the source no longer lists are marked removed (not
deleted: a configuration may still name them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from apps.catalog.fetch import FetchError, fetch
from apps.catalog.models import CatalogSource, Entry, normalize
from apps.catalog.opds import OpdsError, ParsedEntry, parse_page

MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 1000
BATCH = 500
#: How long a refresh holds its source; a crashed one is taken over after this.
CLAIM = timedelta(hours=1)

#: on_page(source URL, page number, entries read so far, entries announced)
OnPage = Callable[[str, int, int, "int | None"], None]


@dataclass
class Report:
    url: str
    pages: int = 0
    created: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def summary(self) -> str:
        if self.error:
            return f"failed: {self.error}"
        text = (
            f"{self.created} new, {self.changed} changed, {self.removed} removed, "
            f"{self.unchanged} unchanged"
        )
        if self.skipped:
            text += f", {self.skipped} without a download link"
        return text


class CatalogUnusable(Exception):
    """What the source answered cannot replace the catalog we have."""


def entries_url(root: str, start: int, count: int) -> str:
    return f"{root}/catalog/v2/entries?{urlencode({'start': start, 'count': count})}"


def read_source(
    root: str, *, page_size: int, on_page: OnPage | None = None
) -> tuple[dict[str, ParsedEntry], int, int]:
    """Every page of the source: (entries by OPDS id, skipped, pages read)."""
    entries: dict[str, ParsedEntry] = {}
    skipped: set[str] = set()
    url, total, pages = entries_url(root, 0, page_size), None, 0
    while True:
        if pages >= MAX_PAGES:
            raise CatalogUnusable(f"more than {MAX_PAGES} pages; is it a loop?")
        page = parse_page(fetch(url, max_bytes=MAX_PAGE_BYTES), url)
        pages += 1
        total = page.total if page.total is not None else total
        entries.update((entry.opds_id, entry) for entry in page.entries)
        skipped.update(page.skipped)
        if on_page:
            on_page(root, pages, len(entries) + len(skipped), total)
        listed = len(page.entries) + len(page.skipped)
        start = page.start + listed
        if not listed or (total is not None and start >= total):
            break
        if total is None and not page.next_url and listed < page_size:
            break
        url = page.next_url or entries_url(root, start, page_size)
    seen = len(entries) + len(skipped - set(entries))
    if total is not None and seen < total:
        # Entries moved between pages while we read: some may be missing, and
        # a missing entry would be marked removed.
        raise CatalogUnusable(
            f"the catalog changed while it was read ({seen} entries read, {total} "
            "announced); the next refresh tries again"
        )
    return entries, len(skipped - set(entries)), pages


def search_text(entry: ParsedEntry) -> str:
    tags = " ".join(tag for tag in entry.tags.split(";") if not tag.startswith("_"))
    text = " ".join(
        (entry.title, entry.name, entry.summary, entry.category, tags, entry.publisher)
    )
    # Each word once: the field stays short and a search reads less.
    return " ".join(dict.fromkeys(normalize(text).split()))


def entry_fields(entry: ParsedEntry) -> dict:
    return {
        **entry.fields(),
        "search_text": search_text(entry),
        "content_hash": entry.content_hash,
    }


def apply(source: CatalogSource, parsed: dict[str, ParsedEntry], report: Report):
    """Write what changed: new entries in batches, changed ones one by one (few
    on a usual day), removed ones marked in batches."""
    now = timezone.now()
    existing = {
        opds_id: (pk, content_hash, removed_at)
        for opds_id, pk, content_hash, removed_at in Entry.objects.filter(
            source=source
        ).values_list("opds_id", "id", "content_hash", "removed_at")
    }
    new = []
    for opds_id, entry in parsed.items():
        known = existing.get(opds_id)
        if known is None:
            new.append(Entry(source=source, updated_at=now, **entry_fields(entry)))
        elif known[1] != entry.content_hash or known[2] is not None:
            Entry.objects.filter(pk=known[0]).update(
                **entry_fields(entry), removed_at=None, updated_at=now
            )
            report.changed += 1
        else:
            report.unchanged += 1
    Entry.objects.bulk_create(new, batch_size=BATCH)
    report.created = len(new)
    gone = [
        pk
        for opds_id, (pk, _hash, removed_at) in existing.items()
        if opds_id not in parsed and removed_at is None
    ]
    for first in range(0, len(gone), BATCH):
        report.removed += Entry.objects.filter(
            pk__in=gone[first : first + BATCH], removed_at__isnull=True
        ).update(removed_at=now, updated_at=now)


def claim(source: CatalogSource) -> bool:
    """Hold the source for one refresh (a conditional update: one holder)."""
    now = timezone.now()
    return bool(
        CatalogSource.objects.filter(pk=source.pk)
        .filter(Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now))
        .update(refreshing_until=now + CLAIM, last_attempt_at=now)
    )


def record_failure(source: CatalogSource, reason: str) -> None:
    source.refresh_from_db()
    source.last_error = reason
    source.failing_since = source.failing_since or source.last_attempt_at
    source.refreshing_until = None
    source.save(update_fields=["last_error", "failing_since", "refreshing_until"])


def refresh_source(source: CatalogSource, *, on_page: OnPage | None = None) -> Report:
    report = Report(url=source.url)
    if not claim(source):
        report.error = "another refresh of this catalog is running"
        return report
    try:
        parsed, report.skipped, report.pages = read_source(
            source.url, page_size=settings.CATALOG_PAGE_SIZE, on_page=on_page
        )
        if not parsed and Entry.objects.filter(source=source).available().exists():
            raise CatalogUnusable(
                f"it lists no entry with a download link ({report.skipped} "
                "without); the last good catalog is kept"
            )
        apply(source, parsed, report)
    except (FetchError, OpdsError, CatalogUnusable) as exc:
        report.error = str(exc)
        record_failure(source, report.error)
        return report
    except Exception as exc:
        record_failure(source, f"internal error: {type(exc).__name__}: {exc}")
        raise
    source.refresh_from_db()
    source.last_success_at = timezone.now()
    source.failing_since = None
    source.last_error = ""
    source.last_report = report.summary()[:200]
    source.entry_count = Entry.objects.filter(source=source).available().count()
    source.refreshing_until = None
    source.save()
    return report


def sync_sources() -> list[CatalogSource]:
    """The sources of CATALOG_URLS (made when new); the entries of sources no
    longer listed there are marked removed."""
    sources = []
    for url in settings.CATALOG_URLS:
        try:
            source, _created = CatalogSource.objects.get_or_create(url=url)
        except IntegrityError:  # made by another process at the same moment
            source = CatalogSource.objects.get(url=url)
        sources.append(source)
    dropped = CatalogSource.objects.exclude(url__in=settings.CATALOG_URLS)
    for pk in dropped.values_list("id", flat=True):
        now = timezone.now()
        Entry.objects.filter(source_id=pk).available().update(
            removed_at=now, updated_at=now
        )
    dropped.filter(entry_count__gt=0).update(entry_count=0)
    return sources


def refresh_catalog(
    *, urls: list[str] | None = None, on_page: OnPage | None = None
) -> list[Report]:
    """Refresh every source of CATALOG_URLS (or those of ``urls`` among them)."""
    return [
        refresh_source(source, on_page=on_page)
        for source in sync_sources()
        if urls is None or source.url in urls
    ]
