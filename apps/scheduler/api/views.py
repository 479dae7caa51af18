from uuid import uuid4

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.accounts.permissions import IsStaff, has_role
from apps.scheduler.api import serializers as s
from apps.scheduler.models import (
    Slot,
    Task,
    TaskKind,
    TaskStatus,
    Warehouse,
    Worker,
)
from apps.scheduler.services import claims, images, leases
from apps.scheduler.services import workers as worker_services
from apps.scheduler.services.diagnose import diagnose

IsWorker = has_role(Role.CREATOR, Role.DOWNLOADER, Role.WRITER)
IsWarehouse = has_role(Role.WAREHOUSE)
IsWorkerOrStaff = has_role(Role.CREATOR, Role.DOWNLOADER, Role.WRITER, *Role.staff())

ClaimAnswer = inline_serializer(
    "ClaimAnswer",
    {
        "task": s.WorkTaskSerializer(allow_null=True),
        "reason": serializers.CharField(),
        "code": serializers.CharField(),
    },
)
EventAnswer = inline_serializer(
    "EventAnswer",
    {"task": s.TaskSerializer(), "duplicate": serializers.BooleanField()},
)


class WorkerViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Workers register and report here; managers list them."""

    serializer_class = s.WorkerSerializer

    def get_permissions(self):
        if self.action in {"list", "retrieve"}:
            return [IsWorkerOrStaff()]
        return [IsWorker()]

    def get_queryset(self):
        # prefetch, not select_related: on MongoDB a join runs over the whole
        # collection before the filter and the page limit (DESIGN 3).
        queryset = Worker.objects.prefetch_related("account", "slots")
        if self.request.user.role in Role.staff():
            return queryset
        return queryset.filter(account=self.request.user)

    @extend_schema(request=s.RegisterSerializer, responses=s.WorkerSerializer)
    @action(detail=False, methods=["post"])
    def register(self, request):
        body = s.RegisterSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        worker = worker_services.register_worker(
            account=request.user,
            kind=data["kind"],
            host=data["host"],
            version=data["version"],
            capabilities=data["capabilities"],
            slots=data.get("slots"),
        )
        return Response(s.WorkerSerializer(worker).data)

    @extend_schema(request=s.HeartbeatSerializer, responses=s.WorkerSerializer)
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        worker = self.get_object()
        body = s.HeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        worker_services.heartbeat(
            worker=worker, capabilities=body.validated_data.get("capabilities")
        )
        return Response(s.WorkerSerializer(worker).data)

    @extend_schema(
        responses=inline_serializer(
            "KeepAnswer",
            {"orders": serializers.ListField(child=serializers.UUIDField())},
        )
    )
    @action(detail=True, methods=["get"])
    def keep(self, request, pk=None):
        """Orders whose image this worker's host must keep: a download or a copy
        of them is still to be done there. The downloader deletes the others."""
        worker = self.get_object()
        orders = Task.objects.filter(
            host=worker.host,
            kind__in=[TaskKind.DOWNLOAD, TaskKind.WRITE],
            status__in=TaskStatus.ACTIVE,
        ).values_list("order_id", flat=True)
        return Response({"orders": sorted({str(order) for order in orders})})

    @extend_schema(request=s.SlotReportSerializer, responses=s.SlotSerializer)
    @action(detail=True, methods=["post"], url_path=r"slots/(?P<slot_name>[\w.-]+)")
    def slot(self, request, pk=None, slot_name=None):
        worker = self.get_object()
        body = s.SlotReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        slot = worker_services.report_slot(
            worker=worker, name=slot_name, **body.validated_data
        )
        return Response(s.SlotSerializer(slot).data)


class TaskViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Workers see the tasks they hold and act on them with their lease; managers
    see every task and ask why one is not running."""

    def get_permissions(self):
        if self.action == "diagnose":
            return [IsStaff()]
        if self.action in {"list", "retrieve", "download_info"}:
            return [IsWorkerOrStaff()]
        return [IsWorker()]

    def get_serializer_class(self):
        return s.TaskDetailSerializer if self.action == "retrieve" else s.TaskSerializer

    def get_queryset(self):
        queryset = Task.objects.prefetch_related("order", "worker", "image__warehouse")
        user = self.request.user
        if user.role not in Role.staff():
            queryset = queryset.filter(worker__account=user, status__in=TaskStatus.HELD)
        params = self.request.query_params
        for field, choices in (("status", TaskStatus), ("kind", TaskKind)):
            value = params.get(field)
            if value:
                if value not in choices.values:
                    known = ", ".join(choices.values)
                    raise serializers.ValidationError({field: f"Use one of: {known}."})
                queryset = queryset.filter(**{field: value})
        if params.get("order"):
            queryset = queryset.filter(order_id=params["order"])
        return queryset.order_by("created_at")

    def held_task(self, pk) -> Task:
        """A task the caller's workers hold; any other is 404 (not theirs to see)."""
        task = get_object_or_404(Task, pk=pk, status__in=TaskStatus.HELD)
        if task.worker is None or task.worker.account_id != self.request.user.pk:
            raise Http404
        return task

    def leased_task(self, pk) -> Task:
        """A task of a kind the caller works on. Whether it may change it is the
        lease's business: a lost lease answers 409, so the worker knows to stop."""
        kinds = {
            Role.CREATOR: [TaskKind.CREATE],
            Role.DOWNLOADER: [TaskKind.DOWNLOAD],
            Role.WRITER: [TaskKind.DOWNLOAD, TaskKind.WRITE],
        }[self.request.user.role]
        # Plain lookups by id on this hot path: on MongoDB select_related
        # joins the whole collection before filtering.
        return get_object_or_404(Task, pk=pk, kind__in=kinds)

    def lease_holder(self, task) -> Worker:
        """The caller's worker that holds ``task``; otherwise the lease is lost
        for this caller, whatever lease id it sends."""
        if task.worker is not None and task.worker.account_id == self.request.user.pk:
            return task.worker
        raise leases.lease_lost(task)

    @extend_schema(request=s.ClaimSerializer, responses=ClaimAnswer)
    @action(detail=False, methods=["post"])
    def claim(self, request):
        body = s.ClaimSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        worker = data.pop("worker")
        worker_services.heartbeat(worker=worker)
        result = claims.claim_task(
            worker=worker,
            free_disk=data.get("free_disk"),
            slot_name=data.get("slot", ""),
            card_capacity=data.get("card_capacity"),
            card_serial=data.get("card_serial", ""),
        )
        # The claim's conditional update made this worker the holder, and the task
        # in hand carries what it wrote plus its order and warehouse: reading
        # them again would add four queries to the busiest endpoint.
        task = result.task
        return Response(
            {
                "task": s.WorkTaskSerializer(task).data if task else None,
                "reason": result.reason,
                "code": result.code,
            }
        )

    @extend_schema(request=s.RenewSerializer, responses=s.LeaseSerializer)
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        task = self.leased_task(pk)
        body = s.RenewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task = leases.renew(
            task=task,
            lease_id=data["lease_id"],
            worker=self.lease_holder(task),
            phase=data.get("phase"),
            percent=data.get("percent"),
        )
        return Response(s.LeaseSerializer(task).data)

    @extend_schema(request=s.EventSerializer, responses=EventAnswer)
    @action(detail=True, methods=["post"])
    def events(self, request, pk=None):
        task = self.leased_task(pk)
        body = s.EventSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        task, duplicate = leases.report_event(
            task=task,
            lease_id=data.pop("lease_id"),
            worker=self.lease_holder(task),
            event_id=data.pop("event_id"),
            type=data.pop("type"),
            **data,
        )
        return Response({"task": s.TaskSerializer(task).data, "duplicate": duplicate})

    @extend_schema(request=s.LogSerializer, responses=EventAnswer)
    @action(detail=True, methods=["post"])
    def log(self, request, pk=None):
        task = self.leased_task(pk)
        body = s.LogSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task, duplicate = leases.report_event(
            task=task,
            lease_id=data["lease_id"],
            worker=self.lease_holder(task),
            event_id=data.get("event_id") or uuid4(),
            type="log",
            text=data["text"],
        )
        return Response({"task": s.TaskSerializer(task).data, "duplicate": duplicate})

    @extend_schema(request=s.DeclareImageSerializer, responses=s.ImageSerializer)
    @action(detail=True, methods=["post"])
    def image(self, request, pk=None):
        task = self.leased_task(pk)
        self.lease_holder(task)
        body = s.DeclareImageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        image = images.declare_image(task=task, **body.validated_data)
        return Response(s.ImageSerializer(image).data)

    @extend_schema(responses=s.ImageSerializer)
    @action(detail=True, methods=["get"], url_path="download-info")
    def download_info(self, request, pk=None):
        """Where to fetch the task's image: held download or write tasks, or any
        task for managers."""
        if request.user.role in Role.staff():
            task = get_object_or_404(Task, pk=pk)
        else:
            task = self.held_task(pk)
        if task.image is None:
            raise serializers.ValidationError({"task": "This task has no image yet."})
        data = s.ImageSerializer(task.image).data
        data["ftp_url"] = task.image.warehouse.ftp_url
        return Response(data)

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path=r"branding/(?P<which>logo|favicon)")
    def branding(self, request, pk=None, which=None):
        """A branding image of the order being built, for the creator holding it."""
        task = self.held_task(pk)
        name = (task.order.config.get("branding") or {}).get(which)
        if task.kind != TaskKind.CREATE or not name or not default_storage.exists(name):
            raise Http404
        return FileResponse(default_storage.open(name), as_attachment=True)

    @extend_schema(responses=s.DiagnosisSerializer)
    @action(detail=True, methods=["get"])
    def diagnose(self, request, pk=None):
        task = get_object_or_404(Task, pk=pk)
        return Response(s.DiagnosisSerializer(diagnose(task)).data)


class SlotViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.SlotSerializer
    permission_classes = (IsStaff,)
    queryset = Slot.objects.prefetch_related("worker").order_by("name")


class WarehouseViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Managers and workers list warehouses (a writer host's ``whost doctor``
    checks it can log in to them); a warehouse reports itself and what it
    received."""

    serializer_class = s.WarehouseSerializer
    queryset = Warehouse.objects.all()

    def get_permissions(self):
        return [IsWorkerOrStaff()] if self.action == "list" else [IsWarehouse()]

    def own(self, name: str) -> Warehouse:
        warehouse = Warehouse.objects.filter(name=name).first()
        if warehouse is not None and warehouse.account_id != self.request.user.pk:
            raise PermissionDenied("This warehouse belongs to another account.")
        return warehouse

    def mine(self) -> Warehouse:
        warehouse = Warehouse.objects.filter(account=self.request.user).first()
        if warehouse is None:
            raise serializers.ValidationError(
                {"warehouse": "Send a heartbeat first: this account has no warehouse."}
            )
        return warehouse

    @extend_schema(
        request=s.WarehouseHeartbeatSerializer, responses=s.WarehouseSerializer
    )
    @action(detail=False, methods=["post"])
    def heartbeat(self, request):
        from django.utils import timezone

        body = s.WarehouseHeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        warehouse = self.own(data["name"])
        fields = {**data, "last_seen": timezone.now(), "account": request.user}
        if warehouse is None:
            warehouse = Warehouse.objects.create(**fields)
        else:
            Warehouse.objects.filter(pk=warehouse.pk).update(**fields)
            warehouse.refresh_from_db()
        return Response(s.WarehouseSerializer(warehouse).data)

    @extend_schema(request=s.ReceivedSerializer, responses=s.ImageSerializer)
    @action(detail=False, methods=["post"])
    def received(self, request):
        body = s.ReceivedSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        image = images.warehouse_received(warehouse=self.mine(), **body.validated_data)
        return Response(s.ImageSerializer(image).data)

    @extend_schema(responses=s.ImageSerializer(many=True))
    @action(detail=False, methods=["get"])
    def deletions(self, request):
        queryset = images.deletable(self.mine())[:500]
        return Response(s.ImageSerializer(queryset, many=True).data)

    @extend_schema(request=None, responses=s.ImageSerializer)
    @action(
        detail=False,
        methods=["post"],
        url_path=r"deletions/(?P<image_id>[0-9a-f-]{36})",
    )
    def deleted(self, request, image_id=None):
        image = images.mark_deleted(warehouse=self.mine(), image_id=image_id)
        return Response(s.ImageSerializer(image).data)
