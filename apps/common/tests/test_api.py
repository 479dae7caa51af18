"""Health, schema and documentation endpoints."""

import re

from django.contrib.staticfiles import finders
from django.db import OperationalError
from django.test import TestCase, override_settings
from django.urls import reverse
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView


class HealthTests(TestCase):
    def test_health_is_200_when_database_and_redis_answer(self):
        response = self.client.get(reverse("v1:health"))
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["failing"], [])
        self.assertTrue(body["database"]["ok"])
        self.assertTrue(body["redis"]["configured"])

    @override_settings(REDIS_URL="redis://127.0.0.1:1/0")
    def test_health_is_503_naming_redis_when_redis_is_down(self):
        response = self.client.get(reverse("v1:health"))
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["failing"], ["redis"])
        self.assertTrue(response.json()["database"]["ok"])


class SchemaTests(TestCase):
    def test_the_openapi_schema_lists_the_auth_endpoints(self):
        response = self.client.get(reverse("schema"), {"format": "json"})
        self.assertEqual(response.status_code, 200)
        paths = response.json()["paths"]
        for path in (
            "/api/v1/auth/token/",
            "/api/v1/auth/token/refresh/",
            "/api/v1/auth/logout/",
            "/api/v1/auth/jwks/",
            "/api/v1/users/me/",
            "/api/v1/health/",
        ):
            self.assertIn(path, paths)

    def test_swagger_ui_and_the_browsable_api_root_render(self):
        self.assertEqual(self.client.get(reverse("docs")).status_code, 200)
        response = self.client.get(reverse("v1:api-root"), HTTP_ACCEPT="text/html")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "/api/v1/users/")


class LocalDocumentationTests(TestCase):
    """Swagger UI and ReDoc come from drf-spectacular-sidecar's static files: an
    operator's browser loads nothing from a CDN or a font service."""

    def assert_only_local_files(self, name):
        response = self.client.get(reverse(name))
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        loaded = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertTrue(loaded)
        for address in loaded:
            self.assertTrue(
                address.startswith("/static/drf_spectacular_sidecar/"), address
            )
        self.assertNotRegex(html, r"https?://")
        return html

    def test_swagger_ui_loads_its_files_from_this_site_only(self):
        html = self.assert_only_local_files("docs")
        self.assertIn("swagger-ui-bundle.js", html)

    def test_redoc_loads_its_files_from_this_site_only(self):
        html = self.assert_only_local_files("redoc")
        self.assertIn("redoc.standalone.js", html)
        self.assertIn(reverse("schema"), html)

    def test_the_sidecar_files_the_pages_name_exist(self):
        for name in (
            "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
            "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
            "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
        ):
            self.assertIsNotNone(finders.find(name), name)


class BackendTests(TestCase):
    def test_the_suite_runs_on_the_backend_it_was_asked_for(self):
        import os

        from django.db import connection

        expected = {"sqlite": "sqlite", "postgres": "postgresql", "mongodb": "mongodb"}
        wanted = os.environ.get("IMAGER_TEST_DB", "sqlite")
        self.assertEqual(connection.vendor, expected[wanted])


class DatabaseDownTests(TestCase):
    def test_an_unreachable_database_is_a_503_the_workers_retry_not_a_500(self):
        class Broken(APIView):
            authentication_classes = permission_classes = ()

            def get(self, request):
                raise OperationalError("connection refused")

        response = Broken.as_view()(APIRequestFactory().get("/"))
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.data["code"], "database_unavailable")
        self.assertEqual(response["Retry-After"], "5")
