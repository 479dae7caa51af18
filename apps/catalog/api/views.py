import re

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Role
from apps.accounts.permissions import IsStaff, has_role
from apps.catalog.api.serializers import (
    EntrySerializer,
    PackageSerializer,
    SourceSerializer,
)
from apps.catalog.models import CatalogSource, Entry
from apps.catalog.packages import offspot_packages

# People who choose content for hotspots; workers and the warehouse have no use.
IsCustomer = has_role(Role.CLIENT, *Role.staff())
LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _query(request, name: str, longest: int) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > longest:
        raise ValidationError({name: [_("At most %(n)d characters.") % {"n": longest}]})
    # PostgreSQL cannot take a NUL in a query's text: a 400, not its 500.
    if "\x00" in value:
        # xgettext:no-python-format
        raise ValidationError({name: [_("Remove the NUL character (%00).")]})
    return value


@extend_schema(
    parameters=[
        OpenApiParameter("search", str, description="Words of title or summary."),
        OpenApiParameter("language", str, description="ISO 639-3 or 639-1 code."),
        OpenApiParameter("category", str, description="Kiwix category."),
    ]
)
class EntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The ZIM files of the catalog. The list holds the entries their source still
    lists; an entry by id is found even when removed (a configuration may name it).
    """

    serializer_class = EntrySerializer
    permission_classes = (IsCustomer,)

    def get_queryset(self):
        if self.action != "list":
            return Entry.objects.all()
        language = _query(self.request, "language", 20).lower()
        if language and not LANGUAGE.match(language):
            raise ValidationError(
                {"language": [_("Use an ISO 639-3 (fra) or 639-1 (fr) code.")]}
            )
        return Entry.objects.search(
            _query(self.request, "search", 200),
            language=language,
            category=_query(self.request, "category", 100),
        )


class SourceViewSet(viewsets.ReadOnlyModelViewSet):
    """The OPDS catalogs and how their last refreshes went (staff)."""

    serializer_class = SourceSerializer
    permission_classes = (IsStaff,)
    queryset = CatalogSource.objects.all()


class PackageView(APIView):
    """offspot-config's own app and files packages, offered beside the ZIMs."""

    permission_classes = (IsCustomer,)

    @extend_schema(responses=PackageSerializer(many=True))
    def get(self, request):
        return Response(PackageSerializer(offspot_packages(), many=True).data)
