"""The content picker of the configuration form, in parts that htmx swaps.

The chosen content lives in the form itself (the hidden ``contents`` field, the
JSON list the configuration stores); every request of the picker posts the
whole form, so the server keeps no draft. ``results`` answers a search (the
catalog's ZIM files, paged, and offspot-config's apps and files); ``choose``
adds or removes an entry and answers the chosen list with its running total,
offspot-config's minimum image size and the smallest card (``services.preview``)
and, out of band, the results again (their Add/Remove buttons follow).
"""

import json
import re
import uuid

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.catalog.languages import iso639_3
from apps.catalog.models import Entry, normalize
from apps.catalog.packages import content_entry, offspot_packages, package_entry
from apps.orders import contents, services
from apps.orders.models import Configuration
from apps.orders.views.access import customer_required

PAGE_SIZE = 20
LANGUAGE = re.compile(r"^[a-z]{2,3}$")
#: The form's fields a preview renders with (the rest of it is not needed).
DRAFT_FIELDS = ("name", "ssid", "domain", "timezone", "admin_login")
DRAFT_SECRETS = ("admin_password", "wifi_password")


def parse_contents(text: str | None) -> list[dict]:
    """The form's hidden ``contents`` (JSON), as a list of entries; anything
    else is an empty list (the form's own check says what is wrong)."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict)]


def filters(data) -> dict:
    """The picker's search: words, a language (ISO 639-1 or 639-3), a category.
    The language comes as ``picker_language``: the picker lives inside the
    configuration's form, whose own ``language`` is the hotspot's."""
    language = data.get("picker_language", "").strip().lower()
    return {
        "q": data.get("q", "").strip()[:200],
        "language": language if LANGUAGE.match(language) else "",
        "category": data.get("category", "").strip()[:100],
    }


def categories() -> list[str]:
    """The categories of the entries their sources still list (one query)."""
    found = (
        Entry.objects.available()
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )
    return [category for category in found if category]


def package_matches(package: dict, search: dict) -> bool:
    """Whether one of offspot-config's packages answers the search: its words in
    the title or description, in the language (or in many); none has a Kiwix
    category."""
    if search["category"]:
        return False
    if search["language"]:
        wanted = {iso639_3(search["language"]), "mul"}
        if not wanted & set(package["languages"]):
            return False
    text = normalize(f"{package['title']} {package['description']}")
    return all(word in text for word in normalize(search["q"]).split())


def results_context(data, chosen: list[dict]) -> dict:
    """One page of the search's ZIM files (two queries whatever the catalog
    holds: the count and the page), offspot-config's packages on the first
    page, and which of them are chosen (at which position)."""
    search = filters(data)
    found = Entry.objects.search(
        search["q"], language=search["language"], category=search["category"]
    )
    page = Paginator(found, PAGE_SIZE).get_page(data.get("page"))
    positions = {}
    for position, entry in enumerate(chosen, start=1):
        key = entry.get("ident") if contents.kind_of(entry) == "package" else None
        positions.setdefault(key or entry.get("url"), position)
    packages = [
        (package, positions.get(package["ident"]))
        for package in offspot_packages()
        if package_matches(package, search)
    ]
    return {
        "search": search,
        "page": page,
        "rows": [(entry, positions.get(entry.download_url)) for entry in page],
        "packages": packages if page.number == 1 else [],
    }


def branding_of(user, pk) -> dict:
    """The stored branding images of the caller's configuration being edited:
    they count in the image's size."""
    try:
        configuration = Configuration.objects.filter(
            owner=user, pk=uuid.UUID(str(pk))
        ).first()
    except ValueError:
        return {}
    if configuration is None:
        return {}
    try:
        return configuration.branding_images()
    except ValidationError:
        return {}


def chosen_context(chosen: list[dict], draft: dict, branding=None) -> dict:
    """The chosen entries (position, title, kind, size) and the preview."""
    titles = {package["ident"]: package["title"] for package in offspot_packages()}
    rows = []
    for position, entry in enumerate(chosen, start=1):
        package = contents.kind_of(entry) == contents.PACKAGE
        title = titles.get(entry.get("ident")) if package else entry.get("title")
        rows.append(
            {
                "position": position,
                "title": title or entry.get("ident") or entry.get("url"),
                "package": package,
                "languages": entry.get("languages") or [],
                "size": contents.entry_size(entry),
            }
        )
    return {
        "chosen": rows,
        "contents_json": json.dumps(chosen, ensure_ascii=False),
        "preview": services.preview({**draft, "contents": chosen}, branding=branding),
    }


def draft_of(data) -> dict:
    draft = {field: data.get(field, "") for field in DRAFT_FIELDS}
    draft.update({field: data.get(field, "") for field in DRAFT_SECRETS})
    return draft


def add(chosen: list[dict], key: str) -> str:
    """Add the entry ``key`` names (``entry:<id>`` of the catalog or
    ``package:<ident>``); a message when it cannot be."""
    if len(chosen) >= contents.MAX_CONTENT_ENTRIES:
        return _("At most %(n)d content entries.") % {"n": contents.MAX_CONTENT_ENTRIES}
    kind, _sep, value = key.partition(":")
    if kind == "package":
        if value not in {package["ident"] for package in offspot_packages()}:
            return _("This package is not in offspot-config's catalog.")
        entry = package_entry(value)
        if any(item.get("ident") == value for item in chosen):
            return _("This package is chosen already.")
    else:
        try:
            found = Entry.objects.available().filter(pk=uuid.UUID(value)).first()
        except ValueError:
            found = None
        if found is None:
            return _("This entry is not in the catalog any more.")
        entry = content_entry(found)
        if any(item.get("url") == entry["url"] for item in chosen):
            return _("This file is chosen already.")
    chosen.append(entry)
    return ""


@customer_required
@require_POST
def results(request):
    chosen = parse_contents(request.POST.get("contents"))
    return render(
        request,
        "orders/picker/_results.html",
        results_context(request.POST, chosen),
    )


@customer_required
@require_POST
def choose(request):
    """Add (``add``) or remove (``remove``: a position from 1) one entry."""
    chosen = parse_contents(request.POST.get("contents"))
    message = ""
    if request.POST.get("add"):
        message = add(chosen, request.POST["add"])
    elif request.POST.get("remove", "").isdigit():
        position = int(request.POST["remove"])
        if 1 <= position <= len(chosen):
            del chosen[position - 1]
    # The configuration being edited: its stored branding counts in the size.
    branding = branding_of(request.user, request.POST.get("picker_configuration"))
    context = {
        **chosen_context(chosen, draft_of(request.POST), branding),
        **results_context(request.POST, chosen),
        "message": message,
        "oob": True,
    }
    return render(request, "orders/picker/_choose.html", context)
