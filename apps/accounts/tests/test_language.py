"""The language switcher and the user's language preference: the switcher sets
the cookie and, for a signed-in user, saves the choice; the preference then wins
over the browser on every page, and survives logout through the cookie."""

from django.conf import settings
from django.test import TestCase

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders.models import OrderStatus
from apps.scheduler.testing import order

SWITCH = "/i18n/setlang/"
COOKIE = settings.LANGUAGE_COOKIE_NAME
LOGIN = "/accounts/login/"
# The login page's lead sentence, in each language.
LOGIN_EN = "Design your hotspots, order SD-cards and follow their making."
LOGIN_FR = "Concevez vos hotspots, commandez des cartes SD et suivez leur fabrication."


class SwitcherTests(TestCase):
    def test_every_page_has_the_switcher_with_its_csrf_token_and_the_current_language(
        self,
    ):
        response = self.client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="fr")
        self.assertContains(response, f'action="{SWITCH}" method="post"')
        self.assertContains(response, 'name="csrfmiddlewaretoken"')
        self.assertContains(response, f'name="next" type="hidden" value="{LOGIN}"')
        # Each language is named in itself, whatever the page's language.
        self.assertContains(
            response, '<option value="fr" lang="fr" selected>Français</option>'
        )
        self.assertContains(response, '<option value="en" lang="en">English</option>')

    def test_an_anonymous_visitor_switches_with_a_cookie_and_goes_back(self):
        response = self.client.post(SWITCH, {"language": "fr", "next": LOGIN})
        self.assertRedirects(response, LOGIN)
        self.assertEqual(response.cookies[COOKIE].value, "fr")
        page = self.client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(page, LOGIN_FR)
        self.assertContains(page, '<html lang="fr">')

    def test_a_signed_in_user_choice_is_saved_as_their_preference(self):
        user = make_user(Role.CLIENT)
        self.client.force_login(user)
        response = self.client.post(SWITCH, {"language": "fr", "next": "/orders/"})
        self.assertRedirects(response, "/orders/")
        self.assertEqual(response.cookies[COOKIE].value, "fr")
        user.refresh_from_db()
        self.assertEqual(user.language, "fr")

    def test_a_language_the_site_lacks_changes_nothing(self):
        user = make_user(Role.CLIENT, language="fr")
        self.client.force_login(user)
        response = self.client.post(SWITCH, {"language": "de", "next": "/orders/"})
        self.assertEqual(response.status_code, 302)
        user.refresh_from_db()
        self.assertEqual(user.language, "fr")

    def test_the_switcher_does_not_save_on_a_get(self):
        user = make_user(Role.CLIENT)
        self.client.force_login(user)
        self.client.get(SWITCH, {"language": "fr"})
        user.refresh_from_db()
        self.assertEqual(user.language, "en")


class PreferenceTests(TestCase):
    def test_the_preference_wins_over_the_browser_and_sets_the_cookie(self):
        self.client.force_login(make_user(Role.CLIENT, language="fr"))
        self.client.cookies[COOKIE] = "en"
        response = self.client.get("/orders/", HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(response, "Nouvelle commande")
        self.assertEqual(response["Content-Language"], "fr")
        # The cookie follows, so the pages after logout stay in French.
        self.assertEqual(response.cookies[COOKIE].value, "fr")

    def test_an_english_preference_wins_over_a_french_browser(self):
        self.client.force_login(make_user(Role.MANAGER, language="en"))
        response = self.client.get("/ops/orders/", HTTP_ACCEPT_LANGUAGE="fr")
        self.assertContains(response, "Filter")
        self.assertNotContains(response, "Filtrer")
        self.assertEqual(response["Content-Language"], "en")

    def test_after_logout_the_pages_stay_in_the_users_language(self):
        self.client.force_login(make_user(Role.CLIENT, language="fr"))
        self.client.get("/orders/")
        self.client.post("/accounts/logout/")
        page = self.client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en")
        self.assertContains(page, LOGIN_FR)

    def test_without_a_signed_in_user_the_browser_decides(self):
        self.assertContains(self.client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="fr"), LOGIN_FR)
        self.assertContains(self.client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en"), LOGIN_EN)

    def test_history_recorded_in_english_is_read_in_the_readers_language(self):
        client = make_user(Role.CLIENT, language="fr")
        placed = order(client)
        placed.move_to(OrderStatus.BUILDING, message="Build started.")
        self.client.force_login(client)
        response = self.client.get(f"/orders/{placed.pk}/")
        self.assertContains(response, "Commande passée.")
        self.assertContains(response, "Construction commencée.")
        self.assertNotContains(response, "Build started.")
