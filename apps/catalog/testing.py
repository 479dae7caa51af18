"""Catalog entries made in bulk for tests and the benchmark, as an import
would write them."""

import random
from datetime import date, timedelta

from django.utils import timezone

from apps.catalog.models import CatalogSource, Entry
from apps.catalog.opds import ParsedEntry
from apps.catalog.services import entry_fields

LANGUAGES = ("eng", "fra", "spa", "ara", "por", "deu", "swa", "hin", "rus", "zho")
CATEGORIES = ("wikipedia", "wiktionary", "ted", "gutenberg", "stack_exchange")
CATEGORIES += ("wikibooks", "vikidia", "phet", "other", "mooc")
WORDS = ("chemistry", "physics", "history", "medicine", "football", "cooking")
WORDS += ("music", "geography", "art", "mathematics", "biology", "astronomy")
WORDS += ("poetry", "languages", "computing", "farming", "health", "water")


def parsed_entry(number: int, **fields) -> ParsedEntry:
    """Entry ``number`` of a synthetic catalog (the same number, the same entry)."""
    rng = random.Random(number)  # noqa: S311 - made-up data, not a secret
    language = LANGUAGES[number % len(LANGUAGES)]
    category = CATEGORIES[(number // 7) % len(CATEGORIES)]
    topic = " ".join(rng.sample(WORDS, 2))
    name = f"{category}_{language}_{topic.replace(' ', '-')}_{number}"
    period = f"20{20 + number % 7}-{1 + number % 12:02d}"
    url = f"https://download.example.org/zim/{category}/{name}_{period}.zim"
    values = {
        "opds_id": f"00000000-0000-4000-8000-{number:012d}",
        "name": name,
        "title": f"{category.title()} {topic} {number}",
        "summary": f"All about {topic}, in {language}; selection {number}.",
        "languages": f",{language},",
        "category": category,
        "tags": f"{category};_category:{category};_pictures:yes",
        "flavour": ("maxi", "nopic", "mini")[number % 3],
        "publisher": "openZIM",
        "date": date(2020, 1, 1) + timedelta(days=number % 2000),
        "period": period,
        "size": 10_000_000 + number * 1000,
        "download_url": url,
        "metalink_url": url + ".meta4",
        "checksum_url": url + ".sha256",
        "illustration_url": f"https://library.example.org/illustration/{number}",
    }
    values.update(fields)
    return ParsedEntry(**values)


def make_entries(source: CatalogSource, count: int, first: int = 0) -> list[Entry]:
    now = timezone.now()
    rows = [
        Entry(source=source, updated_at=now, **entry_fields(parsed_entry(number)))
        for number in range(first, first + count)
    ]
    return Entry.objects.bulk_create(rows, batch_size=500)
