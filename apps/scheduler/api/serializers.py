from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.common.api.fields import ByteCount, StoredDict
from apps.orders.models import Order
from apps.scheduler.api.permissions import owns_worker
from apps.scheduler.models import (
    Image,
    Slot,
    SlotState,
    Task,
    TaskKind,
    Warehouse,
    Worker,
    WorkerKind,
)
from apps.scheduler.services.leases import CARD_FAILURES, EVENT_TYPES

SHA256 = r"^[0-9a-f]{64}$"
HOST = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$"


class SlotSpecSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[\w.-]{1,50}$")
    device_path = serializers.CharField(max_length=255)


class RegisterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=WorkerKind.choices)
    host = serializers.RegexField(HOST, help_text=_("The machine's host name."))
    version = serializers.CharField(max_length=50, required=False, default="")
    capabilities = StoredDict(required=False, default=dict)
    slots = SlotSpecSerializer(many=True, required=False)


class HeartbeatSerializer(serializers.Serializer):
    capabilities = StoredDict(required=False)


class SlotSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="worker.host", read_only=True)

    class Meta:
        model = Slot
        fields = [
            "id",
            "host",
            "name",
            "device_path",
            "state",
            "percent",
            "card_capacity",
            "card_serial",
            "task",
            "message",
            "updated_at",
        ]


class SlotReportSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=SlotState.choices)
    percent = serializers.FloatField(min_value=0, max_value=100, default=0)
    card_capacity = ByteCount(required=False, allow_null=True)
    card_serial = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True
    )
    message = serializers.CharField(max_length=255, required=False, default="")


class WorkerSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.username", read_only=True)
    online = serializers.SerializerMethodField()
    slots = SlotSerializer(many=True, read_only=True)

    def get_online(self, worker) -> bool:
        # A list gives the ids of its online workers (one query for the page).
        online_ids = self.context.get("online_ids")
        return worker.online if online_ids is None else worker.pk in online_ids

    class Meta:
        model = Worker
        fields = [
            "id",
            "account",
            "kind",
            "host",
            "version",
            "capabilities",
            "online",
            "last_seen",
            "offline_since",
            "registered_at",
            "slots",
        ]


class WarehouseSerializer(serializers.ModelSerializer):
    online = serializers.BooleanField(read_only=True)

    class Meta:
        model = Warehouse
        fields = [
            "id",
            "name",
            "ftp_url",
            "download_url",
            "capacity_bytes",
            "free_bytes",
            "last_seen",
            "online",
        ]
        read_only_fields = ["id", "last_seen", "online"]


class WarehouseHeartbeatSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[\w.-]{1,100}$")
    ftp_url = serializers.RegexField(r"^ftps?://[^/\s]+/?$")
    # Host names without a dot (a LAN name, a compose service) are fine here,
    # which URLField would refuse.
    download_url = serializers.RegexField(
        r"^https?://[^/\s?#]+(/[^\s?#]*)?$",
        required=False,
        allow_blank=True,
        default="",
    )
    capacity_bytes = ByteCount()
    free_bytes = ByteCount()


class ReceivedSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=400)
    size = ByteCount()
    sha256 = serializers.RegexField(SHA256)


class ImageSerializer(serializers.ModelSerializer):
    path = serializers.CharField(read_only=True)
    bmap_path = serializers.CharField(read_only=True)

    class Meta:
        model = Image
        fields = [
            "id",
            "order",
            "warehouse",
            "file_name",
            "path",
            "size",
            "sha256",
            "bmap_name",
            "bmap_path",
            "bmap_size",
            "bmap_sha256",
            "state",
            "created_at",
            "verified_at",
        ]


class DeclareImageSerializer(serializers.Serializer):
    lease_id = serializers.UUIDField()
    file_name = serializers.RegexField(r"^[\w.-]{1,200}\.img$")
    size = ByteCount(min_value=1)
    sha256 = serializers.RegexField(SHA256)
    bmap_name = serializers.RegexField(r"^[\w.-]{1,200}\.bmap$")
    bmap_size = ByteCount(min_value=1)
    bmap_sha256 = serializers.RegexField(SHA256)


class OwnWorkerField(serializers.UUIDField):
    """One of the caller's workers, as its identity (no query once known)."""

    def to_internal_value(self, data):
        pk = super().to_internal_value(data)
        identity = Worker.objects.identity(pk)
        if identity is None:
            raise serializers.ValidationError(_("No worker has this id; register."))
        if not owns_worker(self.context["request"].user, pk):
            raise serializers.ValidationError(_("This worker is not yours."))
        return identity


class ClaimSerializer(serializers.Serializer):
    worker = OwnWorkerField(help_text=_("The id registration returned."))
    free_disk = ByteCount(required=False)
    slot = serializers.CharField(max_length=50, required=False, default="")
    card_capacity = ByteCount(min_value=1, required=False)
    card_serial = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True
    )


class RenewSerializer(serializers.Serializer):
    lease_id = serializers.UUIDField()
    phase = serializers.CharField(max_length=40, required=False)
    percent = serializers.FloatField(min_value=0, max_value=100, required=False)


class EventSerializer(serializers.Serializer):
    lease_id = serializers.UUIDField()
    event_id = serializers.UUIDField(
        help_text=_("Chosen by the worker; sending the same id twice is a no-op.")
    )
    type = serializers.ChoiceField(choices=sorted(EVENT_TYPES))
    phase = serializers.CharField(max_length=40, required=False)
    percent = serializers.FloatField(min_value=0, max_value=100, required=False)
    text = serializers.CharField(
        required=False, allow_blank=True, max_length=65536, trim_whitespace=False
    )
    error = serializers.CharField(required=False, max_length=2000)
    retryable = serializers.BooleanField(required=False, default=True)
    reason = serializers.ChoiceField(choices=sorted(CARD_FAILURES), required=False)
    message = serializers.CharField(required=False, max_length=500)
    result = StoredDict(required=False)


class LogSerializer(serializers.Serializer):
    lease_id = serializers.UUIDField()
    event_id = serializers.UUIDField(required=False)
    text = serializers.CharField(max_length=65536, trim_whitespace=False)


class LeaseSerializer(serializers.Serializer):
    lease_id = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()
    cancel = serializers.BooleanField(source="cancel_requested")


class TaskSerializer(serializers.ModelSerializer):
    order_status = serializers.SerializerMethodField()
    worker = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "order",
            "order_status",
            "kind",
            "status",
            "phase",
            "percent",
            "attempts",
            "max_attempts",
            "copy_number",
            "host",
            "worker",
            "slot",
            "lease_expires_at",
            "cancel_requested",
            "card_capacity",
            "card_serial",
            "card_failures",
            "card_budget",
            "error",
            "result",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]

    def get_order_status(self, task) -> str:
        # Lists prefetch the orders; a single task (an event's answer) reads the
        # status alone, not the order's configuration snapshot.
        if Task.order.is_cached(task):
            return task.order.status
        return Order.objects.values_list("status", flat=True).get(pk=task.order_id)

    def get_worker(self, task) -> str | None:
        # Lists prefetch the workers; a single task (an event's answer) names its
        # worker from the identity the process keeps, without a query.
        if task.worker_id is None:
            return None
        if Task.worker.is_cached(task):
            return str(task.worker)
        return str(Worker.objects.identity(task.worker_id))


class TaskDetailSerializer(TaskSerializer):
    log_tail = serializers.CharField()

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "log_tail"]


class WorkTaskSerializer(serializers.ModelSerializer):
    """What a worker needs to do a task it claimed."""

    lease_id = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()
    work = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "order",
            "kind",
            "status",
            "lease_id",
            "lease_expires_at",
            "copy_number",
            "host",
            "work",
        ]

    def get_work(self, task) -> dict:
        # Frozen in the task when it was made; a build's warehouse is the one
        # its claim chose.
        if task.kind == TaskKind.CREATE:
            warehouse = task.warehouse.ftp_url if task.warehouse_id else None
            return {**task.work, "warehouse": warehouse}
        return task.work


class DiagnosisSerializer(serializers.Serializer):
    task = serializers.UUIDField()
    status = serializers.CharField()
    running = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
