"""The hotspot's own settings (name, domain, SSID, passwords, time zone) checked as
the hotspot will check them: with offspot's rules (``offspot_runtime.checks``, the
checks offspot-config's runtime applies at first boot), so that what we accept
boots. Each validator raises a ``ValidationError`` saying what to fix; the model's
fields use them and ``check_settings`` runs them again on a frozen copy before it
is rendered (a copy made before a rule existed must not reach a card).
"""

import zoneinfo
from collections.abc import Callable, Mapping

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from offspot_runtime import checks

#: The hotspot's domain when a configuration names none, as Kiwix's hotspots.
DEFAULT_DOMAIN = "kiwix"
#: Characters the admin password may not have: offspot passes it to its reverse
#: proxy in "service:login:password,..." and through "$" variables.
ADMIN_PASSWORD_FORBIDDEN = ",:$"  # noqa: S105 (characters, not a password)


def validate_ssid(value: str) -> None:
    encoded = value.encode()
    if not 1 <= len(encoded) <= 32:
        raise ValidationError(
            _("A hotspot name (SSID) has 1 to 32 bytes; this one has %(n)d.")
            % {"n": len(encoded)}
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValidationError(_("The hotspot name may not contain control characters."))
    if value != value.strip():
        raise ValidationError(_("The hotspot name may not start or end with a space."))
    if not checks.is_valid_ssid(value):
        raise ValidationError(
            _(
                "The hotspot refuses this name (SSID): it may not start with ! # or "
                "; and may not contain + ] / or a double quote."
            )
        )


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones() or not checks.is_valid_timezone(
        value
    ):
        raise ValidationError(
            _("%(value)s is not a time zone; use a name such as Europe/Paris or UTC.")
            % {"value": value}
        )


def validate_wifi_password(value: str) -> None:
    # WPA2-PSK passphrases: 8 to 63 printable ASCII characters.
    if not checks.is_valid_wpa2_passphrase(value):
        raise ValidationError(
            _("A Wi-Fi password has 8 to 63 printable ASCII characters.")
        )


def validate_domain(value: str) -> None:
    if not value or not checks.is_valid_domain(value):
        raise ValidationError(
            _(
                "%(value)s cannot be the hotspot's domain: use letters, digits and "
                "dashes (and dots between words), such as my-school."
            )
            % {"value": value}
        )


def validate_admin_password(value: str) -> None:
    if not 8 <= len(value) <= 64:
        raise ValidationError(_("The hotspot admin password has 8 to 64 characters."))
    if not all(33 <= ord(char) < 127 for char in value) or any(
        char in ADMIN_PASSWORD_FORBIDDEN for char in value
    ):
        raise ValidationError(
            _(
                "Use letters, digits and symbols other than , : and $ in the "
                "hotspot admin password (no spaces or accents): the hotspot "
                "cannot use it otherwise."
            )
        )


#: Field of a frozen configuration -> its check.
SETTINGS: dict[str, Callable[[str], None]] = {
    "ssid": validate_ssid,
    "timezone": validate_timezone,
    "domain": validate_domain,
    "admin_password": validate_admin_password,
}


def check_settings(config: Mapping) -> None:
    """Field errors of a frozen configuration's hotspot settings, all at once."""
    errors: dict[str, list] = {}
    values = {"domain": DEFAULT_DOMAIN, "timezone": "UTC", **config}
    for field, check in SETTINGS.items():
        value = values.get(field)
        try:
            if not isinstance(value, str):
                raise ValidationError(_("This field is required."))
            check(value)
        except ValidationError as exc:
            errors[field] = exc.messages
    if values.get("wifi_password"):
        try:
            validate_wifi_password(values["wifi_password"])
        except ValidationError as exc:
            errors["wifi_password"] = exc.messages
    if errors:
        raise ValidationError(errors)
