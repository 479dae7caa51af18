from uuid import uuid4

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.permissions import IsStaff
from apps.orders.models import Order
from apps.scheduler.api.permissions import (
    HoldsTask,
    IsWarehouse,
    IsWorker,
    IsWorkerOrStaff,
)
from apps.scheduler.api.serializers import (
    ClaimSerializer,
    DeclareImageSerializer,
    DiagnosisSerializer,
    EventSerializer,
    HeartbeatSerializer,
    ImageSerializer,
    LeaseSerializer,
    LogSerializer,
    ReceivedSerializer,
    RegisterSerializer,
    RenewSerializer,
    SlotReportSerializer,
    SlotSerializer,
    TaskDetailSerializer,
    TaskSerializer,
    WarehouseHeartbeatSerializer,
    WarehouseSerializer,
    WorkerSerializer,
    WorkTaskSerializer,
)
from apps.scheduler.models import (
    Slot,
    Task,
    TaskKind,
    TaskStatus,
    Warehouse,
    Worker,
    task_kinds_of_role,
)
from apps.scheduler.services import claims, images, leases
from apps.scheduler.services import workers as worker_services
from apps.scheduler.services.diagnose import diagnose

ClaimAnswer = inline_serializer(
    "ClaimAnswer",
    {
        "task": WorkTaskSerializer(allow_null=True),
        "reason": serializers.CharField(),
        "code": serializers.CharField(),
    },
)
EventAnswer = inline_serializer(
    "EventAnswer",
    {"task": TaskSerializer(), "duplicate": serializers.BooleanField()},
)


class WorkerViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Workers register and report here; managers list them."""

    serializer_class = WorkerSerializer

    def get_permissions(self):
        if self.action in {"list", "retrieve"}:
            return [IsWorkerOrStaff()]
        return [IsWorker()]

    def get_queryset(self):
        # prefetch, not select_related: on MongoDB a join runs over the whole
        # collection before the filter and the page limit (DESIGN 3).
        return Worker.objects.visible_to(self.request.user).prefetch_related(
            "account", "slots"
        )

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        shown = [worker.pk for worker in (queryset if page is None else page)]
        self.online_ids = set(
            Worker.objects.filter(pk__in=shown).online().values_list("pk", flat=True)
        )
        return page

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["online_ids"] = getattr(self, "online_ids", None)
        return context

    @extend_schema(request=RegisterSerializer, responses=WorkerSerializer)
    @action(detail=False, methods=["post"])
    def register(self, request):
        body = RegisterSerializer(data=request.data)
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
        return Response(WorkerSerializer(worker).data)

    @extend_schema(request=HeartbeatSerializer, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        worker = self.get_object()
        body = HeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = worker_services.heartbeat(
            worker_id=worker.pk, capabilities=body.validated_data.get("capabilities")
        )
        for key, value in changed.items():
            setattr(worker, key, value)
        return Response(WorkerSerializer(worker).data)

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

    @extend_schema(request=SlotReportSerializer, responses=SlotSerializer)
    @action(detail=True, methods=["post"], url_path=r"slots/(?P<slot_name>[\w.-]+)")
    def slot(self, request, pk=None, slot_name=None):
        worker = self.get_object()
        body = SlotReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        slot = worker_services.report_slot(
            worker=worker, name=slot_name, **body.validated_data
        )
        return Response(SlotSerializer(slot).data)


class TaskViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Workers see the tasks they hold and act on them with their lease; managers
    see every task and ask why one is not running."""

    def get_permissions(self):
        if self.action == "diagnose":
            return [IsStaff()]
        if self.action in {"list", "retrieve", "download_info"}:
            return [IsWorkerOrStaff(), HoldsTask()]
        return [IsWorker(), HoldsTask()]

    @property
    def reads(self) -> bool:
        """Whether this action reads a task rather than acting under its lease."""
        return self.action in {"list", "retrieve", "download_info", "recipe"}

    def not_held(self, task):
        """How ``HoldsTask`` refuses: reading a task that is not the caller's is
        a 404; acting under a lease that is not its own, a lost lease (409: stop)."""
        return Http404() if self.reads else leases.lease_lost(task)

    def get_serializer_class(self):
        return TaskDetailSerializer if self.action == "retrieve" else TaskSerializer

    def get_queryset(self):
        queryset = Task.objects.visible_to(self.request.user).prefetch_related(
            "order", "worker", "image__warehouse"
        )
        params = self.request.query_params
        for field, choices in (("status", TaskStatus), ("kind", TaskKind)):
            value = params.get(field)
            if value:
                if value not in choices.values:
                    known = ", ".join(choices.values)
                    raise serializers.ValidationError(
                        {field: _("Use one of: %(known)s.") % {"known": known}}
                    )
                queryset = queryset.filter(**{field: value})
        if params.get("order"):
            queryset = queryset.filter(order_id=params["order"])
        return queryset.order_by("created_at")

    def task(self, pk) -> Task:
        """The task ``pk``, if it is of a kind the caller works on (404 otherwise),
        checked by ``HoldsTask``. Whether the caller may change it is its lease's
        business: a lost lease answers 409, so the worker knows to stop."""
        kinds = (
            TaskKind.values
            if self.request.user.role in IsStaff.roles
            else task_kinds_of_role(self.request.user.role)
        )
        # A plain lookup by id on this hot path (on MongoDB select_related joins
        # the whole collection before filtering), without the large fields a
        # lease holder never sends back (a log event reads its tail itself).
        queryset = Task.objects.defer("work", "log_tail")
        task = get_object_or_404(queryset, pk=pk, kind__in=kinds)
        self.check_object_permissions(self.request, task)
        return task

    @extend_schema(request=ClaimSerializer, responses=ClaimAnswer)
    @action(detail=False, methods=["post"])
    def claim(self, request):
        body = ClaimSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = claims.claim_task(
            worker=data["worker"],
            free_disk=data.get("free_disk"),
            slot_name=data.get("slot", ""),
            card_capacity=data.get("card_capacity"),
            card_serial=data.get("card_serial", ""),
        )
        # The claim's conditional update made this worker the holder, and the task
        # in hand carries what it wrote and the work to do: nothing is read again.
        task = result.task
        return Response(
            {
                "task": WorkTaskSerializer(task).data if task else None,
                "reason": result.reason,
                "code": result.code,
            }
        )

    @extend_schema(request=RenewSerializer, responses=LeaseSerializer)
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        task = self.task(pk)
        body = RenewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task = leases.renew(
            task=task,
            lease_id=data["lease_id"],
            phase=data.get("phase"),
            percent=data.get("percent"),
        )
        return Response(LeaseSerializer(task).data)

    @extend_schema(request=EventSerializer, responses=EventAnswer)
    @action(detail=True, methods=["post"])
    def events(self, request, pk=None):
        task = self.task(pk)
        body = EventSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        task, duplicate = leases.report_event(
            task=task,
            lease_id=data.pop("lease_id"),
            event_id=data.pop("event_id"),
            type=data.pop("type"),
            **data,
        )
        return Response({"task": TaskSerializer(task).data, "duplicate": duplicate})

    @extend_schema(request=LogSerializer, responses=EventAnswer)
    @action(detail=True, methods=["post"])
    def log(self, request, pk=None):
        task = self.task(pk)
        body = LogSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task, duplicate = leases.report_event(
            task=task,
            lease_id=data["lease_id"],
            event_id=data.get("event_id") or uuid4(),
            type="log",
            text=data["text"],
        )
        return Response({"task": TaskSerializer(task).data, "duplicate": duplicate})

    @extend_schema(request=DeclareImageSerializer, responses=ImageSerializer)
    @action(detail=True, methods=["post"])
    def image(self, request, pk=None):
        task = self.task(pk)
        body = DeclareImageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        image = images.declare_image(task=task, **body.validated_data)
        return Response(ImageSerializer(image).data)

    @extend_schema(responses=ImageSerializer)
    @action(detail=True, methods=["get"], url_path="download-info")
    def download_info(self, request, pk=None):
        """Where to fetch the task's image: held download or write tasks, or any
        task for managers."""
        task = self.task(pk)
        if task.image is None:
            raise serializers.ValidationError(
                {"task": _("This task has no image yet.")}
            )
        data = ImageSerializer(task.image).data
        data["ftp_url"] = task.image.warehouse.ftp_url
        return Response(data)

    @extend_schema(
        responses=inline_serializer(
            "TaskRecipe",
            {"recipe": serializers.CharField(help_text="image-creator's YAML")},
        )
    )
    @action(detail=True, methods=["get"])
    def recipe(self, request, pk=None):
        """The recipe of the order being built, for the creator holding the task:
        it holds the hotspot's passwords, so no cache keeps it."""
        task = self.task(pk)
        if task.kind != TaskKind.CREATE:
            raise Http404
        text = Order.objects.values_list("recipe", flat=True).get(pk=task.order_id)
        return Response({"recipe": text}, headers={"Cache-Control": "no-store"})

    @extend_schema(responses=DiagnosisSerializer)
    @action(detail=True, methods=["get"])
    def diagnose(self, request, pk=None):
        task = get_object_or_404(Task, pk=pk)
        return Response(DiagnosisSerializer(diagnose(task)).data)


class SlotViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = SlotSerializer
    permission_classes = (IsStaff,)
    queryset = Slot.objects.prefetch_related("worker").order_by("name")


class WarehouseViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Managers and workers list warehouses (a writer host's ``whost doctor``
    checks it can log in to them); a warehouse reports itself and what it
    received."""

    serializer_class = WarehouseSerializer
    queryset = Warehouse.objects.all()

    def get_permissions(self):
        return [IsWorkerOrStaff()] if self.action == "list" else [IsWarehouse()]

    def mine(self) -> Warehouse:
        warehouse = Warehouse.objects.filter(account=self.request.user).first()
        if warehouse is None:
            raise serializers.ValidationError(
                {
                    "warehouse": _(
                        "Send a heartbeat first: this account has no warehouse."
                    )
                }
            )
        return warehouse

    @extend_schema(request=WarehouseHeartbeatSerializer, responses=WarehouseSerializer)
    @action(detail=False, methods=["post"])
    def heartbeat(self, request):
        body = WarehouseHeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        warehouse = worker_services.warehouse_heartbeat(
            account=request.user, **body.validated_data
        )
        return Response(WarehouseSerializer(warehouse).data)

    @extend_schema(request=ReceivedSerializer, responses=ImageSerializer)
    @action(detail=False, methods=["post"])
    def received(self, request):
        body = ReceivedSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        image = images.warehouse_received(warehouse=self.mine(), **body.validated_data)
        return Response(ImageSerializer(image).data)

    @extend_schema(responses=ImageSerializer(many=True))
    # A plain list of at most 500, never a page: without this the schema would
    # describe the viewset's pagination, which this answer has never had.
    @action(detail=False, methods=["get"], pagination_class=None)
    def deletions(self, request):
        queryset = images.deletable(self.mine())[:500]
        return Response(ImageSerializer(queryset, many=True).data)

    @extend_schema(request=None, responses=ImageSerializer)
    @action(
        detail=False,
        methods=["post"],
        url_path=r"deletions/(?P<image_id>[0-9a-f-]{36})",
    )
    def deleted(self, request, image_id=None):
        image = images.mark_deleted(warehouse=self.mine(), image_id=image_id)
        return Response(ImageSerializer(image).data)
