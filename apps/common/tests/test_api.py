"""Health, schema and documentation endpoints."""

from django.test import TestCase, override_settings
from django.urls import reverse


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


class BackendTests(TestCase):
    def test_the_suite_runs_on_the_backend_it_was_asked_for(self):
        import os

        from django.db import connection

        expected = {"sqlite": "sqlite", "postgres": "postgresql", "mongodb": "mongodb"}
        wanted = os.environ.get("IMAGER_TEST_DB", "sqlite")
        self.assertEqual(connection.vendor, expected[wanted])
