"""A configuration rendered into image-creator's YAML (the *recipe*) by Kiwix's own
library, offspot-config, the way Kiwix builds its hotspots: ``ConfigBuilder`` with
the dashboard (and an Admin link), the admin UI, the captive portal, the reverse
proxy, the ZIM files, the catalog's app and files packages, the hardware clock,
the branding as base64 files, ``write_config`` and ``output.size: auto``.

``render`` is plain: it takes a frozen configuration (``Configuration.snapshot()``)
and the branding images' bytes, reads nothing but the settings, and never touches
the network: catalog packages lose their ``icon_url`` (the dashboard would fetch
each icon while rendering) and the base image is named by URL (a bare version
makes offspot-config fetch its checksum when the YAML is read back). What
offspot-config refuses becomes a ``ValidationError`` naming the field to fix.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from offspot_config.builder import BRANDING_PATH, ConfigBuilder
from offspot_config.catalog import app_catalog
from offspot_config.inputs.base import BaseConfig
from offspot_config.inputs.checksum import Checksum
from offspot_config.inputs.mainconfig import MainConfig
from offspot_config.packages import AppPackage, ZimPackage
from offspot_config.utils.dashboard import Link
from offspot_config.utils.misc import b64_encode
from offspot_config.utils.sizes import get_min_image_size
from typeguard import TypeCheckError

from apps.orders import contents
from apps.orders.hotspot import DEFAULT_DOMAIN, check_settings

#: Errors offspot-config's inputs raise on values they refuse (attrs, typeguard).
REFUSALS = (TypeError, ValueError, LookupError, TypeCheckError)
#: Kiwix's hotspots: the welcome page's domain, and the Wi-Fi profile.
WELCOME_DOMAIN = "goto.kiwix"
WIFI_PROFILE = "perf"
#: Branding image -> its file name in offspot's branding folder, by format.
BRANDING = {
    "logo": ("horizontal-logo-light.png", "horizontal-logo.svg"),
    "favicon": ("square-logo-light.png", "square-logo.svg"),
}


class Recipe(NamedTuple):
    """image-creator's YAML, and the smallest image it fits in (bytes)."""

    text: str
    min_size: int


@attrs.define(kw_only=True)
class NamedZimPackage(ZimPackage):
    """A ZIM file landing under the name it is given (its URL's file name,
    percent-decoded) instead of offspot's ``publisher_name_flavour.zim``."""

    file_name: str

    @property
    def filename(self) -> str:
        return self.file_name


def render(
    config: Mapping[str, Any],
    *,
    branding: Mapping[str, bytes | None] | None = None,
    base_source: str | None = None,
    base_rootfs_size: int | None = None,
    tld: str | None = None,
    kiwix_mirror: str | None = None,
    output_size: int | None = None,
) -> Recipe:
    """``config`` (a configuration's snapshot: name, domain, ssid, timezone,
    admin_login, admin_password, wifi_password, contents) and its ``branding``
    ({"logo": bytes, "favicon": bytes}, PNG, JPEG or SVG) as image-creator's
    YAML and the smallest image it fits in. The base image, top-level domain and
    ZIM mirror default to the ``HOTSPOT_*`` settings; ``output_size`` fixes the
    image's size instead of ``auto``. ValidationError with field errors when
    offspot-config refuses a value."""
    errors: dict[str, list] = {}
    try:
        check_settings(config)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        contents.validate_contents(config.get("contents"))
    except ValidationError as exc:
        errors["contents"] = exc.messages
    images = _branding_files(branding or {}, errors)
    if errors:
        raise ValidationError(errors)

    builder = ConfigBuilder(
        base=BaseConfig(
            source=base_source or settings.HOTSPOT_BASE_SOURCE,
            rootfs_size=base_rootfs_size or settings.HOTSPOT_BASE_ROOTFS_SIZE,
        ),
        name=config.get("name") or config["ssid"],
        tld=tld or settings.HOTSPOT_TLD,
        domain=config.get("domain") or DEFAULT_DOMAIN,
        welcome_domain=WELCOME_DOMAIN,
        wifi_profile=WIFI_PROFILE,
        ssid=config["ssid"],
        passphrase=config.get("wifi_password") or None,
        environ={
            "ADMIN_USERNAME": config.get("admin_login") or "admin",
            "ADMIN_PASSWORD": config["admin_password"],
        },
        write_config=True,
        kiwix_zim_mirror=(
            settings.HOTSPOT_KIWIX_MIRROR if kiwix_mirror is None else kiwix_mirror
        )
        or None,
    )
    # ConfigBuilder takes a time zone but leaves offspot's at UTC.
    builder.update_offspot_config(timezone=config.get("timezone") or "UTC")
    for target, data in images:
        builder.add_file(
            url_or_content=b64_encode(data),
            to=str(target),
            via="base64",
            size=len(data),
            is_url=False,
        )
    builder.add_dashboard(
        allow_zim_downloads=True,
        links=[Link(label="Admin", url="//admin.${FQDN}", icon="lock")],
    )
    builder.add_adminui()
    builder.add_captive_portal()
    builder.add_reverseproxy()
    _add_contents(builder, config["contents"])
    builder.add_hwclock()
    if output_size is not None:
        builder.set_output_size(output_size)
    # A set, dumped in hash order: sorted, the same configuration renders the
    # same text in every process.
    builder.config["oci_images"] = sorted(
        builder.config["oci_images"], key=lambda image: image.source
    )
    text = builder.render()
    return Recipe(text, min_size(text))


def min_size(text: str) -> int:
    """The smallest image ``text`` fits in, as image-creator computes it for
    ``auto``: offspot-config's rootfs + content + margin over the YAML read back
    (with the copy of itself ``write_config`` adds)."""
    try:
        return get_min_image_size(MainConfig.read_from(text))
    except (*REFUSALS, OSError) as exc:
        raise ValidationError(
            {"contents": [_("offspot-config refuses this hotspot: %(e)s") % {"e": exc}]}
        ) from None


def _branding_files(branding: Mapping[str, bytes | None], errors: dict) -> list:
    """(path on the hotspot, bytes) of each branding image, by its format."""
    files = []
    for which, (raster, vector) in BRANDING.items():
        data = branding.get(which)
        if not data:
            continue
        head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
        svg = head.startswith(b"<svg") or (
            head.startswith(b"<?xml") and b"<svg" in head
        )
        if data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
            files.append((BRANDING_PATH / raster, data))
        elif svg:
            files.append((BRANDING_PATH / vector, data))
        else:
            errors[f"branding_{which}"] = [
                _("This image is not a PNG, JPEG or SVG file; upload one of those.")
            ]
    return files


def _add_contents(builder: ConfigBuilder, entries: list[dict]) -> None:
    """Each entry as its offspot-config package, or a field error naming it."""
    landing: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        where = _("Content entry %(i)d") % {"i": index}
        try:
            if contents.kind_of(entry) == contents.PACKAGE:
                # No icon: the dashboard would download it while rendering.
                package = attrs.evolve(app_catalog[entry["ident"]], icon_url=None)
                if isinstance(package, AppPackage):
                    builder.add_app(package)
                else:
                    builder.add_files_package(package)
                continue
            zim = zim_package(entry)
            first = landing.setdefault(zim.filename, index)
            if first != index:
                message = contents.listed_twice(("file", zim.filename), first)
                raise ValidationError({"contents": [f"{where}: {message}"]})
            builder.add_zim(zim)
        except REFUSALS as exc:
            raise ValidationError(
                {
                    "contents": [
                        f"{where}: "
                        + _("offspot-config refuses it: %(e)s") % {"e": exc}
                    ]
                }
            ) from None


def zim_package(entry: dict) -> ZimPackage:
    """The offspot-config package of a ZIM entry (``apps.orders.contents``)."""
    ident = entry.get("ident")
    fields = {
        "title": entry["title"],
        "description": entry.get("description", ""),
        "languages": entry.get("languages") or None,
        "tags": list(entry.get("tags") or []),
        "version": entry.get("version", ""),
        "download_url": entry["url"],
        "download_size": entry["size"],
        "download_checksum": checksum(entry),
        "icon_url": None,
    }
    if ident is not None:
        _publisher, name, flavour = ident.split(":", 2)
        return ZimPackage(
            ident=ident,
            name=entry.get("name") or name,
            flavour=entry.get("flavour", flavour),
            **fields,
        )
    file_name = contents.url_file_name(entry["url"])
    stem = file_name.removesuffix(".zim")
    return NamedZimPackage(
        ident=stem,
        name=entry.get("name") or stem,
        flavour=entry.get("flavour", ""),
        file_name=file_name,
        **fields,
    )


def checksum(entry: dict) -> Checksum | None:
    """How image-creator checks the entry's file: its digest, or the URL of one."""
    if entry.get("sha256"):
        return Checksum(algo="sha-256", value=entry["sha256"])
    if entry.get("md5"):
        return Checksum(algo="md5", value=entry["md5"])
    if entry.get("checksum_url"):
        algo = contents.checksum_algorithm(entry["checksum_url"])
        return Checksum(algo=algo, value=entry["checksum_url"], kind="url")
    return None
