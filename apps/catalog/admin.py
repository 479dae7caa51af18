from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from apps.catalog.models import CatalogSource, Entry


class ReadOnlyAdmin(admin.ModelAdmin):
    """The catalog is what its sources say: it changes by refreshing them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CatalogSource)
class CatalogSourceAdmin(ReadOnlyAdmin):
    list_display = ("url", "entry_count", "last_success_at", "state")
    readonly_fields = (
        "url",
        "state",
        "entry_count",
        "last_report",
        "last_attempt_at",
        "last_success_at",
        "failing_since",
        "last_error",
        "created_at",
    )
    fields = readonly_fields

    @admin.display(description=_("state"))
    def state(self, obj):
        return obj.state()


class RemovedFilter(admin.SimpleListFilter):
    title = _("listed by its source")
    parameter_name = "listed"

    def lookups(self, request, model_admin):
        return (("yes", _("listed")), ("no", _("removed")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(removed_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(removed_at__isnull=False)
        return queryset


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = (
        "title",
        "name",
        "flavour",
        "languages",
        "category",
        "period",
        "size",
        "removed_at",
    )
    list_filter = (RemovedFilter, "category", "source")
    search_fields = ("title", "name", "opds_id")
    # No joins on list pages (MongoDB, DESIGN 3): the source is shown by id.
    list_select_related = False
    readonly_fields = [
        field.name
        for field in Entry._meta.fields
        if field.name not in {"search_text", "content_hash"}
    ]
    fields = readonly_fields
