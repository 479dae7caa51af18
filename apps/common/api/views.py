import logging

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

log = logging.getLogger(__name__)


def check_database() -> dict:
    try:
        # A real query, not just a connect: it also proves the tables exist.
        get_user_model().objects.only("pk").first()
    except Exception as exc:
        log.warning("health: database unreachable: %s", exc)
        return {"ok": False, "vendor": connection.vendor, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"ok": True, "configured": False}
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
    except redis.RedisError as exc:
        log.warning("health: redis unreachable: %s", exc)
        return {"ok": False, "configured": True, "error": type(exc).__name__}
    return {"ok": True, "configured": True}


class HealthView(APIView):
    """200 when the database and Redis answer, 503 naming the part that does not."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        summary="Health of the database and Redis",
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                {
                    "status": serializers.CharField(),
                    "failing": serializers.ListField(child=serializers.CharField()),
                    "database": serializers.DictField(),
                    "redis": serializers.DictField(),
                },
            )
        },
    )
    def get(self, request):
        parts = {"database": check_database(), "redis": check_redis()}
        failing = [name for name, part in parts.items() if not part["ok"]]
        body = {"status": "unhealthy" if failing else "ok", "failing": failing, **parts}
        return Response(body, status=503 if failing else 200)
