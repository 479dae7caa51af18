"""Accounts for operators: the list (never a password hash), new clients with a
password set or a link sent by e-mail (Django's reset token), which roles each
operator may give, disabling and enabling, and the password e-mail."""

import re
import smtplib

from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode

from apps.accounts.models import Role, User
from apps.accounts.testing import bearer, make_user
from apps.operators.tests.scene import PageTestCase


class RefusingMailServer(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise smtplib.SMTPException("554 refused")


LIST = reverse("ops:users")
NEW = reverse("ops:user-new")
ON_THE_SITE = override_settings(SITE_URL="https://imager.example.org")


def new_client(**fields) -> dict:
    return {
        "username": "school-42",
        "full_name": "École 42",
        "email": "head@school42.org",
        "language": "fr",
        "role": "client",
        "password_mode": "send",
        **fields,
    }


class UserListTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()

    def test_lists_every_account_with_its_role_and_never_a_password_hash(self):
        response = self.client.get(LIST)
        names = {account.username for account in response.context["users"]}
        self.assertTrue({"client", "manager", "admin", "creator"} <= names)
        html = response.content.decode()
        for account in User.objects.all():
            self.assertNotIn(account.password, html)
        self.assertNotIn("md5$", html)
        self.assertNotIn("pbkdf2", html)

    def test_filters_by_role_state_and_words(self):
        make_user(Role.CLIENT, "gone", full_name="Old School", is_active=False)
        cases = {
            "role=client": {"client", "gone"},
            "role=client&active=yes": {"client"},
            "active=no": {"gone"},
            "q=old+school": {"gone"},
        }
        for query, expected in cases.items():
            response = self.client.get(f"{LIST}?{query}")
            names = {account.username for account in response.context["users"]}
            self.assertEqual(names, expected, query)

    def test_a_manager_may_act_on_clients_only_and_never_on_themselves(self):
        response = self.client.get(LIST)
        manageable = {u.username for u in response.context["users"] if u.manageable}
        self.assertEqual(manageable, {"client"})
        self.client.force_login(self.shop.admin)
        response = self.client.get(LIST)
        manageable = {u.username for u in response.context["users"] if u.manageable}
        self.assertIn("manager", manageable)
        self.assertNotIn("admin", manageable)


@ON_THE_SITE
class NewAccountTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()

    def test_a_new_client_gets_a_link_that_lets_them_choose_a_password(self):
        response = self.client.post(NEW, new_client(), follow=True)
        self.assertRedirects(response, LIST)
        account = User.objects.get(username="school-42")
        self.assertEqual(
            (account.role, account.full_name, account.language, account.is_active),
            (Role.CLIENT, "École 42", "fr", True),
        )
        self.assertFalse(account.has_usable_password())
        (message,) = mail.outbox
        self.assertEqual(message.to, ["head@school42.org"])
        self.assertIn("school-42", message.body)
        link = re.search(r"https://imager\.example\.org(/\S+)", message.body).group(1)
        uid, token = link.rstrip("/").split("/")[-2:]
        self.assertEqual(force_str(urlsafe_base64_decode(uid)), str(account.pk))
        self.assertTrue(default_token_generator.check_token(account, token))
        # The password page takes the link (and moves the token out of the URL).
        self.assertEqual(self.client.get(link).status_code, 302)
        self.assertContains(response, "a link to choose a password went to")

    def test_a_password_set_now_is_checked_and_kept_hashed(self):
        response = self.client.post(
            NEW,
            new_client(
                password_mode="set",
                email="",
                password1="chalk-and-slate-91",
                password2="chalk-and-slate-91",
            ),
        )
        self.assertRedirects(response, LIST)
        account = User.objects.get(username="school-42")
        self.assertTrue(account.check_password("chalk-and-slate-91"))
        self.assertNotIn("chalk-and-slate-91", account.password)
        self.assertEqual(mail.outbox, [])

    def test_refusals_name_their_field_and_make_no_account(self):
        make_user(Role.CLIENT, "taken")
        cases = [
            (new_client(username="taken"), "username"),
            (new_client(email=""), "email"),
            (new_client(password_mode="set", password1="", password2=""), "password1"),
            (
                new_client(password_mode="set", password1="x-9-y-8-z", password2="no"),
                "password2",
            ),
            (
                new_client(password_mode="set", password1="1234", password2="1234"),
                "password1",
            ),
            (new_client(role="manager"), "role"),
            (new_client(role="writer"), "role"),
        ]
        for data, field in cases:
            response = self.client.post(NEW, data)
            self.assertEqual(response.status_code, 400, data)
            self.assertIn(field, response.context["form"].errors, data)
        self.assertFalse(User.objects.filter(username="school-42").exists())
        self.assertEqual(mail.outbox, [])

    def test_an_admin_may_make_managers_and_admins_but_no_worker_account(self):
        self.client.force_login(self.shop.admin)
        response = self.client.post(NEW, new_client(username="bob", role="manager"))
        self.assertRedirects(response, LIST)
        self.assertEqual(User.objects.get(username="bob").role, Role.MANAGER)
        self.assertTrue(User.objects.get(username="bob").is_staff)
        response = self.client.post(NEW, new_client(username="host-9", role="writer"))
        self.assertEqual(response.status_code, 400)
        self.assertFalse(User.objects.filter(username="host-9").exists())

    def test_the_form_offers_managers_the_client_role_only(self):
        form = self.client.get(NEW).context["form"]
        self.assertEqual([v for v, _label in form.fields["role"].choices], ["client"])


@ON_THE_SITE
class AccountActionTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()
        self.customer = self.shop.client

    def post(self, name, account, **data):
        return self.client.post(reverse(name, args=[account.pk]), data, follow=True)

    def test_disabling_a_client_refuses_their_tokens_and_enabling_restores_them(self):
        token = bearer(self.customer)
        me = "/api/v1/users/me/"
        self.post("ops:user-active", self.customer, active="no")
        self.assertFalse(User.objects.get(pk=self.customer.pk).is_active)
        self.assertEqual(Client().get(me, **token).status_code, 401)
        response = self.post("ops:user-active", self.customer, active="yes")
        self.assertTrue(User.objects.get(pk=self.customer.pk).is_active)
        self.assertContains(response, "is enabled")
        self.assertEqual(Client().get(me, **token).status_code, 200)

    def test_a_manager_may_not_disable_staff_or_worker_accounts(self):
        for account in (self.shop.admin, self.shop.host_account, self.shop.manager):
            response = self.post("ops:user-active", account, active="no")
            self.assertContains(response, "You may not change the account")
            self.assertTrue(User.objects.get(pk=account.pk).is_active)

    def test_an_admin_may_disable_a_worker_account_but_not_their_own(self):
        self.client.force_login(self.shop.admin)
        self.post("ops:user-active", self.shop.host_account, active="no")
        self.assertFalse(User.objects.get(pk=self.shop.host_account.pk).is_active)
        self.post("ops:user-active", self.shop.admin, active="no")
        self.assertTrue(User.objects.get(pk=self.shop.admin.pk).is_active)

    def test_a_password_link_goes_to_the_client_and_leaves_the_password_alone(self):
        before = User.objects.get(pk=self.customer.pk).password
        response = self.post("ops:user-password", self.customer)
        self.assertContains(response, "went to client@example.org")
        (message,) = mail.outbox
        self.assertEqual(message.to, ["client@example.org"])
        self.assertIn("asked for a new password", message.body)
        self.assertEqual(User.objects.get(pk=self.customer.pk).password, before)

    @override_settings(
        EMAIL_BACKEND="apps.operators.tests.test_users.RefusingMailServer"
    )
    def test_a_mail_server_that_refuses_is_said_and_the_account_is_kept(self):
        response = self.post("ops:user-password", self.customer)
        self.assertContains(response, "could not be sent (554 refused)")
        response = self.client.post(NEW, new_client(), follow=True)
        self.assertContains(response, "could not be sent")
        self.assertTrue(User.objects.filter(username="school-42").exists())

    def test_machine_accounts_and_accounts_without_e_mail_get_no_link(self):
        self.client.force_login(self.shop.admin)
        no_mail = make_user(Role.CLIENT, "no-mail")
        for account in (self.shop.host_account, no_mail):
            response = self.post("ops:user-password", account)
            self.assertContains(response, "create_account")
        self.assertEqual(mail.outbox, [])
