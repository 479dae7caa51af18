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
)
from django.db import models
from django.utils.timezone import now
from django.utils.translation import gettext_lazy as _
from PIL import Image

from apps.accounts.models import Role
from apps.common.models import UUIDModel
from apps.orders import contents, recipes
from apps.orders.cards import CARD_SIZES, smallest_card_gb
from apps.orders.contents import validate_contents
from apps.orders.hotspot import (
    DEFAULT_DOMAIN,
    validate_admin_password,
    validate_domain,
    validate_ssid,
    validate_timezone,
    validate_wifi_password,
)

MAX_BRANDING_BYTES = 2 * 1024 * 1024
MAX_BRANDING_PIXELS = 4096
#: Snapshot keys that hold the hotspot's passwords.
SECRET_CONFIG_KEYS = frozenset({"admin_password", "wifi_password"})
BRANDING_FORMATS = {"PNG", "JPEG"}


@cache
def language_choices() -> list[tuple[str, str]]:
    """Two- or three-letter languages Django knows, by English name."""
    codes = sorted(
        (code, info["name"])
        for code, info in LANG_INFO.items()
        if "-" not in code and "name" in info and len(code) <= 3
    )
    return codes


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


def read_image(file, field: str) -> bytes | None:
    """The bytes of a branding image: an upload not saved yet, or a stored file."""
    if not file:
        return None
    if not getattr(file, "_committed", True):
        upload = file.file
        upload.seek(0)
        data = upload.read()
        upload.seek(0)  # the upload is saved after validation
        return data
    try:
        with file.open("rb"):
            return file.read()
    except OSError:
        raise ValidationError(
            {field: _("The stored image is gone; upload it again.")}
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
            # Parentheses for copies: "School kit (copy)".
            RegexValidator(
                r"^[\w][\w .()-]*$",
                _(
                    "Use letters, digits, spaces, dots, dashes, underscores and "
                    "parentheses."
                ),
            ),
        ],
    )
    ssid = models.CharField(
        _("hotspot name (SSID)"), max_length=32, validators=[validate_ssid]
    )
    domain = models.CharField(
        _("hotspot domain"),
        max_length=63,
        default=DEFAULT_DOMAIN,
        validators=[validate_domain],
        help_text=_("The hotspot answers at this name, as in kiwix.hotspot."),
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
        validators=[validate_admin_password],
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
    # offspot-config's minimum image size for this configuration when it was last
    # saved through the API or the admin (0: never rendered): what lists show.
    image_bytes = models.BigIntegerField(
        _("minimum image size (bytes)"), default=0, editable=False
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
        return contents.total_size(self.contents)

    @property
    def min_card_size_gb(self) -> int | None:
        """The smallest card the stored minimum image size fits on (None: not
        rendered yet, or no card is big enough)."""
        return smallest_card_gb(self.image_bytes) if self.image_bytes else None

    def branding_images(self) -> dict[str, bytes | None]:
        """The logo's and the favicon's bytes, uploaded or stored."""
        return {
            "logo": read_image(self.branding_logo, "branding_logo"),
            "favicon": read_image(self.branding_favicon, "branding_favicon"),
        }

    def render(self) -> recipes.Recipe:
        """This configuration as image-creator's YAML, rendered by offspot-config."""
        return recipes.render(self.snapshot(), branding=self.branding_images())

    def snapshot(self) -> dict:
        """The frozen copy an order keeps of this configuration."""
        return {
            "id": str(self.pk),
            "name": self.name,
            "ssid": self.ssid,
            "domain": self.domain,
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
    # image-creator's YAML rendered from ``config`` by offspot-config when the order
    # was placed: what its create task builds. It holds the hotspot's passwords;
    # only the owner and staff may read it (never in lists, logs or admin lists).
    recipe = models.TextField(_("image-creator YAML"), blank=True, editable=False)
    # The smallest image that recipe fits in: base + content + offspot's margin.
    image_bytes = models.BigIntegerField(_("image size (bytes)"), default=0)
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
