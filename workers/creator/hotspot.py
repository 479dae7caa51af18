"""The hotspot's configuration, as the YAML file the build puts on the boot
partition: checked here, so that a bad value fails before any file is made."""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import yaml

from workers.creator.tools import BuildError

CONFIG_NAME = "hotspot.yaml"
HOTSPOT_KEYS = (
    "name",
    "ssid",
    "language",
    "timezone",
    "admin",
    "wifi_password",
    "branding",
    "content",
)


def render_config(
    hotspot_config: Mapping, contents: Sequence[tuple[Path, PurePosixPath]] = ()
) -> str:
    """The hotspot configuration YAML written onto the boot partition."""
    config = dict(hotspot_config)
    unknown = sorted(set(config) - set(HOTSPOT_KEYS))
    if unknown:
        raise BuildError(
            f"unknown hotspot_config keys {', '.join(unknown)}: "
            f"use only {', '.join(HOTSPOT_KEYS)}"
        )
    name = config.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BuildError("hotspot_config needs a non-empty 'name'")
    ssid = config.get("ssid") or name
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise BuildError(f"SSID {ssid!r} must be 1 to 32 bytes long: shorten it")
    password = config.get("wifi_password") or None
    if password is not None and not (
        isinstance(password, str)
        and 8 <= len(password) <= 63
        and password.isascii()
        and password.isprintable()
    ):
        raise BuildError(
            "the Wi-Fi password must be 8 to 63 printable ASCII characters "
            "(WPA2), or empty for an open network"
        )
    timezone = config.get("timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise BuildError(
            f"unknown timezone {timezone!r}: use an IANA name such as Europe/Paris"
        ) from None
    admin = config.get("admin")
    if admin is not None and not (
        isinstance(admin, Mapping)
        and set(admin) <= {"login", "password"}
        and all(isinstance(admin.get(k), str) and admin[k] for k in admin)
    ):
        raise BuildError("hotspot_config 'admin' must be {login: ..., password: ...}")
    branding = config.get("branding")
    if branding is not None and not isinstance(branding, Mapping):
        raise BuildError("hotspot_config 'branding' must map names to file names")
    content = config.get("content")
    if content is None:
        content = [
            {"path": str(dest), "size": src.stat().st_size} for src, dest in contents
        ]
    document = {
        "name": name,
        "ssid": ssid,
        "language": config.get("language") or "en",
        "timezone": timezone,
        "admin": dict(admin) if admin else None,
        "wifi_password": password,
        "branding": dict(branding) if branding else {},
        "content": list(content),
    }
    # JSON round trip: plain types only, so safe_dump never meets a Path or tuple.
    document = json.loads(json.dumps(document, default=str))
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
