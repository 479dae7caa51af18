from datetime import timedelta
from uuid import uuid4

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.common.models import UUIDModel


class WorkerKind(models.TextChoices):
    CREATOR = "creator", _("creator")
    DOWNLOADER = "downloader", _("downloader")
    WRITER = "writer", _("writer")


class Worker(UUIDModel):
    """A running worker process, known by its account, kind and host name."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workers"
    )
    kind = models.CharField(max_length=12, choices=WorkerKind.choices)
    host = models.CharField(_("host name"), max_length=253)
    version = models.CharField(max_length=50, blank=True)
    # What the worker reported last: free disk, slot count, parallel builds...
    capabilities = models.JSONField(default=dict, blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    # Set by the sweeper when the worker stops reporting; cleared by a heartbeat.
    offline_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["kind", "host"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "host"], name="unique_worker_per_host"
            )
        ]

    def __str__(self):
        return f"{self.kind}@{self.host}"

    @property
    def online(self) -> bool:
        limit = timedelta(seconds=settings.WORKER_OFFLINE_AFTER)
        return self.last_seen >= timezone.now() - limit


class SlotState(models.TextChoices):
    EMPTY = "empty", _("empty")
    CARD_PRESENT = "card_present", _("card present")
    WRITING = "writing", _("writing")
    VERIFYING = "verifying", _("verifying")
    DONE = "done", _("done: remove the card")
    FAILED = "failed", _("failed: remove the card")
    OFFLINE = "offline", _("offline")


class Slot(UUIDModel):
    """A USB card reader of a writer host, bound to a stable device path."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="slots")
    name = models.CharField(max_length=50)
    device_path = models.CharField(_("stable device path"), max_length=255)
    state = models.CharField(
        max_length=20, choices=SlotState.choices, default=SlotState.EMPTY
    )
    percent = models.FloatField(default=0)
    card_capacity = models.BigIntegerField(null=True, blank=True)
    card_serial = models.CharField(max_length=100, blank=True)
    task = models.ForeignKey(
        "Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    message = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["worker", "name"], name="unique_slot_name_per_worker"
            )
        ]

    def __str__(self):
        return f"{self.worker.host}/{self.name}"


class Warehouse(UUIDModel):
    """An FTP server that stores images; it reports its space with its account."""

    name = models.CharField(max_length=100, unique=True)
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="warehouses"
    )
    ftp_url = models.CharField(_("FTP URL"), max_length=255)
    download_url = models.CharField(
        _("public download URL"),
        max_length=255,
        blank=True,
        help_text=_("Base address under which download orders' images are served."),
    )
    capacity_bytes = models.BigIntegerField(default=0)
    free_bytes = models.BigIntegerField(default=0)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def online(self) -> bool:
        limit = timedelta(seconds=settings.WORKER_OFFLINE_AFTER)
        return self.last_seen >= timezone.now() - limit


class ImageState(models.TextChoices):
    UPLOADING = "uploading", _("uploading")
    VERIFIED = "verified", _("verified")
    REJECTED = "rejected", _("rejected: hash mismatch")
    DELETABLE = "deletable", _("to be deleted")
    DELETED = "deleted", _("deleted")


class Image(UUIDModel):
    """A built image in a warehouse. Verified only when the warehouse's hashes of
    the image and its block map equal the ones the creator declared."""

    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, related_name="images"
    )
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.PROTECT, related_name="images"
    )
    file_name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    bmap_name = models.CharField(max_length=255)
    bmap_size = models.BigIntegerField()
    bmap_sha256 = models.CharField(max_length=64)
    # What the warehouse measured while receiving.
    received_size = models.BigIntegerField(null=True, blank=True)
    received_sha256 = models.CharField(max_length=64, blank=True)
    bmap_received_sha256 = models.CharField(max_length=64, blank=True)
    state = models.CharField(
        max_length=12, choices=ImageState.choices, default=ImageState.UPLOADING
    )
    created_at = models.DateTimeField(default=timezone.now)
    verified_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Files live under orders/<order id>/: names repeat across orders.
            models.UniqueConstraint(
                fields=["warehouse", "order", "file_name"], name="unique_image_file"
            )
        ]

    def __str__(self):
        return self.file_name

    @property
    def folder(self) -> str:
        return f"orders/{self.order_id}"

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.file_name}"

    @property
    def bmap_path(self) -> str:
        return f"{self.folder}/{self.bmap_name}"


class TaskKind(models.TextChoices):
    CREATE = "create", _("create image")
    DOWNLOAD = "download", _("download image")
    WRITE = "write", _("write card")


class TaskStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    LEASED = "leased", _("leased")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CANCELED = "canceled", _("canceled")


TaskStatus.HELD = frozenset({TaskStatus.LEASED, TaskStatus.RUNNING})
TaskStatus.ACTIVE = frozenset({TaskStatus.PENDING, *TaskStatus.HELD})
TaskStatus.TERMINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED}
)


class Task(UUIDModel):
    """One unit of work for a worker, handed out under a lease.

    Whoever holds ``lease_id`` may change the task until ``lease_expires_at``; every
    change is a conditional update on that id (DESIGN 3 and 5).
    """

    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, related_name="tasks"
    )
    kind = models.CharField(max_length=10, choices=TaskKind.choices)
    status = models.CharField(
        max_length=10, choices=TaskStatus.choices, default=TaskStatus.PENDING
    )
    phase = models.CharField(max_length=40, blank=True)
    percent = models.FloatField(default=0)
    phase_started_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    copy_number = models.PositiveIntegerField(null=True, blank=True)
    # A write or download task is bound to the writer host that holds the image.
    host = models.CharField(max_length=253, blank=True, db_index=True)
    image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    lease_id = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    worker = models.ForeignKey(
        Worker, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    slot = models.ForeignKey(
        Slot, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cancel_requested = models.BooleanField(default=False)
    card_capacity = models.BigIntegerField(null=True, blank=True)
    card_serial = models.CharField(max_length=100, blank=True)
    card_failures = models.PositiveIntegerField(default=0)
    card_budget = models.PositiveIntegerField(default=3)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["kind", "status", "created_at"])]

    def __str__(self):
        return f"{self.kind} {self.pk}"

    @property
    def is_held(self) -> bool:
        return self.status in TaskStatus.HELD


class TaskEvent(UUIDModel):
    """What happened to a task. ``event_id`` (chosen by the worker) makes a repeated
    report a no-op: the second insert fails on the unique constraint."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    # Workers send their own id; system events get a random one, so the unique
    # constraint never meets a NULL (MongoDB's unique indexes count NULLs).
    event_id = models.UUIDField(default=uuid4)
    at = models.DateTimeField(default=timezone.now)
    type = models.CharField(max_length=30)
    lease_id = models.UUIDField(null=True, blank=True)
    worker = models.ForeignKey(
        Worker, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "event_id"], name="unique_task_event_id"
            )
        ]

    def __str__(self):
        return f"{self.type} {self.at:%H:%M:%S}"
