"""The site's login, logout and password pages, and where each role lands."""

import re

from django.core import mail
from django.core.cache import cache
from django.test import Client, TestCase, override_settings

from apps.accounts.models import Role
from apps.accounts.testing import PASSWORD, make_user

LOGIN = "/accounts/login/"
RESET = "/accounts/password_reset/"
SENT = "/accounts/password_reset/done/"
CSRF_TOKEN = re.compile(r'"X-CSRFToken": "\w+"|name="csrfmiddlewaretoken" value="\w+"')


class HomeTests(TestCase):
    def test_anonymous_callers_are_sent_to_log_in(self):
        response = self.client.get("/")
        self.assertRedirects(response, LOGIN + "?next=/")

    def test_clients_land_on_their_orders(self):
        self.client.force_login(make_user(Role.CLIENT))
        self.assertRedirects(self.client.get("/"), "/orders/")

    def test_staff_land_on_the_workshop_board(self):
        for role in (Role.MANAGER, Role.ADMIN):
            with self.subTest(role=role):
                self.client.force_login(make_user(role))
                response = self.client.get("/")
                self.assertRedirects(
                    response, "/ops/board/", fetch_redirect_response=False
                )

    @override_settings(STAFF_HOME_URL="client:configuration_list")
    def test_the_staff_home_is_one_setting(self):
        self.client.force_login(make_user(Role.MANAGER))
        self.assertRedirects(self.client.get("/"), "/configurations/")

    def test_worker_accounts_have_no_pages(self):
        for role in (Role.CREATOR, Role.WRITER, Role.WAREHOUSE):
            with self.subTest(role=role):
                self.client.force_login(make_user(role))
                self.assertEqual(self.client.get("/").status_code, 403)


class LoginTests(TestCase):
    def setUp(self):
        cache.clear()  # django-axes counts failed logins in the cache
        self.user = make_user(Role.CLIENT, "ada", email="ada@example.org")

    def test_the_login_page_logs_in_and_goes_where_it_was_asked(self):
        page = self.client.get(LOGIN + "?next=/configurations/")
        self.assertContains(page, 'data-testid="login-form"')
        self.assertContains(page, 'href="/accounts/password_reset/"')
        response = self.client.post(
            LOGIN,
            {"username": "ada", "password": PASSWORD, "next": "/configurations/"},
        )
        self.assertRedirects(response, "/configurations/")
        self.assertEqual(self.client.session["_auth_user_id"], str(self.user.pk))

    def test_without_next_the_login_lands_on_home(self):
        response = self.client.post(LOGIN, {"username": "ada", "password": PASSWORD})
        self.assertRedirects(response, "/", target_status_code=302)

    def test_a_wrong_password_is_refused_without_saying_which_part_is_wrong(self):
        response = self.client.post(LOGIN, {"username": "ada", "password": "wrong"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "correct username and password")
        self.assertNotIn("_auth_user_id", self.client.session)

    @override_settings(LOGIN_FAILURE_LIMIT=3, AXES_FAILURE_LIMIT=3)
    def test_repeated_wrong_passwords_lock_the_username_out_here_too(self):
        for _attempt in range(3):
            self.client.post(LOGIN, {"username": "ada", "password": "wrong"})
        response = self.client.post(LOGIN, {"username": "ada", "password": PASSWORD})
        self.assertEqual(response.status_code, 429)
        self.assertNotIn("_auth_user_id", self.client.session)

    def test_logging_out_is_a_post_with_the_csrf_token(self):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(self.user)
        self.assertEqual(browser.post("/accounts/logout/").status_code, 403)
        self.assertIn("_auth_user_id", browser.session)
        page = browser.get("/configurations/")
        self.assertContains(page, 'data-testid="logout"')
        token = page.cookies["csrftoken"].value
        response = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": token})
        self.assertRedirects(response, LOGIN)
        self.assertNotIn("_auth_user_id", browser.session)

    def test_logging_in_needs_the_csrf_token(self):
        browser = Client(enforce_csrf_checks=True)
        response = browser.post(LOGIN, {"username": "ada", "password": PASSWORD})
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("_auth_user_id", browser.session)


class PasswordChangeTests(TestCase):
    def setUp(self):
        self.user = make_user(Role.CLIENT, "ada")

    def test_anonymous_callers_are_sent_to_log_in(self):
        response = self.client.get("/accounts/password_change/")
        self.assertRedirects(response, LOGIN + "?next=/accounts/password_change/")

    def test_a_password_is_changed_with_the_old_one(self):
        self.client.force_login(self.user)
        response = self.client.post(
            "/accounts/password_change/",
            {
                "old_password": PASSWORD,
                "new_password1": "a-new-pass-phrase",
                "new_password2": "a-new-pass-phrase",
            },
        )
        self.assertRedirects(response, "/accounts/password_change/done/")
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password("a-new-pass-phrase"))

    def test_a_wrong_old_password_changes_nothing(self):
        self.client.force_login(self.user)
        response = self.client.post(
            "/accounts/password_change/",
            {
                "old_password": "wrong",
                "new_password1": "a-new-pass-phrase",
                "new_password2": "a-new-pass-phrase",
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.context["form"].errors["old_password"])
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password(PASSWORD))

    def test_changing_needs_the_csrf_token(self):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(self.user)
        response = browser.post(
            "/accounts/password_change/",
            {
                "old_password": PASSWORD,
                "new_password1": "a-new-pass-phrase",
                "new_password2": "a-new-pass-phrase",
            },
        )
        self.assertEqual(response.status_code, 403)
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password(PASSWORD))


@override_settings(SITE_URL="https://cards.example.org")
class PasswordResetTests(TestCase):
    def setUp(self):
        self.user = make_user(Role.CLIENT, "ada", email="ada@example.org")

    def reset(self, email):
        mail.outbox.clear()
        return self.client.post(RESET, {"email": email})

    def test_an_active_account_gets_a_link_on_the_site_url_that_sets_a_password(self):
        self.assertRedirects(self.reset("ADA@example.org"), SENT)
        self.assertEqual(len(mail.outbox), 1)
        message = mail.outbox[0]
        self.assertEqual(message.to, ["ada@example.org"])
        self.assertIn('"ada"', message.body)
        link = re.search(
            r"https://cards\.example\.org(/accounts/reset/\S+/)", message.body
        )
        self.assertIsNotNone(link, message.body)
        page = self.client.get(link.group(1), follow=True)
        self.assertContains(page, 'data-testid="password-reset-confirm-form"')
        response = self.client.post(
            page.redirect_chain[-1][0],
            {
                "new_password1": "a-new-pass-phrase",
                "new_password2": "a-new-pass-phrase",
            },
        )
        self.assertRedirects(response, "/accounts/reset/done/")
        self.user.refresh_from_db()
        self.assertTrue(self.user.check_password("a-new-pass-phrase"))
        # The link works once.
        again = self.client.get(link.group(1), follow=True)
        self.assertContains(again, "does not work any more")

    def test_the_page_says_the_same_whether_the_account_exists_or_not(self):
        inactive = make_user(Role.CLIENT, "gone", email="gone@example.org")
        inactive.is_active = False
        inactive.save()
        answers = []
        for email in ("ada@example.org", "nobody@example.org", "gone@example.org"):
            response = self.reset(email)
            self.assertRedirects(response, SENT)
            # The same page, but for the CSRF token (masked anew each time).
            page = self.client.get(SENT).content.decode()
            answers.append(re.sub(CSRF_TOKEN, "", page))
            sent = [m.to for m in mail.outbox]
            self.assertEqual(
                sent, [["ada@example.org"]] if email.startswith("ada") else []
            )
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(answers[0], answers[2])

    def test_asking_needs_the_csrf_token(self):
        browser = Client(enforce_csrf_checks=True)
        self.assertEqual(
            browser.post(RESET, {"email": "ada@example.org"}).status_code, 403
        )
        self.assertEqual(mail.outbox, [])
