"""Catalog entries as offspot-config packages and as a configuration's content
entries, and offspot-config's own apps and files, for the pickers and the
rendering of a configuration."""

from __future__ import annotations

from offspot_config.catalog import app_catalog
from offspot_config.inputs.checksum import Checksum
from offspot_config.packages import AppPackage, FilesPackage, ZimPackage

from apps.catalog.models import Entry


def zim_ident(entry: Entry) -> str:
    """offspot-config's ZIM ident, ``publisher:name:flavour``."""
    return f"{entry.publisher}:{entry.name}:{entry.flavour}"


def zim_package(entry: Entry) -> ZimPackage:
    """The entry as the ``ZimPackage`` a configuration renders. Pure: no query,
    no fetch (the checksum is read by the image creator from ``checksum_url``)."""
    checksum = (
        Checksum(algo="sha-256", value=entry.checksum_url, kind="url")
        if entry.checksum_url
        else None
    )
    return ZimPackage(
        ident=zim_ident(entry),
        name=entry.name,
        flavour=entry.flavour,
        version=entry.date.isoformat() if entry.date else entry.period,
        title=entry.title,
        description=entry.summary,
        languages=entry.language_list or None,
        tags=entry.tag_list,
        icon_url=entry.illustration_url or None,
        download_url=entry.download_url,
        download_size=entry.size,
        download_checksum=checksum,
    )


#: Longest texts a content entry keeps (the API's and the model's limits).
MAX_TITLE, MAX_DESCRIPTION, MAX_TAGS, MAX_TAG, MAX_LANGUAGES = 200, 2000, 50, 100, 20


def content_entry(entry: Entry) -> dict:
    """The entry as a configuration's content entry (``apps.orders.contents``): a
    ZIM with its ident, what Kiwix's catalog says of it, its URL, size and the URL
    of its sha256. The one place a catalog entry becomes a content entry. Pure."""
    content = {
        "kind": "zim",
        "name": entry.name,
        "flavour": entry.flavour,
        "version": entry.date.isoformat() if entry.date else entry.period,
        "title": entry.title[:MAX_TITLE],
        "description": entry.summary[:MAX_DESCRIPTION],
        "languages": entry.language_list[:MAX_LANGUAGES],
        "tags": [tag for tag in entry.tag_list if len(tag) <= MAX_TAG][:MAX_TAGS],
        "url": entry.download_url,
        "size": entry.size,
    }
    if entry.name:
        # Without a name the ident would not be publisher:name:flavour; the file
        # then lands under its URL's name.
        content["ident"] = zim_ident(entry)
    if entry.checksum_url:
        content["checksum_url"] = entry.checksum_url
    return content


def package_entry(ident: str) -> dict:
    """One of offspot-config's app or files packages as a content entry."""
    return {"kind": "package", "ident": ident}


def offspot_packages() -> list[dict]:
    """offspot-config's own app and files packages (its ``catalog.json``), as the
    pickers list them beside the ZIM entries, by title."""
    return sorted(
        (
            {
                "ident": package.ident,
                "kind": package.kind,
                "title": package.title,
                "description": package.description,
                "languages": package.languages or [],
                "tags": package.tags,
                "size": package.size,
                "icon_url": package.icon_url or "",
            }
            for package in app_catalog.values()
            if isinstance(package, AppPackage | FilesPackage)
        ),
        key=lambda item: (item["title"].casefold(), item["ident"]),
    )
