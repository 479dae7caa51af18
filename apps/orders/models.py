import re
import zoneinfo
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.conf.locale import LANG_INFO
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinLengthValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models
from django.utils.timezone import now
from django.utils.translation import gettext_lazy as _
from PIL import Image

from apps.accounts.models import Role
from apps.common.models import UUIDModel
from apps.orders.cards import CARD_SIZES

MAX_CONTENT_ENTRIES = 500
MAX_BRANDING_BYTES = 2 * 1024 * 1024
MAX_BRANDING_PIXELS = 4096
#: Snapshot keys that hold the hotspot's passwords.
SECRET_CONFIG_KEYS = frozenset({"admin_password", "wifi_password"})
BRANDING_FORMATS = {"PNG", "JPEG"}
HEX = re.compile(r"^[0-9a-f]+$")


@cache
def language_choices() -> list[tuple[str, str]]:
    """Two- or three-letter languages Django knows, by English name."""
    codes = sorted(
        (code, info["name"])
        for code, info in LANG_INFO.items()
        if "-" not in code and "name" in info and len(code) <= 3
    )
    return codes


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("%(value)s is not a time zone; use a name such as Europe/Paris or UTC."),
            params={"value": value},
        )


def validate_ssid(value: str) -> None:
    encoded = value.encode()
    if not 1 <= len(encoded) <= 32:
        raise ValidationError(
            _("A hotspot name (SSID) has 1 to 32 bytes; this one has %(n)d."),
            params={"n": len(encoded)},
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValidationError(_("The hotspot name may not contain control characters."))
    if value != value.strip():
        raise ValidationError(_("The hotspot name may not start or end with a space."))


def validate_wifi_password(value: str) -> None:
    # WPA2-PSK passphrases: 8 to 63 printable ASCII characters.
    if not 8 <= len(value) <= 63 or not all(32 <= ord(c) < 127 for c in value):
        raise ValidationError(
            _("A Wi-Fi password has 8 to 63 printable ASCII characters.")
        )


def validate_branding_file(file) -> None:
    """A real PNG or JPEG image of sane dimensions, as Pillow reads it: the name's
    extension proves nothing, and an SVG may carry scripts."""
    if file.size > MAX_BRANDING_BYTES:
        raise ValidationError(
            _("Branding images may have 2 MiB at most; this one has %(size)d bytes."),
            params={"size": file.size},
        )
    try:
        file.seek(0)
        with Image.open(file) as image:
            kind, (width, height) = image.format, image.size
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        kind = width = height = None
    finally:
        file.seek(0)
    if kind not in BRANDING_FORMATS:
        raise ValidationError(
            _("Branding images must be PNG or JPEG images; this file is not one.")
        )
    if not (1 <= width <= MAX_BRANDING_PIXELS and 1 <= height <= MAX_BRANDING_PIXELS):
        raise ValidationError(
            _("Branding images may be %(n)d pixels wide and high at most.")
            % {"n": MAX_BRANDING_PIXELS}
        )


def validate_contents(value) -> None:
    """The chosen content: a list of {title, url, size, sha256|md5|checksum_url}."""
    if not isinstance(value, list) or not value:
        raise ValidationError(_("Choose at least one content entry."))
    if len(value) > MAX_CONTENT_ENTRIES:
        raise ValidationError(
            _("At most %(n)d content entries."), params={"n": MAX_CONTENT_ENTRIES}
        )
    url_check = URLValidator(schemes=["http", "https"])
    seen = set()
    for index, entry in enumerate(value, start=1):
        where = _("Content entry %(i)d") % {"i": index}
        if not isinstance(entry, dict):
            raise ValidationError(f"{where}: " + str(_("must be an object.")))
        allowed = {"title", "url", "size", "sha256", "md5", "checksum_url"}
        unknown = set(entry) - allowed
        if unknown:
            raise ValidationError(
                f"{where}: "
                + str(_("unknown keys %(keys)s."))
                % {"keys": ", ".join(sorted(unknown))}
            )
        title = entry.get("title")
        if not isinstance(title, str) or not 1 <= len(title) <= 200:
            raise ValidationError(f"{where}: " + str(_("title has 1 to 200 chars.")))
        try:
            url_check(entry.get("url") or "")
        except ValidationError:
            raise ValidationError(
                f"{where}: " + str(_("url must be an http or https URL."))
            ) from None
        if entry["url"] in seen:
            raise ValidationError(f"{where}: " + str(_("this URL is listed twice.")))
        seen.add(entry["url"])
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValidationError(
                f"{where}: " + str(_("size must be a positive number of bytes."))
            )
        for key, length in (("sha256", 64), ("md5", 32)):
            digest = entry.get(key)
            if digest is not None and (
                not isinstance(digest, str)
                or len(digest) != length
                or not HEX.match(digest)
            ):
                raise ValidationError(
                    f"{where}: "
                    + str(_("%(key)s must be %(n)d lowercase hex digits."))
                    % {"key": key, "n": length}
                )
        if entry.get("checksum_url") is not None:
            try:
                url_check(entry["checksum_url"])
            except ValidationError:
                raise ValidationError(
                    f"{where}: " + str(_("checksum_url must be an http(s) URL."))
                ) from None


class OwnedQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Clients see their own rows; managers and admins see everyone's."""
        if user.role in Role.staff():
            return self
        return self.filter(owner=user)


class Configuration(UUIDModel):
    """What a client wants on their hotspot; orders take a frozen copy of it."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="configurations",
    )
    name = models.CharField(
        _("name"),
        max_length=80,
        validators=[
            MinLengthValidator(3),
            RegexValidator(
                r"^[\w][\w .-]*$",
                _("Use letters, digits, spaces, dots, dashes and underscores."),
            ),
        ],
    )
    ssid = models.CharField(
        _("hotspot name (SSID)"), max_length=32, validators=[validate_ssid]
    )
    language = models.CharField(_("language"), max_length=3, default="en")
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone]
    )
    admin_login = models.CharField(
        _("hotspot admin login"),
        max_length=32,
        default="admin",
        validators=[
            RegexValidator(
                r"^[a-z_][a-z0-9_-]{2,31}$",
                _("3 to 32 lowercase letters, digits, - or _, not starting with one."),
            )
        ],
    )
    # Kept as given: it must be written onto the card. The API never returns it.
    admin_password = models.CharField(
        _("hotspot admin password"),
        max_length=64,
        validators=[MinLengthValidator(8)],
    )
    wifi_password = models.CharField(
        _("Wi-Fi password"),
        max_length=63,
        blank=True,
        validators=[validate_wifi_password],
        help_text=_("Leave empty for an open hotspot."),
    )
    branding_logo = models.FileField(
        _("logo"),
        upload_to="branding/",
        blank=True,
        validators=[validate_branding_file],
    )
    branding_favicon = models.FileField(
        _("favicon"),
        upload_to="branding/",
        blank=True,
        validators=[validate_branding_file],
    )
    contents = models.JSONField(
        _("content"), default=list, validators=[validate_contents]
    )
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("configuration")
        verbose_name_plural = _("configurations")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="unique_configuration_name_per_owner"
            )
        ]

    def __str__(self):
        return self.name

    def clean(self):
        if self.language not in dict(language_choices()):
            raise ValidationError(
                {"language": _("Unknown language code; use an ISO 639-1 code.")}
            )

    @property
    def total_size(self) -> int:
        return sum(entry["size"] for entry in self.contents or [])

    def snapshot(self) -> dict:
        """The frozen copy an order keeps of this configuration."""
        return {
            "id": str(self.pk),
            "name": self.name,
            "ssid": self.ssid,
            "language": self.language,
            "timezone": self.timezone,
            "admin_login": self.admin_login,
            "admin_password": self.admin_password,
            "wifi_password": self.wifi_password,
            "branding": {
                "logo": self.branding_logo.name or None,
                "favicon": self.branding_favicon.name or None,
            },
            "contents": list(self.contents),
        }


class OrderStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    BUILDING = "building", _("building")
    BUILT = "built", _("built")
    WRITING = "writing", _("writing")
    PENDING_SHIPMENT = "pending_shipment", _("pending shipment")
    SHIPPED = "shipped", _("shipped")
    FAILED = "failed", _("failed")
    CANCELED = "canceled", _("canceled")
    EXPIRED = "expired", _("expired")


OrderStatus.ACTIVE = frozenset(
    {
        OrderStatus.PENDING,
        OrderStatus.BUILDING,
        OrderStatus.BUILT,
        OrderStatus.WRITING,
        OrderStatus.PENDING_SHIPMENT,
    }
)
OrderStatus.TERMINAL = frozenset(
    {OrderStatus.SHIPPED, OrderStatus.FAILED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
)

# Which status may follow which; anything else is refused by Order.can_move.
ORDER_TRANSITIONS = {
    OrderStatus.PENDING: {OrderStatus.BUILDING},
    OrderStatus.BUILDING: {OrderStatus.BUILT, OrderStatus.PENDING},
    OrderStatus.BUILT: {OrderStatus.WRITING, OrderStatus.EXPIRED},
    OrderStatus.WRITING: {OrderStatus.PENDING_SHIPMENT},
    OrderStatus.PENDING_SHIPMENT: {OrderStatus.SHIPPED},
    OrderStatus.SHIPPED: {OrderStatus.EXPIRED},
    OrderStatus.FAILED: {OrderStatus.EXPIRED},
    OrderStatus.CANCELED: {OrderStatus.EXPIRED},
    OrderStatus.EXPIRED: set(),
}
for _status in OrderStatus.ACTIVE:
    ORDER_TRANSITIONS[_status] |= {OrderStatus.FAILED, OrderStatus.CANCELED}


class OrderKind(models.TextChoices):
    PHYSICAL = "physical", _("SD-cards")
    DOWNLOAD = "download", _("image download")


class OrderQuerySet(OwnedQuerySet):
    def move(
        self, pk, *, current: str, to: str, actor=None, message: str = "", **fields
    ) -> bool:
        """Move order ``pk`` from status ``current`` to ``to`` and record it.

        The update is conditional on ``current`` (DESIGN 3): of two processes
        racing to move an order, one wins, on every backend. The caller checks
        that the transition is allowed (``Order.move_to`` does).
        """
        fields.setdefault("updated_at", now())
        moved = self.filter(pk=pk, status=current).update(status=to, **fields)
        if moved:
            OrderEvent.objects.create(
                order_id=pk, status=to, actor=actor, message=message
            )
        return bool(moved)


class Order(UUIDModel):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    configuration = models.ForeignKey(
        Configuration,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="orders",
    )
    # The configuration as it was when the order was placed: later edits of the
    # configuration never change what is built.
    config = models.JSONField(_("configuration snapshot"), default=dict)
    kind = models.CharField(
        _("kind"), max_length=10, choices=OrderKind.choices, default=OrderKind.PHYSICAL
    )
    card_size_gb = models.PositiveIntegerField(
        _("card size (GB)"), choices=[(size, f"{size} GB") for size in CARD_SIZES]
    )
    quantity = models.PositiveIntegerField(
        _("copies"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
    )
    content_bytes = models.BigIntegerField(_("content size (bytes)"), default=0)
    recipient_name = models.CharField(_("recipient name"), max_length=200, blank=True)
    recipient_email = models.EmailField(_("recipient e-mail"))
    recipient_phone = models.CharField(
        _("recipient phone"),
        max_length=32,
        blank=True,
        validators=[RegexValidator(r"^\+?[0-9 ().-]{4,31}$", _("A phone number."))],
    )
    shipping_address = models.TextField(_("shipping address"), blank=True)
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=OrderStatus.choices,
        default=OrderStatus.PENDING,
        db_index=True,
    )
    image = models.ForeignKey(
        "scheduler.Image",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    shipment_carrier = models.CharField(_("carrier"), max_length=100, blank=True)
    shipment_tracking = models.CharField(
        _("tracking number"), max_length=200, blank=True
    )
    shipped_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.config.get('name', '?')} ({self.get_kind_display()})"

    def clean(self):
        errors = {}
        if self.kind == OrderKind.PHYSICAL:
            if not self.recipient_name:
                errors["recipient_name"] = _("Cards are shipped to a named recipient.")
            if not self.shipping_address.strip():
                errors["shipping_address"] = _("Cards need a shipping address.")
        elif self.quantity != 1:
            errors["quantity"] = _("A download order has exactly one image.")
        if errors:
            raise ValidationError(errors)

    @property
    def is_active(self) -> bool:
        return self.status in OrderStatus.ACTIVE

    def shown_config(self) -> dict:
        """The configuration snapshot without the hotspot's passwords: they go on
        the card, never into answers, pages or logs."""
        return {k: v for k, v in self.config.items() if k not in SECRET_CONFIG_KEYS}

    def can_move(self, to: str) -> bool:
        return to in ORDER_TRANSITIONS[OrderStatus(self.status)]

    def retention_starts(self, to: str) -> bool:
        """Whether moving to ``to`` starts the retention period: the order is
        finished, or its image is ready to download."""
        return to in OrderStatus.TERMINAL or (
            to == OrderStatus.BUILT and self.kind == OrderKind.DOWNLOAD
        )

    def move_to(self, to: str, *, actor=None, message: str = "", **fields) -> bool:
        """Move to status ``to`` if that is allowed from the current status.

        Optimistic: the update is conditional on the status we hold. If another
        process moved the order first, we read it again and retry while the move
        is still allowed. Returns whether this call moved it; the instance then
        holds the new values.
        """
        for _attempt in range(3):
            if not self.can_move(to):
                return False
            moment = now()
            changes = {"updated_at": moment, **fields}
            if self.retention_starts(to):
                changes.setdefault(
                    "expires_at",
                    moment + timedelta(days=settings.ORDER_RETENTION_DAYS),
                )
            if Order.objects.move(
                self.pk,
                current=self.status,
                to=to,
                actor=actor,
                message=message,
                **changes,
            ):
                for key, value in {"status": to, **changes}.items():
                    setattr(self, key, value)
                return True
            self.refresh_from_db()
        return False


class OrderEvent(UUIDModel):
    """The order's timestamped history: every status change and notable fact."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=now, db_index=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.status}"
