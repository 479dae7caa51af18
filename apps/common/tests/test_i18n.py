"""French is the first translation; no string is left untranslated."""

import re
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase


class FrenchTests(SimpleTestCase):
    def test_the_login_page_speaks_french_to_a_french_browser(self):
        response = self.client.get("/", HTTP_ACCEPT_LANGUAGE="fr", follow=True)
        self.assertEqual(response.redirect_chain[-1][0], "/accounts/login/?next=/")
        self.assertContains(response, "Mot de passe")  # Django's own translation
        self.assertContains(response, '<html lang="fr">')

    def test_every_message_has_a_french_translation(self):
        po = Path(settings.BASE_DIR, "locale/fr/LC_MESSAGES/django.po").read_text()
        untranslated = re.findall(r'^msgid "(.+)"\nmsgstr ""\n\n', po, re.MULTILINE)
        self.assertEqual(untranslated, [])
        self.assertNotIn("#, fuzzy", po)
