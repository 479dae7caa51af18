from django.contrib import admin

from apps.scheduler.models import Image, Slot, Task, TaskEvent, Warehouse, Worker


class ReadOnlyAdmin(admin.ModelAdmin):
    """Workers write these through the API; people look at them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    extra = 0
    fields = readonly_fields = ("at", "type", "worker", "lease_id", "data")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "phase",
        "percent",
        "order",
        "worker",
        "host",
        "copy_number",
        "attempts",
        "card_failures",
    )
    list_filter = ("kind", "status")
    search_fields = ("id", "order__id", "host")
    # A build's work holds the hotspot's configuration with its passwords.
    exclude = ("work",)
    inlines = [TaskEventInline]


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = ("kind", "host", "account", "version", "last_seen", "offline_since")
    list_filter = ("kind",)


@admin.register(Slot)
class SlotAdmin(ReadOnlyAdmin):
    list_display = ("name", "worker", "state", "percent", "device_path", "updated_at")
    list_filter = ("state",)


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    list_display = ("name", "ftp_url", "free_bytes", "capacity_bytes", "last_seen")


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ("file_name", "order", "warehouse", "size", "state", "created_at")
    list_filter = ("state",)
