"""Catalog search benchmark: the content picker's query over a 10,000-entry catalog.

    .venv/bin/python bench/catalog_bench.py [--entries 10000] [--rounds 300]
        [--backends sqlite postgres]

For each backend a fresh database (a SQLite file in a temporary folder, or the
PostgreSQL database ``imager_catalog_bench`` on 127.0.0.1:5432, user postgres) is
migrated and loaded with ``--entries`` synthetic entries (apps/catalog/testing.py:
ten languages, ten categories, words from a small vocabulary, 1% removed). Then,
in one process, each kind of query runs ``--rounds`` times, as one API page
costs: the count and the first 50 rows (``values()``: no serializer, no HTTP).

- ``search ...`` rows: ``Entry.objects.search(...)`` with words, a language, a
  category, or all three (words drawn at random from the vocabulary, parts of
  words too);
- ``bare ...`` rows, the baseline: the same page with no condition at all
  (``Entry.objects.order_by("title", "id")``) and one entry by primary key.

Latency is wall time per page in the benchmark's process (database round trips
included), in milliseconds: median, p95, max.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backends import p95, run_backend  # noqa: E402

PAGE = 50
PG_DATABASE = "imager_catalog_bench"


def measure(entries: int, rounds: int, seed: int) -> list[tuple[str, list[float]]]:
    """Runs in a child process whose DATABASE_URL is the backend's."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apps.catalog.models import CatalogSource, Entry
    from apps.catalog.testing import CATEGORIES, LANGUAGES, WORDS, make_entries

    call_command("migrate", verbosity=0)
    source = CatalogSource.objects.create(url="https://library.kiwix.org")
    started = time.perf_counter()
    made = make_entries(source, entries)
    # 1% removed, as after a few refreshes: searches must skip them.
    removed = [entry.pk for entry in made[::100]]
    Entry.objects.filter(pk__in=removed).update(removed_at=timezone.now())
    if connection.vendor == "postgresql":
        # What autovacuum does a little after a bulk load: statistics for the
        # planner and the visibility map for index-only scans.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE catalog_entry")
    print(f"  loaded {entries} entries in {time.perf_counter() - started:.1f} s")

    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not a secret

    def word() -> str:
        chosen = rng.choice(WORDS)
        # A third of the searches type the start of a word only.
        return chosen[: rng.randint(3, len(chosen))] if rng.random() < 0.33 else chosen

    def page(queryset) -> None:
        queryset.count()
        list(queryset.values("id", "title", "languages", "size")[:PAGE])

    kinds = {
        "search one word": lambda: page(Entry.objects.search(word())),
        "search two words": lambda: page(Entry.objects.search(f"{word()} {word()}")),
        "search word + language": lambda: page(
            Entry.objects.search(word(), language=rng.choice(LANGUAGES))
        ),
        "search language only": lambda: page(
            Entry.objects.search(language=rng.choice(LANGUAGES))
        ),
        "search category only": lambda: page(
            Entry.objects.search(category=rng.choice(CATEGORIES))
        ),
        "search word + language + category": lambda: page(
            Entry.objects.search(
                word(), language=rng.choice(LANGUAGES), category=rng.choice(CATEGORIES)
            )
        ),
        "search nothing (all available)": lambda: page(Entry.objects.search()),
        "bare page (no condition)": lambda: page(Entry.objects.order_by("title", "id")),
        "bare get by primary key": lambda: Entry.objects.get(pk=rng.choice(made).pk),
    }
    results = []
    for name, run in kinds.items():
        for _ in range(10):  # warm the caches and the connection
            run()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
        results.append((name, times))
    return results


def child(backend: str, entries: int, rounds: int, seed: int) -> None:
    results = measure(entries, rounds, seed)
    for name, times in results:
        slow = p95(times)
        print(
            f"RESULT|{backend}|{name}|{statistics.median(times):.2f}|{slow:.2f}"
            f"|{times[-1]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.entries, args.rounds, args.seed)
        return
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    rows = []
    for backend in args.backends:
        rows += run_backend(
            __file__,
            backend,
            [
                "--entries",
                str(args.entries),
                "--rounds",
                str(args.rounds),
                "--seed",
                str(args.seed),
            ],
            PG_DATABASE,
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{stamp}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{args.entries} entries, {args.rounds} pages per row (count + {PAGE} rows), "
        f"load average before: {load}\n"
    )
    print("| backend | query | median ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    for backend, name, median, high, longest in rows:
        print(f"| {backend} | {name} | {median} | {high} | {longest} |")


if __name__ == "__main__":
    main()
