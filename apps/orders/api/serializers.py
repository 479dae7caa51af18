from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.accounts.models import Role
from apps.orders import contents
from apps.orders.cards import CARD_SIZES
from apps.orders.links import download_link_or_none
from apps.orders.models import (
    Configuration,
    Order,
    OrderEvent,
    OrderKind,
    language_choices,
)
from apps.orders.pipeline import progress
from apps.orders.services import validate_configuration


class ContentEntrySerializer(serializers.Serializer):
    """One content entry (``apps.orders.contents``): a ZIM file, with its URL, size
    and a way to check it and what Kiwix's catalog says of it, or a package of
    offspot-config's catalog named by its ident."""

    kind = serializers.ChoiceField(
        choices=contents.KINDS,
        required=False,
        help_text=_("zim (the default) or package."),
    )
    ident = serializers.CharField(
        max_length=200,
        required=False,
        help_text=_(
            "A ZIM's publisher:name:flavour, or a package of offspot-config's catalog."
        ),
    )
    name = serializers.CharField(max_length=200, required=False)
    flavour = serializers.CharField(max_length=100, required=False, allow_blank=True)
    version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(
        max_length=2000, required=False, allow_blank=True
    )
    languages = serializers.ListField(
        child=serializers.CharField(max_length=20), required=False, max_length=20
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50
    )
    url = serializers.URLField(required=False)
    size = serializers.IntegerField(
        min_value=1, max_value=contents.MAX_SIZE, required=False
    )
    sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        error_messages={"invalid": _("Give the 64 lowercase hex digits of a SHA-256.")},
    )
    md5 = serializers.RegexField(
        r"^[0-9a-f]{32}$",
        required=False,
        error_messages={"invalid": _("Give the 32 lowercase hex digits of an MD5.")},
    )
    checksum_url = serializers.URLField(required=False)

    def validate(self, attrs):
        if attrs.get("kind") == contents.PACKAGE:
            if "ident" not in attrs:
                raise serializers.ValidationError(
                    {"ident": _("Name a package of offspot-config's catalog.")}
                )
            extra = sorted(set(attrs) - contents.PACKAGE_KEYS)
            if extra:
                raise serializers.ValidationError(
                    dict.fromkeys(extra, _("A package entry has only its ident."))
                )
            return attrs
        missing = [key for key in ("title", "url", "size") if key not in attrs]
        if missing:
            raise serializers.ValidationError(
                dict.fromkeys(missing, _("A ZIM entry needs this field."))
            )
        return attrs


class ConfigurationSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    # Declared without the model's regular expression: its \w means any letter
    # in Python but only ASCII ones in the schema's (JavaScript) dialect. The
    # model's rule still runs in validate() (full_clean).
    name = serializers.CharField(
        min_length=3,
        max_length=80,
        help_text=_("Letters (any script), digits, spaces, dots, dashes, underscores."),
    )
    language = serializers.ChoiceField(choices=language_choices())
    contents = ContentEntrySerializer(many=True, allow_empty=False)
    total_size = serializers.IntegerField(read_only=True)
    image_bytes = serializers.IntegerField(
        read_only=True,
        help_text=_(
            "offspot-config's minimum image size as of the last change (bytes)."
        ),
    )
    min_card_size_gb = serializers.SerializerMethodField()
    admin_password = serializers.CharField(
        write_only=True, min_length=8, max_length=64, trim_whitespace=False
    )
    wifi_password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False
    )
    has_wifi_password = serializers.SerializerMethodField()

    class Meta:
        model = Configuration
        fields = [
            "id",
            "owner",
            "name",
            "ssid",
            "domain",
            "language",
            "timezone",
            "admin_login",
            "admin_password",
            "wifi_password",
            "has_wifi_password",
            "branding_logo",
            "branding_favicon",
            "contents",
            "total_size",
            "image_bytes",
            "min_card_size_gb",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_min_card_size_gb(self, obj) -> int | None:
        return obj.min_card_size_gb

    def get_has_wifi_password(self, obj) -> bool:
        return bool(obj.wifi_password)

    def validate(self, attrs):
        # The model's own validators (SSID bytes, time zone, name rules) run too,
        # so the API and the admin refuse the same things with the same words.
        instance = Configuration(**{**self._current(), **attrs})
        owner = self.context["request"].user
        instance.owner = self.instance.owner if self.instance else owner
        # An edit is not a new row: unique checks must not meet the row itself.
        instance._state.adding = self.instance is None
        # The same rules as the client pages: the model's, a name the owner has
        # not used yet, and what offspot-config refuses is refused now, not when
        # an order is placed; lists show the minimum image size without
        # rendering each row.
        attrs["image_bytes"] = validate_configuration(
            instance, exclude=["branding_logo", "branding_favicon"]
        )
        return attrs

    def _current(self) -> dict:
        if self.instance is None:
            return {}
        names = [f.name for f in Configuration._meta.concrete_fields]
        return {name: getattr(self.instance, name) for name in names if name != "owner"}


class OrderEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.username", default=None, allow_null=True
    )

    class Meta:
        model = OrderEvent
        fields = ["at", "status", "actor", "message"]


class TaskSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    phase = serializers.CharField()
    percent = serializers.FloatField()
    copy_number = serializers.IntegerField(allow_null=True)
    host = serializers.CharField()
    card_failures = serializers.IntegerField()


class DownloadLinkSerializer(serializers.Serializer):
    image_url = serializers.CharField(
        help_text=_("The image, over HTTP(S), resumable; no account needed.")
    )
    bmap_url = serializers.CharField(help_text=_("Its block map (bmaptool)."))
    expires_at = serializers.DateTimeField(
        help_text=_("When both links stop working; ask again for fresh ones.")
    )


class DownloadLinks:
    """Each order's link made once per answer: signing costs a millisecond, and
    ``download_url`` and ``download`` of one order must be the same link."""

    def link(self, obj):
        made = self.context.setdefault("download_links", {})
        if obj.pk not in made:
            request = self.context.get("request")
            user = request.user if request is not None else None
            made[obj.pk] = download_link_or_none(obj, user=user)
        return made[obj.pk]


class OrderSerializer(DownloadLinks, serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    # Null once the configuration is deleted (the order keeps its frozen copy);
    # an order is always placed with one.
    configuration = serializers.PrimaryKeyRelatedField(
        queryset=Configuration.objects.all(),
        allow_null=True,
        help_text=_("The configuration to build; the order keeps a frozen copy."),
    )
    card_size_gb = serializers.ChoiceField(choices=CARD_SIZES)
    kind = serializers.ChoiceField(
        choices=OrderKind.choices, default=OrderKind.PHYSICAL
    )
    download_url = serializers.SerializerMethodField(
        help_text=_(
            "A download order's image, once built: a fresh link that works for "
            "DOWNLOAD_LINK_HOURS (the download action gives the block map's too)."
        )
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "owner",
            "configuration",
            "kind",
            "card_size_gb",
            "quantity",
            "content_bytes",
            "image_bytes",
            "recipient_name",
            "recipient_email",
            "recipient_phone",
            "shipping_address",
            "status",
            "shipment_carrier",
            "shipment_tracking",
            "shipped_at",
            "failure_reason",
            "download_url",
            "created_at",
            "updated_at",
            "expires_at",
        ]
        read_only_fields = [
            "status",
            "content_bytes",
            "image_bytes",
            "shipment_carrier",
            "shipment_tracking",
            "shipped_at",
            "failure_reason",
            "expires_at",
        ]

    def get_download_url(self, obj) -> str | None:
        if obj.kind != OrderKind.DOWNLOAD or obj.image_id is None:
            return None
        link = self.link(obj)
        return link.image_url if link else None

    def validate_configuration(self, configuration):
        if configuration is None:
            raise serializers.ValidationError(_("Choose one of your configurations."))
        user = self.context["request"].user
        if configuration.owner_id != user.pk and user.role not in Role.staff():
            raise serializers.ValidationError(_("Choose one of your configurations."))
        return configuration


class OrderDetailSerializer(OrderSerializer):
    config = serializers.SerializerMethodField()
    events = OrderEventSerializer(many=True, read_only=True)
    tasks = TaskSummarySerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()
    download = serializers.SerializerMethodField()

    class Meta(OrderSerializer.Meta):
        fields = [
            *OrderSerializer.Meta.fields,
            "download",
            "config",
            "events",
            "tasks",
            "progress",
        ]

    def get_download(self, obj) -> DownloadLinkSerializer(allow_null=True):
        """The image's and block map's links and when they expire, or null."""
        if obj.kind != OrderKind.DOWNLOAD or obj.image_id is None:
            return None
        link = self.link(obj)
        return DownloadLinkSerializer(link.as_dict()).data if link else None

    def get_config(self, obj) -> dict:
        return obj.shown_config()

    def get_progress(self, obj) -> float:
        """Overall percentage: building, then each copy written, equally weighted."""
        return progress(obj.tasks.all())


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class ShipSerializer(serializers.Serializer):
    carrier = serializers.CharField(required=False, allow_blank=True, max_length=100)
    tracking = serializers.CharField(required=False, allow_blank=True, max_length=200)
