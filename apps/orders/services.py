"""Configurations: the rules the API and the client pages share (DESIGN 2).

Serializers, forms and views call these keyword-only functions; nothing here sees
a request. Orders have theirs in ``apps.orders.pipeline``.
"""

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.utils.translation import gettext as _

from apps.orders import cards, contents, recipes
from apps.orders.hotspot import DEFAULT_DOMAIN
from apps.orders.models import Configuration

#: What an export file says it is, and the version of its layout.
EXPORT_FORMAT = "kiwix-hotspot-configuration"
EXPORT_VERSION = 1
#: The configuration's fields an export carries. Never the passwords: an export
#: is a file people mail around; the import asks for them again.
EXPORTED_FIELDS = (
    "name",
    "ssid",
    "domain",
    "language",
    "timezone",
    "admin_login",
    "contents",
)
BRANDING_FIELDS = {"logo": "branding_logo", "favicon": "branding_favicon"}
BRANDING_SUFFIXES = {".png", ".jpg", ".jpeg"}
#: Hotspot settings a draft is previewed with while its own are still wrong or
#: missing: they change the minimum image size by a few bytes at most.
PLACEHOLDERS = {
    "ssid": "Kiwix Hotspot",
    "domain": DEFAULT_DOMAIN,
    "timezone": "UTC",
    "admin_password": "placeholder-password",
    "wifi_password": "",
}


def validate_configuration(
    configuration: Configuration, *, exclude: Iterable[str] = ()
) -> int:
    """Check ``configuration`` as it would be stored: the model's rules (offspot's
    for the hotspot's settings, the content rules, the branding images), a name
    its owner has not used yet, and offspot-config's rendering. Returns the
    minimum image size; ValidationError with field messages otherwise."""
    configuration.full_clean(exclude=["owner", *exclude])
    # Leaving the owner out of full_clean skips the (owner, name) constraint:
    # checked here, or a second configuration of the same name is an
    # IntegrityError (a 500).
    same_name = Configuration.objects.filter(
        owner_id=configuration.owner_id, name=configuration.name
    ).exclude(pk=configuration.pk)
    if same_name.exists():
        raise ValidationError(
            {"name": _("You already have a configuration with this name.")}
        )
    return configuration.render().min_size


def copy_name(name: str, taken: Iterable[str]) -> str:
    """``name`` followed by "(copy)", "(copy 2)"…: the first one not ``taken``,
    within the name's 80 characters."""
    taken = set(taken)
    number = 1
    while True:
        suffix = _("(copy)") if number == 1 else _("(copy %(n)d)") % {"n": number}
        base = name[: 80 - len(suffix) - 1].rstrip()
        candidate = f"{base} {suffix}"
        if candidate not in taken:
            return candidate
        number += 1


def duplicate_configuration(*, configuration: Configuration, owner) -> Configuration:
    """A copy of ``configuration`` for ``owner``, named "… (copy)", with copies of
    its branding images (editing one never changes the other)."""
    taken = Configuration.objects.filter(
        owner=owner, name__startswith=configuration.name[:60]
    ).values_list("name", flat=True)
    copy = Configuration(
        owner=owner,
        name=copy_name(configuration.name, taken),
        **{
            field: getattr(configuration, field)
            for field in (
                "ssid",
                "domain",
                "language",
                "timezone",
                "admin_login",
                "admin_password",
                "wifi_password",
                "image_bytes",
            )
        },
        contents=list(configuration.contents),
    )
    for which, data in configuration.branding_images().items():
        stored = getattr(configuration, BRANDING_FIELDS[which])
        if data:
            name = PurePosixPath(stored.name).name
            setattr(copy, BRANDING_FIELDS[which], ContentFile(data, name=name))
    copy.save(force_insert=True)
    return copy


def export_configuration(configuration: Configuration) -> dict:
    """The configuration as a JSON document: its fields, content and branding
    images (base64), without its passwords (``has_wifi_password`` says whether
    the hotspot had a Wi-Fi password)."""
    branding = {}
    for which, data in configuration.branding_images().items():
        stored = getattr(configuration, BRANDING_FIELDS[which])
        branding[which] = (
            {
                "name": PurePosixPath(stored.name).name,
                "base64": base64.b64encode(data).decode(),
            }
            if data
            else None
        )
    fields = {field: getattr(configuration, field) for field in EXPORTED_FIELDS}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "configuration": {
            **fields,
            "has_wifi_password": bool(configuration.wifi_password),
            "branding": branding,
        },
    }


def read_export(text: bytes | str) -> dict:
    """The ``configuration`` of an export file, checked for its shape; a
    ValidationError (key ``file``) says what is wrong with the file."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(
            {"file": _("This file is not JSON; choose a file exported from here.")}
        ) from None
    if (
        not isinstance(document, dict)
        or document.get("format") != EXPORT_FORMAT
        or not isinstance(document.get("configuration"), dict)
    ):
        raise ValidationError(
            {"file": _("This JSON file is not an exported hotspot configuration.")}
        )
    if document.get("version") != EXPORT_VERSION:
        raise ValidationError(
            {
                "file": _(
                    "This export has version %(found)r; this site reads version "
                    "%(version)d."
                )
                % {"found": document.get("version"), "version": EXPORT_VERSION}
            }
        )
    data = document["configuration"]
    known = {*EXPORTED_FIELDS, "has_wifi_password", "branding"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValidationError(
            {"file": _("Unknown keys: %(keys)s.") % {"keys": ", ".join(unknown)}}
        )
    for field in EXPORTED_FIELDS:
        expected = list if field == "contents" else str
        if field in data and not isinstance(data[field], expected):
            raise ValidationError(
                {"file": _("%(key)s has the wrong type.") % {"key": field}}
            )
    return data


def branding_file(which: str, image: Any) -> ContentFile | None:
    """An exported branding image ({"name", "base64"}) as a file to store."""
    if image is None:
        return None
    try:
        data = base64.b64decode(image["base64"], validate=True)
        suffix = PurePosixPath(str(image.get("name", ""))).suffix.lower()
    except (TypeError, KeyError, binascii.Error):
        raise ValidationError(
            {BRANDING_FIELDS[which]: _("The image in the file cannot be read.")}
        ) from None
    return ContentFile(
        data, name=which + (suffix if suffix in BRANDING_SUFFIXES else ".png")
    )


def import_configuration(
    *,
    text: bytes | str,
    owner,
    admin_password: str,
    wifi_password: str = "",
    name: str = "",
) -> Configuration:
    """A new configuration of ``owner`` from an export file, with the passwords
    the export leaves out (and another ``name`` if given), checked by the same
    rules as any other; ValidationError with the configuration's field names
    (``file`` for the file itself)."""
    data = read_export(text)
    configuration = Configuration(
        owner=owner,
        **{field: data[field] for field in EXPORTED_FIELDS if field in data},
        admin_password=admin_password,
        wifi_password=wifi_password,
    )
    if name:
        configuration.name = name
    branding = data.get("branding") or {}
    if not isinstance(branding, dict):
        raise ValidationError({"file": _("branding has the wrong type.")})
    for which, field in BRANDING_FIELDS.items():
        image = branding_file(which, branding.get(which))
        if image is not None:
            setattr(configuration, field, image)
    configuration.image_bytes = validate_configuration(configuration)
    configuration.save(force_insert=True)
    return configuration


class Preview(NamedTuple):
    """What a draft's content needs, as the picker shows it while you pick."""

    total_size: int
    image_bytes: int | None
    smallest_card_gb: int | None
    problems: list[str]


def preview(
    draft: Mapping[str, Any], *, branding: Mapping[str, bytes | None] | None = None
) -> Preview:
    """The running total of a draft's content, offspot-config's minimum image size
    for it (rendered now: no network) and the smallest card it fits on. Hotspot
    settings still wrong or missing in the draft are replaced by placeholders;
    what is wrong with the content itself is in ``problems``."""
    entries = draft.get("contents") or []
    if not isinstance(entries, list):
        entries = []
    total = contents.total_size(entry for entry in entries if isinstance(entry, dict))
    if not entries:
        return Preview(total, None, None, [])
    config, images = dict(draft), dict(branding or {})
    for _attempt in range(2):
        try:
            size = recipes.render(config, branding=images).min_size
        except ValidationError as exc:
            errors = exc.message_dict
            if "contents" in errors:
                return Preview(total, None, None, errors["contents"])
            config.update({key: PLACEHOLDERS[key] for key in PLACEHOLDERS})
            images = {}
            continue
        return Preview(total, size, cards.smallest_card_gb(size), [])
    return Preview(total, None, None, [])
