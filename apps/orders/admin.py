import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Role
from apps.orders import pipeline
from apps.orders.models import Configuration, Order, OrderEvent


class ConfigurationForm(forms.ModelForm):
    """Refuses what offspot-config refuses, as the API does, and keeps the
    configuration's minimum image size up to date (the admin names the model
    and the fields)."""

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        try:
            self.instance.image_bytes = self.instance.render().min_size
        except ValidationError as exc:
            self._update_errors(exc)


@admin.register(Configuration)
class ConfigurationAdmin(admin.ModelAdmin):
    form = ConfigurationForm
    list_display = ("name", "owner", "ssid", "domain", "language", "created_at")
    search_fields = ("name", "ssid", "owner__username")
    list_filter = ("language",)
    raw_id_fields = ("owner",)
    readonly_fields = ("image_bytes",)
    # The hotspot's passwords go on the card, not on operators' screens.
    exclude = ("admin_password", "wifi_password")

    def has_add_permission(self, request):
        return False  # clients design their configurations

    def has_change_permission(self, request, obj=None):
        # Operators read clients' configurations; only admins may correct one.
        return request.user.role == Role.ADMIN


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "status", "actor", "message")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "kind",
        "card_size_gb",
        "quantity",
        "status",
        "created_at",
    )
    list_filter = ("status", "kind", "card_size_gb")
    search_fields = ("id", "owner__username", "recipient_name", "recipient_email")
    # Status moves only through the services (actions below), never by editing.
    readonly_fields = (
        "owner",
        "configuration",
        "configuration_snapshot",
        "kind",
        "card_size_gb",
        "quantity",
        "content_bytes",
        "image_bytes",
        "status",
        "image",
        "shipped_at",
        "failure_reason",
        "created_at",
        "expires_at",
    )
    # The frozen YAML holds the hotspot's passwords and the branding (megabytes):
    # it is downloaded from the API (orders/{id}/recipe/), never shown here; the
    # snapshot is shown without the passwords (configuration_snapshot).
    exclude = ("config", "recipe")
    inlines = [OrderEventInline]
    actions = ["cancel", "ship"]

    @admin.display(description=_("configuration snapshot"))
    def configuration_snapshot(self, order):
        # The hotspot's passwords are in the snapshot to go on the card; the admin
        # shows the rest.
        return json.dumps(order.shown_config(), indent=2, ensure_ascii=False)

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Cancel the selected orders"))
    def cancel(self, request, queryset):
        self._each(request, queryset, pipeline.cancel_order)

    @admin.action(description=_("Mark the selected orders shipped"))
    def ship(self, request, queryset):
        self._each(request, queryset, pipeline.ship_order)

    def _each(self, request, queryset, service):
        done = 0
        for order in queryset:
            try:
                service(order=order, actor=request.user)
                done += 1
            except ValidationError as exc:
                self.message_user(
                    request, f"{order.pk}: {'; '.join(exc.messages)}", messages.ERROR
                )
        if done:
            self.message_user(request, _("%(n)d orders changed.") % {"n": done})
