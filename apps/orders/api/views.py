from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.accounts.permissions import IsStaff, has_role
from apps.orders import pipeline
from apps.orders.api.serializers import (
    CancelSerializer,
    ConfigurationSerializer,
    OrderDetailSerializer,
    OrderSerializer,
    ShipSerializer,
)
from apps.orders.models import Configuration, Order, OrderEvent, OrderStatus
from apps.scheduler.models import Task

# People who design hotspots and order cards; workers and the warehouse may not.
IsCustomer = has_role(Role.CLIENT, *Role.staff())


class OwnerMayChange(BasePermission):
    """Everyone who sees a configuration may read it; only its owner changes or
    deletes it (operators read clients' configurations, they do not edit them)."""

    message = "Only the owner of this configuration may change or delete it."

    def has_object_permission(self, request, view, obj):
        return request.method in SAFE_METHODS or obj.owner_id == request.user.pk


class ConfigurationViewSet(viewsets.ModelViewSet):
    serializer_class = ConfigurationSerializer
    permission_classes = (IsCustomer, OwnerMayChange)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        # prefetch, not select_related: on MongoDB a join runs over the whole
        # collection before the filter and the page limit (DESIGN 3).
        return Configuration.objects.visible_to(self.request.user).prefetch_related(
            "owner"
        )

    def perform_create(self, serializer):
        serializer.save(owner=self.request.user)


class OrderViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Orders: placed by clients, followed by everyone, shipped by managers.

    Status never changes by PATCH: cancel and ship are actions (DESIGN 2).
    """

    permission_classes = (IsCustomer,)

    def get_queryset(self):
        queryset = Order.objects.visible_to(self.request.user).prefetch_related(
            "owner", "image__warehouse"
        )
        status = self.request.query_params.get("status")
        if status:
            if status not in OrderStatus.values:
                known = ", ".join(OrderStatus.values)
                raise ValidationError({"status": [f"Use one of: {known}."]})
            queryset = queryset.filter(status=status)
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("events", OrderEvent.objects.prefetch_related("actor")),
                Prefetch("tasks", Task.objects.order_by("kind", "copy_number")),
            )
        return queryset

    def get_serializer_class(self):
        if self.action == "retrieve":
            return OrderDetailSerializer
        return OrderSerializer

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        order = pipeline.place_order(owner=self.request.user, **data)
        serializer.instance = order

    @extend_schema(request=CancelSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        order = self.get_object()
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        pipeline.cancel_order(
            order=order,
            actor=request.user,
            reason=body.validated_data.get("reason", ""),
        )
        return Response(OrderSerializer(order, context={"request": request}).data)

    @extend_schema(request=ShipSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def ship(self, request, pk=None):
        order = self.get_object()
        body = ShipSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        pipeline.ship_order(
            order=order,
            actor=request.user,
            carrier=body.validated_data.get("carrier", ""),
            tracking=body.validated_data.get("tracking", ""),
        )
        return Response(OrderSerializer(order, context={"request": request}).data)
