"""API helpers shared by every app."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.common.errors import Conflict


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` pages of 50 rows, 500 at most: a bigger page would
    make one slow request (and, on SQLite, an IN list too deep to run)."""

    default_limit = 50
    max_limit = 500


def exception_handler(exc, context):
    """DRF's handler, plus model validation errors as 400 with field messages,
    service conflicts as 409 and an unreachable database as 503.

    A ``full_clean`` or a service's ``ValidationError`` is the client's mistake; it
    must never surface as a 500. A database that is down or restarting is no one's
    mistake and passes: 503 tells the workers' client to retry (a 500 would make a
    worker give up a task it finished, and another do it again).
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return Response(
            {
                "detail": "The database is unavailable; try again in a few seconds.",
                "code": "database_unavailable",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, Conflict):
        return Response(
            {"detail": exc.message, "code": exc.code}, status=status.HTTP_409_CONFLICT
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = serializers.ValidationError(detail)
    return drf_exception_handler(exc, context)
