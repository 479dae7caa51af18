"""Users are managed in Django admin."""

from django.contrib.auth import get_user_model
from django.test import TestCase
from django.urls import reverse

from apps.accounts.models import Role
from apps.accounts.testing import PASSWORD, make_user

User = get_user_model()


class UserAdminTests(TestCase):
    def setUp(self):
        self.admin = make_user(Role.ADMIN)
        self.client.force_login(self.admin)

    def test_the_user_pages_render(self):
        target = make_user(Role.WRITER)
        for url in (
            reverse("admin:accounts_user_changelist"),
            reverse("admin:accounts_user_add"),
            reverse("admin:accounts_user_change", args=[target.pk]),
            reverse("admin:accounts_revokedtoken_changelist"),
        ):
            with self.subTest(url):
                self.assertEqual(self.client.get(url).status_code, 200)

    def test_an_admin_adds_a_worker_account_with_a_role(self):
        response = self.client.post(
            reverse("admin:accounts_user_add"),
            {
                "username": "writer-host-1",
                "role": "writer",
                "email": "",
                "usable_password": "true",
                "password1": PASSWORD,
                "password2": PASSWORD,
            },
        )
        self.assertEqual(response.status_code, 302, response.content[:2000])
        user = User.objects.get(username="writer-host-1")
        self.assertEqual(user.role, "writer")
        self.assertTrue(user.check_password(PASSWORD))
        self.assertFalse(user.is_staff)

    def test_a_client_cannot_enter_admin(self):
        self.client.force_login(make_user(Role.CLIENT))
        response = self.client.get(reverse("admin:index"))
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("admin:login"), response["Location"])
