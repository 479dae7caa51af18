"""The configuration services the API and the client pages share: the checks,
duplicate, export and import, and the preview the content picker shows."""

import json
import shutil
import tempfile

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.test import TestCase, override_settings

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders import services
from apps.orders.cards import smallest_card_gb
from apps.orders.models import Configuration
from apps.orders.tests.test_configurations import PNG, image_bytes
from apps.scheduler.testing import ZIM, configuration

MEDIA = tempfile.mkdtemp(prefix="imager-media-")


def tearDownModule():
    shutil.rmtree(MEDIA, ignore_errors=True)


@override_settings(MEDIA_ROOT=MEDIA)
class DuplicateTests(TestCase):
    def setUp(self):
        self.owner = make_user(Role.CLIENT, "client")
        self.config = configuration(self.owner, wifi_password="wifi-secret-1")

    def test_a_copy_is_named_copy_then_copy_2_and_keeps_everything_else(self):
        first = services.duplicate_configuration(
            configuration=self.config, owner=self.owner
        )
        second = services.duplicate_configuration(
            configuration=self.config, owner=self.owner
        )
        self.assertEqual(first.name, "School kit (copy)")
        self.assertEqual(second.name, "School kit (copy 2)")
        for copy in (first, second):
            copy.refresh_from_db()
            self.assertEqual(copy.owner, self.owner)
            self.assertEqual(copy.contents, self.config.contents)
            self.assertEqual(
                (copy.ssid, copy.admin_password, copy.wifi_password),
                ("Kiwix Hotspot", "hotspot-admin-pw", "wifi-secret-1"),
            )
        self.assertEqual(Configuration.objects.count(), 3)

    def test_a_copy_of_a_long_name_stays_within_80_characters(self):
        self.config.name = "K" * 80
        self.config.save()
        copy = services.duplicate_configuration(
            configuration=self.config, owner=self.owner
        )
        self.assertEqual(len(copy.name), 80)
        self.assertTrue(copy.name.endswith(" (copy)"))
        copy.full_clean()

    def test_a_copy_has_its_own_copy_of_the_branding_images(self):
        self.config.branding_logo = ContentFile(PNG, name="logo.png")
        self.config.save()
        copy = services.duplicate_configuration(
            configuration=self.config, owner=self.owner
        )
        self.assertNotEqual(copy.branding_logo.name, self.config.branding_logo.name)
        self.assertEqual(copy.branding_images()["logo"], PNG)
        self.assertFalse(copy.branding_favicon)


@override_settings(MEDIA_ROOT=MEDIA)
class ExportImportTests(TestCase):
    def setUp(self):
        self.owner = make_user(Role.CLIENT, "client")
        self.config = configuration(
            self.owner,
            wifi_password="wifi-secret-1",
            branding_favicon=ContentFile(image_bytes("JPEG"), name="icon.jpg"),
        )

    def export_text(self, **changes) -> str:
        document = services.export_configuration(self.config)
        document["configuration"].update(changes)
        return json.dumps(document)

    def test_an_export_has_the_fields_content_and_images_but_no_password(self):
        document = services.export_configuration(self.config)
        self.assertEqual(
            (document["format"], document["version"]),
            (
                "kiwix-hotspot-configuration",
                1,
            ),
        )
        data = document["configuration"]
        self.assertEqual(data["name"], "School kit")
        self.assertEqual(data["contents"], [ZIM])
        self.assertTrue(data["has_wifi_password"])
        self.assertIsNone(data["branding"]["logo"])
        self.assertEqual(data["branding"]["favicon"]["name"][-4:], ".jpg")
        text = json.dumps(document)
        self.assertNotIn("hotspot-admin-pw", text)
        self.assertNotIn("wifi-secret-1", text)

    def test_an_import_makes_the_same_configuration_with_the_passwords_given(self):
        imported = services.import_configuration(
            text=self.export_text(),
            owner=self.owner,
            admin_password="another-admin-pw",
            name="Imported kit",
        )
        imported.refresh_from_db()
        self.assertEqual(imported.name, "Imported kit")
        self.assertEqual(imported.owner, self.owner)
        for field in ("ssid", "domain", "language", "timezone", "admin_login"):
            self.assertEqual(getattr(imported, field), getattr(self.config, field))
        self.assertEqual(imported.contents, self.config.contents)
        self.assertEqual(imported.admin_password, "another-admin-pw")
        self.assertEqual(imported.wifi_password, "")
        self.assertEqual(
            imported.branding_images()["favicon"],
            self.config.branding_images()["favicon"],
        )
        self.assertEqual(imported.image_bytes, imported.render().min_size)

    def test_an_import_under_a_name_already_used_is_refused_on_the_name(self):
        with self.assertRaises(ValidationError) as caught:
            services.import_configuration(
                text=self.export_text(), owner=self.owner, admin_password="pw-123456"
            )
        self.assertIn("already have", str(caught.exception.message_dict["name"]))
        self.assertEqual(Configuration.objects.count(), 1)

    def test_an_import_checks_the_file_with_the_same_rules(self):
        cases = [
            (b"not json", "file", "not JSON"),
            (json.dumps({"format": "other"}), "file", "not an exported"),
            (
                json.dumps(
                    {
                        "format": "kiwix-hotspot-configuration",
                        "version": 9,
                        "configuration": {},
                    }
                ),
                "file",
                "version 9",
            ),
            (self.export_text(extra=1), "file", "Unknown keys: extra"),
            (self.export_text(language=["fr"]), "file", "language"),
            (self.export_text(ssid="!bad"), "ssid", "may not start"),
            (self.export_text(contents=[]), "contents", "blank"),
            (
                self.export_text(
                    branding={"logo": {"name": "x.png", "base64": "PHN2Zz4="}}
                ),
                "branding_logo",
                "PNG or JPEG",
            ),
        ]
        for text, field, words in cases:
            with self.subTest(field=field, words=words):
                with self.assertRaises(ValidationError) as caught:
                    services.import_configuration(
                        text=text,
                        owner=self.owner,
                        admin_password="pw-123456",
                        name="New kit",
                    )
                errors = caught.exception.message_dict
                self.assertIn(field, errors, errors)
                self.assertIn(words, " ".join(errors[field]))
        self.assertEqual(Configuration.objects.count(), 1)


class PreviewTests(TestCase):
    def test_the_preview_is_offspot_configs_size_and_the_smallest_card(self):
        owner = make_user(Role.CLIENT, "client")
        config = configuration(owner)
        found = services.preview({"contents": [ZIM], "ssid": "Kiwix Hotspot"})
        needed = config.render().min_size
        self.assertEqual(found.total_size, ZIM["size"])
        # The same rendering as the saved configuration, within a few bytes
        # (the YAML written on the card holds the hotspot's settings).
        self.assertAlmostEqual(found.image_bytes, needed, delta=4096)
        self.assertEqual(found.smallest_card_gb, smallest_card_gb(needed))
        self.assertEqual(found.problems, [])

    def test_a_draft_without_settings_is_previewed_with_placeholders(self):
        found = services.preview({"contents": [ZIM], "ssid": "", "timezone": "X/Y"})
        self.assertGreater(found.image_bytes, ZIM["size"])

    def test_what_is_wrong_with_the_content_is_said_and_no_size_is_guessed(self):
        found = services.preview({"contents": [ZIM, ZIM]})
        self.assertIsNone(found.image_bytes)
        self.assertIn("listed twice", found.problems[0])
        self.assertEqual(found.total_size, 2 * ZIM["size"])

    def test_an_empty_draft_needs_nothing(self):
        self.assertEqual(services.preview({}), services.Preview(0, None, None, []))
