import json

import yaml
from django.db.models import Prefetch
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, renderers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.accounts.permissions import IsStaff, has_role
from apps.orders import links, pipeline
from apps.orders.api.serializers import (
    CancelSerializer,
    ConfigurationSerializer,
    DownloadLinkSerializer,
    OrderDetailSerializer,
    OrderSerializer,
    ShipSerializer,
)
from apps.orders.cards import smallest_card_gb
from apps.orders.models import Configuration, Order, OrderEvent, OrderStatus
from apps.scheduler.models import Task

# People who design hotspots and order cards; workers and the warehouse may not.
IsCustomer = has_role(Role.CLIENT, *Role.staff())
#: The hotspot's passwords are in a recipe: no cache may keep one.
NO_STORE = {"Cache-Control": "no-store"}
RecipePreview = inline_serializer(
    "RecipePreview",
    {
        "recipe": serializers.CharField(help_text="image-creator's YAML"),
        "image_bytes": serializers.IntegerField(),
        "min_card_size_gb": serializers.IntegerField(allow_null=True),
    },
)


class YAMLRenderer(renderers.BaseRenderer):
    """A recipe as the YAML text it is (errors as YAML too)."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str):
            return data.encode()
        # Errors: DRF's ErrorDetail strings become plain ones on the way.
        plain = json.loads(json.dumps(data, default=str))
        return yaml.safe_dump(plain, allow_unicode=True).encode()


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

    @extend_schema(responses=RecipePreview)
    @action(detail=True, methods=["get"])
    def recipe(self, request, pk=None):
        """What an order of this configuration would build, rendered now: the
        YAML, its minimum image size and the smallest card it fits on."""
        recipe = self.get_object().render()
        return Response(
            {
                "recipe": recipe.text,
                "image_bytes": recipe.min_size,
                "min_card_size_gb": smallest_card_gb(recipe.min_size),
            },
            headers=NO_STORE,
        )


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
                raise ValidationError(
                    {"status": [_("Use one of: %(known)s.") % {"known": known}]}
                )
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

    @extend_schema(
        responses={
            # The body is a YAML document (a mapping), not a YAML string: a
            # client that parses it, as schemathesis does, gets an object.
            (200, "application/yaml"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="image-creator's YAML, as frozen on the order",
            ),
            (200, "application/json"): inline_serializer(
                "OrderRecipe",
                {
                    "recipe": serializers.CharField(),
                    "image_bytes": serializers.IntegerField(),
                },
            ),
        }
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[YAMLRenderer, renderers.JSONRenderer],
    )
    def recipe(self, request, pk=None):
        """The image-creator YAML frozen on the order when it was placed: what its
        image is built from (``python -m workers.creator build`` takes it as is).
        YAML by default; ``Accept: application/json`` gives it inside JSON."""
        order = self.get_object()
        if not order.recipe:
            raise NotFound(_("This order was placed before recipes were kept."))
        if request.accepted_renderer.format == "json":
            return Response(
                {"recipe": order.recipe, "image_bytes": order.image_bytes},
                headers=NO_STORE,
            )
        name = f"order-{order.pk}.yaml"
        headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'}
        return Response(order.recipe, headers=headers)

    @extend_schema(
        responses={
            200: DownloadLinkSerializer,
            409: OpenApiResponse(
                description="No link: not a download order (not_a_download_order), "
                "not built or over (not_ready), or the warehouse serves no "
                "downloads (no_download_server)."
            ),
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """Fresh links to a built download order's image and block map, served by
        the warehouse over HTTP(S) to whoever has them (no account), resumable,
        until ``expires_at`` (``DOWNLOAD_LINK_HOURS``, at most the order's
        retention). For the order's owner and staff; a new pair at each call."""
        link = links.download_link(self.get_object(), user=request.user)
        return Response(DownloadLinkSerializer(link.as_dict()).data, headers=NO_STORE)

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
