"""Who may reach which account endpoint, throttling and bad input."""

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import TestCase
from django.urls import reverse

from apps.accounts.models import Role
from apps.accounts.testing import PASSWORD, bearer, make_user

User = get_user_model()


class RoleTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.users = {role: make_user(role) for role in Role.values}

    def test_anonymous_callers_get_401_everywhere_but_public_endpoints(self):
        for name in ("v1:user-me", "v1:user-list"):
            with self.subTest(name):
                response = self.client.get(reverse(name))
                self.assertEqual(response.status_code, 401)
                self.assertIn("Bearer", response["WWW-Authenticate"])

    def test_every_role_reads_its_own_account_with_its_role(self):
        for role, user in self.users.items():
            with self.subTest(role):
                response = self.client.get(reverse("v1:user-me"), **bearer(user))
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.json()["role"], role)
                self.assertEqual(response.json()["id"], str(user.pk))

    def test_only_admins_and_managers_list_accounts(self):
        allowed = {Role.ADMIN, Role.MANAGER}
        for role, user in self.users.items():
            with self.subTest(role):
                response = self.client.get(reverse("v1:user-list"), **bearer(user))
                self.assertEqual(response.status_code, 200 if role in allowed else 403)
        response = self.client.get(
            reverse("v1:user-list"), {"role": "writer"}, **bearer(self.users["admin"])
        )
        self.assertEqual([u["role"] for u in response.json()["results"]], ["writer"])

    def test_only_admins_create_accounts(self):
        for role, user in self.users.items():
            with self.subTest(role):
                response = self.client.post(
                    reverse("v1:user-list"),
                    {"username": f"new-{role}", "password": PASSWORD, "role": "writer"},
                    content_type="application/json",
                    **bearer(user),
                )
                created = User.objects.filter(username=f"new-{role}").exists()
                if role == Role.ADMIN:
                    self.assertEqual(response.status_code, 201, response.content)
                    self.assertTrue(created)
                    new = User.objects.get(username="new-admin")
                    self.assertTrue(new.check_password(PASSWORD))
                    self.assertNotIn("password", response.json())
                else:
                    self.assertEqual(response.status_code, 403)
                    self.assertFalse(created)

    def test_a_user_cannot_change_their_own_role(self):
        client = self.users["client"]
        response = self.client.patch(
            reverse("v1:user-me"),
            {"role": "admin", "full_name": "Carol Client"},
            content_type="application/json",
            **bearer(client),
        )
        self.assertEqual(response.status_code, 200)
        client.refresh_from_db()
        self.assertEqual(client.role, "client")
        self.assertEqual(client.full_name, "Carol Client")

    def test_admin_access_follows_the_role(self):
        self.assertTrue(self.users["admin"].is_superuser)
        self.assertTrue(self.users["manager"].is_staff)
        self.assertFalse(self.users["manager"].is_superuser)
        self.assertFalse(self.users["writer"].is_staff)


class BadInputTests(TestCase):
    def setUp(self):
        cache.clear()
        self.admin = make_user(Role.ADMIN)

    def test_bad_json_answers_400_with_a_message(self):
        response = self.client.post(
            reverse("v1:token-obtain"), "{not json", content_type="application/json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("JSON parse error", response.json()["detail"])

    def test_missing_fields_answer_400_naming_each_field(self):
        response = self.client.post(
            reverse("v1:token-obtain"), {}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(set(response.json()), {"username", "password"})
        response = self.client.post(
            reverse("v1:token-refresh"), {}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("refresh", response.json())

    def test_a_wrong_password_answers_401_and_issues_nothing(self):
        response = self.client.post(
            reverse("v1:token-obtain"),
            {"username": self.admin.username, "password": "wrong"},
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 401)
        self.assertNotIn("access", response.json())

    def test_a_weak_password_or_unknown_role_is_refused_with_field_messages(self):
        response = self.client.post(
            reverse("v1:user-list"),
            {"username": "weak", "password": "123", "role": "pilot"},
            content_type="application/json",
            **bearer(self.admin),
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("role", response.json())
        self.assertFalse(User.objects.filter(username="weak").exists())
        response = self.client.post(
            reverse("v1:user-list"),
            {"username": "weak", "password": "123", "role": "client"},
            content_type="application/json",
            **bearer(self.admin),
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("password", response.json())
        self.assertFalse(User.objects.filter(username="weak").exists())

    def test_an_unknown_role_filter_answers_400(self):
        response = self.client.get(
            reverse("v1:user-list"), {"role": "pilot"}, **bearer(self.admin)
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("role", response.json())


class ThrottleTests(TestCase):
    def setUp(self):
        cache.clear()
        make_user(Role.CLIENT, "dave")

    def test_password_guessing_is_throttled_with_429(self):
        url = reverse("v1:token-obtain")
        guess = {"username": "dave", "password": "guess"}
        codes = [
            self.client.post(url, guess, content_type="application/json").status_code
            for _ in range(10)
        ]
        self.assertEqual(codes, [401] * 10)
        response = self.client.post(
            url, {"username": "dave", "password": PASSWORD}, "application/json"
        )
        self.assertEqual(response.status_code, 429)
        self.assertGreater(int(response["Retry-After"]), 0)
