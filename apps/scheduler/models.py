import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Role
from apps.common.models import UUIDModel

#: Longest a warehouse choice is reused by one process (``Warehouse.objects.pick``):
#: warehouses report every minute, and are offline after WORKER_OFFLINE_AFTER.
PICK_SECONDS = 30


def online_since(now=None):
    """The one "online" rule: whoever reported after this moment is online.

    Workers report by registering, claiming and sending heartbeats, and while they
    work by renewing their leases (``WorkerQuerySet.online``); warehouses by their
    heartbeats.
    """
    return (now or timezone.now()) - timedelta(seconds=settings.WORKER_OFFLINE_AFTER)


class WorkerKind(models.TextChoices):
    CREATOR = "creator", _("creator")
    DOWNLOADER = "downloader", _("downloader")
    WRITER = "writer", _("writer")


@dataclass(frozen=True)
class WorkerIdentity:
    """What never changes about a worker: whose it is, what it does, where."""

    pk: UUID
    account_id: UUID
    kind: str
    host: str

    def __str__(self):
        return worker_label(self.kind, self.host)


def worker_label(kind: str, host: str) -> str:
    return f"{kind}@{host}"


class WorkerQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Managers and admins see every worker, worker accounts their own."""
        if user.role in Role.staff():
            return self
        return self.filter(account=user)

    def online(self, now=None):
        """Workers that reported within WORKER_OFFLINE_AFTER, or that hold a lease
        they keep renewing: a busy worker renews its lease instead of reporting."""
        now = now or timezone.now()
        renewing = Task.objects.renewing(now).values_list("worker_id", flat=True)
        # A list, not a subquery: the same plan on every backend (DESIGN 3).
        return self.filter(
            Q(last_seen__gte=online_since(now)) | Q(pk__in=list(renewing))
        )


class WorkerManager(models.Manager.from_queryset(WorkerQuerySet)):
    # Account, kind and host of a worker never change (they are its unique key),
    # so each process keeps them once read: the hot endpoints check who owns a
    # worker without a query. A deleted worker's id is never reused (UUID).
    _identities: dict = {}
    _lock = threading.Lock()

    def identity(self, pk) -> WorkerIdentity | None:
        try:
            pk = pk if isinstance(pk, UUID) else UUID(str(pk))
        except ValueError:
            return None
        found = self._identities.get(pk)
        if found is None:
            row = (
                self.get_queryset()
                .filter(pk=pk)
                .values_list("account_id", "kind", "host")
                .first()
            )
            if row is None:
                return None
            found = WorkerIdentity(pk, *row)
            with self._lock:
                if len(self._identities) > 10_000:
                    self._identities.clear()
                self._identities[pk] = found
        return found


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

    objects = WorkerManager()

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
        return worker_label(self.kind, self.host)

    @property
    def online(self) -> bool:
        if self.last_seen >= online_since():
            return True
        return Worker.objects.filter(pk=self.pk).online().exists()


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


class WarehouseQuerySet(models.QuerySet):
    def online(self, now=None):
        return self.filter(last_seen__gte=online_since(now))


class WarehouseManager(models.Manager.from_queryset(WarehouseQuerySet)):
    # Every create claim needs a warehouse; they change at each heartbeat (every
    # minute), so a process reuses its choice for a while.
    _pick: tuple[float, "Warehouse"] | None = None

    def pick(self) -> "Warehouse | None":
        """The online warehouse with the most free space."""
        memo = WarehouseManager._pick
        if memo is not None and time.monotonic() - memo[0] < PICK_SECONDS:
            return memo[1]
        chosen = self.get_queryset().online().order_by("-free_bytes").first()
        # "None online" is not remembered: a warehouse that starts is used at once.
        WarehouseManager._pick = None if chosen is None else (time.monotonic(), chosen)
        return chosen

    @staticmethod
    def forget_pick() -> None:
        """A warehouse reported: choose again at the next claim."""
        WarehouseManager._pick = None


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

    objects = WarehouseManager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def online(self) -> bool:
        return self.last_seen >= online_since()


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

    def fetch_work(self) -> dict:
        """What a downloader or writer needs to fetch and check this image; frozen
        in their tasks when they are made."""
        return {
            "image": {
                "id": str(self.pk),
                "order": str(self.order_id),
                "file_name": self.file_name,
                "path": self.path,
                "size": self.size,
                "sha256": self.sha256,
                "bmap_name": self.bmap_name,
                "bmap_path": self.bmap_path,
                "bmap_size": self.bmap_size,
                "bmap_sha256": self.bmap_sha256,
            },
            "warehouse": self.warehouse.ftp_url,
        }


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

#: The kind of task each kind of worker does.
TASK_KIND_OF = {
    WorkerKind.CREATOR: TaskKind.CREATE,
    WorkerKind.DOWNLOADER: TaskKind.DOWNLOAD,
    WorkerKind.WRITER: TaskKind.WRITE,
}
WORKER_KIND_OF = {task: worker for worker, task in TASK_KIND_OF.items()}
#: Which kinds of worker an account of each role may run: a writer host's
#: downloader and writers may share one account (DESIGN 4).
WORKER_KINDS_OF_ROLE = {
    Role.CREATOR: frozenset({WorkerKind.CREATOR}),
    Role.DOWNLOADER: frozenset({WorkerKind.DOWNLOADER}),
    Role.WRITER: frozenset({WorkerKind.WRITER, WorkerKind.DOWNLOADER}),
}


def task_kinds_of_role(role: str) -> set[str]:
    """The kinds of task an account of ``role`` works on."""
    return {TASK_KIND_OF[kind] for kind in WORKER_KINDS_OF_ROLE.get(role, ())}


class TaskQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Managers and admins see every task, worker accounts the ones their
        workers hold."""
        if user.role in Role.staff():
            return self
        return self.filter(worker__account=user, status__in=TaskStatus.HELD)

    def held_by(self, lease_id, now=None):
        """The one lease check: tasks the lease ``lease_id`` holds, unexpired at
        ``now`` (any expiry when ``now`` is None). Every change a lease holder
        makes is an update of this queryset, so a lost lease changes nothing."""
        held = self.filter(lease_id=lease_id, status__in=TaskStatus.HELD)
        return held if now is None else held.filter(lease_expires_at__gt=now)

    def renewing(self, now=None):
        """Held tasks whose lease is still running: their worker is alive."""
        return self.filter(
            status__in=TaskStatus.HELD, lease_expires_at__gt=now or timezone.now()
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
    # What the worker needs to do the task, frozen when the task is made: the
    # build for a create task, the image for the others. The claim answers with
    # it without reading the order or the image again.
    work = models.JSONField(default=dict, blank=True)
    # Room the task needs: on the creator's disk and the warehouse for a create
    # task (an estimate), on the host's disk and the card for the others.
    needed_bytes = models.BigIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["kind", "status", "created_at"])]

    def __str__(self):
        return f"{self.kind} {self.pk}"

    @property
    def is_held(self) -> bool:
        return self.status in TaskStatus.HELD

    def holds(self, lease_id, now) -> bool:
        """What this row says of ``lease_id``: the same rule as ``held_by``, for a
        quick refusal; the fenced update is what decides."""
        return (
            str(self.lease_id) == str(lease_id)
            and self.status in TaskStatus.HELD
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def record(self, type: str, **data) -> "TaskEvent":
        """Add ``type`` to the task's history, under its current lease."""
        return TaskEvent.objects.create(
            task=self,
            type=type,
            lease_id=self.lease_id,
            worker_id=self.worker_id,
            data=data,
        )

    def requeue_changes(self, now, error: str, count_attempt: bool = True) -> dict:
        """Fields that put the task back in the queue for another worker (or card)."""
        changes = {
            "status": TaskStatus.PENDING,
            "lease_id": None,
            "lease_expires_at": None,
            "worker": None,
            "slot": None,
            "phase": "",
            "percent": 0,
            "error": error[:2000],
            "attempts": self.attempts + (1 if count_attempt else 0),
        }
        if self.kind == TaskKind.CREATE:
            changes["warehouse"] = None
        elif self.kind == TaskKind.DOWNLOAD:
            changes["host"] = ""  # any writer host may download it now
        return changes

    def retry_or_fail(self, now, error: str, *, retryable: bool = True) -> dict:
        """The one rule for a failed attempt: back in the queue while attempts
        remain, failed once they are spent. Returns the fields to change; their
        ``status`` says which."""
        if retryable and self.attempts + 1 < self.max_attempts:
            return self.requeue_changes(now, error)
        return {"status": TaskStatus.FAILED, "error": error[:2000], "finished_at": now}


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
