"""The content catalog: Kiwix OPDS sources and the ZIM entries they list."""

import re
import unicodedata

from django.db import models
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _

from apps.catalog.languages import iso639_3
from apps.common.models import UUIDModel

NOT_WORDS = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lower-cased words without accents, one space apart: what searches compare
    (``Wikipédia, chimie`` and ``wikipedia chimie`` are the same)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(NOT_WORDS.sub(" ", bare).split())


class CatalogSource(UUIDModel):
    """One OPDS catalog (Kiwix's public library or any kiwix-serve) and how its
    last refreshes went, for the staff pages."""

    url = models.URLField(_("catalog URL"), max_length=500, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    #: First failed attempt since the last success; None while all is well.
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    #: What the last successful refresh did, e.g. "3 new, 1 changed, …".
    last_report = models.CharField(_("last report"), max_length=200, blank=True)
    entry_count = models.PositiveIntegerField(_("entries"), default=0)
    #: A refresh holds the source until then (a conditional update claims it), so
    #: the cron job and the command never import one source at the same time.
    refreshing_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("url",)
        verbose_name = _("catalog source")

    def __str__(self) -> str:
        return self.url

    def state(self) -> str:
        """For the staff: 'last refreshed 3 hours ago; failing since 20 minutes
        ago; the last attempt failed because: …'."""
        now = timezone.now()
        if self.last_success_at:
            text = _("last refreshed %(ago)s ago") % {
                "ago": timesince(self.last_success_at, now)
            }
        else:
            text = str(_("never refreshed"))
        if self.last_error:
            text += "; " + _(
                "failing since %(since)s ago; the last attempt failed because: %(why)s"
            ) % {
                "since": timesince(self.failing_since or now, now),
                "why": self.last_error,
            }
        return text


class EntryQuerySet(models.QuerySet):
    def available(self):
        """Entries their source still lists."""
        return self.filter(removed_at__isnull=True)

    def search(self, text: str = "", *, language: str = "", category: str = ""):
        """The content picker's search: every word of ``text`` in the title, summary,
        name or tags (accents and case ignored), in ``language`` (ISO 639-3, or
        639-1 mapped to it) and ``category``, by title. Removed entries are never
        found. Portable: plain ``contains`` on one normalized field, no database
        full-text search."""
        found = self.available()
        for word in normalize(text).split()[:8]:
            found = found.filter(search_text__contains=word)
        if language:
            found = found.filter(languages__contains=f",{iso639_3(language)},")
        if category:
            found = found.filter(category=category)
        return found.order_by("title", "id")


class Entry(UUIDModel):
    """A ZIM file of a catalog source, keyed by its OPDS id within that source."""

    source = models.ForeignKey(
        CatalogSource, on_delete=models.CASCADE, related_name="entries"
    )
    opds_id = models.CharField(_("OPDS id"), max_length=64)
    name = models.CharField(_("name"), max_length=200, blank=True)
    title = models.CharField(_("title"), max_length=300)
    summary = models.TextField(_("summary"), blank=True)
    #: ISO 639-3 codes as ",fra,eng," so that one ``contains`` finds any of them.
    languages = models.CharField(_("languages"), max_length=200, blank=True)
    category = models.CharField(_("category"), max_length=100, blank=True)
    tags = models.CharField(_("tags"), max_length=1000, blank=True)
    flavour = models.CharField(_("flavour"), max_length=100, blank=True)
    publisher = models.CharField(_("publisher"), max_length=200, blank=True)
    #: The ZIM's date (OPDS ``updated``) and its period (``YYYY-MM``).
    date = models.DateField(_("date"), null=True, blank=True)
    period = models.CharField(_("period"), max_length=7, blank=True)
    size = models.BigIntegerField(_("size (bytes)"))
    download_url = models.URLField(_("download URL"), max_length=1000)
    #: The acquisition link as published (a ``.meta4`` metalink on Kiwix's library).
    metalink_url = models.URLField(_("metalink URL"), max_length=1000, blank=True)
    #: Where the creator reads the file's sha256 from (``<download URL>.sha256``).
    checksum_url = models.URLField(_("checksum URL"), max_length=1000, blank=True)
    illustration_url = models.URLField(
        _("illustration (48x48)"), max_length=1000, blank=True
    )
    search_text = models.TextField(editable=False)
    #: sha256 of what the import read: an entry whose hash is the same is not
    #: written again.
    content_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField()
    #: Set when the source stopped listing the entry: hidden from searches, kept
    #: for the configurations that name it.
    removed_at = models.DateTimeField(_("removed"), null=True, blank=True)

    objects = EntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("catalog entry")
        verbose_name_plural = _("catalog entries")
        ordering = ("title", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("source", "opds_id"), name="catalog_entry_source_opds_id"
            )
        ]
        indexes = [
            # The picker's pages: available entries in the order they are listed
            # (title, id), whole or by category, read from the index without a sort.
            models.Index(
                fields=("removed_at", "title", "id"), name="catalog_avail_title"
            ),
            models.Index(
                fields=("category", "removed_at", "title", "id"),
                name="catalog_cat_title",
            ),
            # Configurations and orders name ZIMs by name and flavour.
            models.Index(fields=("name", "flavour"), name="catalog_name_flavour"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.name or self.opds_id})"

    @property
    def language_list(self) -> list[str]:
        return [code for code in self.languages.split(",") if code]

    @property
    def tag_list(self) -> list[str]:
        """The tags people read: Kiwix's ``_key:value`` tags left out."""
        return [tag for tag in self.tags.split(";") if tag and not tag.startswith("_")]
