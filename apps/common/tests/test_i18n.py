"""French is the first translation: a French browser reads French pages. The
catalogs' completeness is checked in test_translations.py, the switcher and the
user's preference in apps/accounts/tests/test_language.py."""

from django.test import SimpleTestCase


class FrenchTests(SimpleTestCase):
    def test_the_login_page_speaks_french_to_a_french_browser(self):
        response = self.client.get("/", HTTP_ACCEPT_LANGUAGE="fr", follow=True)
        self.assertEqual(response.redirect_chain[-1][0], "/accounts/login/?next=/")
        self.assertContains(response, "Mot de passe")  # Django's own translation
        self.assertContains(response, '<html lang="fr">')
