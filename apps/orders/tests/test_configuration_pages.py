"""Configuration pages: list, detail, create and edit (the API's rules, with field
errors), duplicate, delete, JSON export and import, the rendered YAML, branding;
who sees and changes what."""

import json

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.accounts import urls as accounts_pages
from apps.orders import urls as client_pages
from apps.orders.models import Configuration
from apps.orders.services import export_configuration
from apps.orders.tests.pages import PageTestCase
from apps.orders.tests.test_configurations import PNG, image_bytes
from apps.scheduler.testing import ZIM, configuration

LIST = "/configurations/"
NEW = "/configurations/new/"
IMPORT = "/configurations/import/"


def form_data(**fields) -> dict:
    return {
        "name": "Library kit",
        "ssid": "Kiwix Library",
        "domain": "library",
        "language": "fr",
        "timezone": "Africa/Dakar",
        "admin_login": "teacher",
        "admin_password": "hotspot-admin-pw",
        "wifi_password": "",
        "contents": json.dumps([ZIM]),
        **fields,
    }


class ConfigurationPageTestCase(PageTestCase):
    def url(self, config=None, action="") -> str:
        config = config or self.config
        return f"/configurations/{config.pk}/{action}"


class ListAndDetailTests(ConfigurationPageTestCase):
    def test_a_client_lists_only_its_own_configurations(self):
        configuration(self.other, name="Other kit")
        response = self.client.get(LIST)
        self.assertContains(response, "School kit")
        self.assertNotContains(response, "Other kit")
        self.assertContains(response, 'data-testid="configuration-row"', count=1)

    def test_operators_list_every_clients_configurations_with_their_owner(self):
        configuration(self.other, name="Other kit")
        response = self.as_user(self.manager).get(LIST)
        self.assertContains(response, "School kit")
        self.assertContains(response, "Other kit")
        self.assertContains(response, "other-client")

    def test_the_detail_shows_the_settings_but_never_the_passwords(self):
        self.config.wifi_password = "wifi-secret-1"
        self.config.save()
        response = self.client.get(self.url())
        self.assertContains(response, "Kiwix Hotspot")
        self.assertContains(response, ZIM["title"])
        self.assertNotContains(response, "hotspot-admin-pw")
        self.assertNotContains(response, "wifi-secret-1")
        self.assertContains(response, 'data-testid="configuration-edit"')

    def test_another_clients_configuration_is_not_found(self):
        for action in ("", "edit/", "delete/", "export.json", "recipe.yaml"):
            with self.subTest(action=action):
                self.assert_not_found_for_other_clients(self.url(action=action))
        self.assert_not_found_for_other_clients(
            self.url(action="duplicate/"), method="post"
        )
        self.assertEqual(Configuration.objects.count(), 1)

    def test_operators_read_a_clients_configuration_without_edit_buttons(self):
        response = self.as_user(self.manager).get(self.url())
        self.assertContains(response, "School kit")
        self.assertNotContains(response, 'data-testid="configuration-edit"')
        self.assertNotContains(response, 'data-testid="configuration-delete"')

    def test_anonymous_callers_are_sent_to_log_in_and_workers_refused(self):
        for url in (
            LIST,
            NEW,
            IMPORT,
            self.url(),
            self.url(action="edit/"),
            self.url(action="export.json"),
            self.url(action="recipe.yaml"),
        ):
            with self.subTest(url=url):
                self.assert_sent_to_login(url)
                self.assert_refused_to_workers(url)


class CreateTests(ConfigurationPageTestCase):
    def test_a_new_configuration_is_stored_with_its_minimum_image_size(self):
        self.assertEqual(self.client.get(NEW).status_code, 200)
        response = self.client.post(NEW, form_data(wifi_password="wifi-secret-1"))
        created = Configuration.objects.get(name="Library kit")
        self.assertRedirects(response, self.url(created))
        self.assertEqual(created.owner, self.owner)
        self.assertEqual(
            (created.ssid, created.domain, created.timezone, created.contents),
            ("Kiwix Library", "library", "Africa/Dakar", [ZIM]),
        )
        self.assertEqual(
            (created.admin_password, created.wifi_password),
            ("hotspot-admin-pw", "wifi-secret-1"),
        )
        self.assertEqual(created.image_bytes, created.render().min_size)

    def test_what_the_api_refuses_is_refused_on_the_field_with_the_same_words(self):
        cases = [
            ({"ssid": "!Kiwix"}, "ssid", "may not start with"),
            ({"name": "School kit"}, "name", "already have a configuration"),
            ({"name": "Kit/1"}, "name", "letters, digits"),
            ({"admin_password": "short"}, "admin_password", "8 to 64"),
            ({"wifi_password": "1234"}, "wifi_password", "8 to 63"),
            ({"timezone": "Mars/Base"}, "timezone", "Select a valid choice"),
            ({"contents": "[]"}, "contents", "Choose at least one content entry"),
            (
                {"contents": json.dumps([ZIM, ZIM])},
                "contents",
                "this URL is listed twice",
            ),
        ]
        for fields, field, words in cases:
            with self.subTest(field=field, words=words):
                response = self.client.post(NEW, form_data(**fields))
                self.assertEqual(response.status_code, 200)
                self.assertIn(words, " ".join(response.context["form"].errors[field]))
                self.assertContains(response, words.replace("'", "&#x27;"))
        self.assertEqual(Configuration.objects.count(), 1, "nothing stored")

    def test_branding_images_must_be_real_png_or_jpeg_images(self):
        svg = SimpleUploadedFile("logo.png", b"<svg onload='alert(1)'/>")
        response = self.client.post(NEW, {**form_data(), "branding_logo": svg})
        self.assertIn(
            "must be PNG or JPEG images",
            " ".join(response.context["form"].errors["branding_logo"]),
        )
        self.assertFalse(Configuration.objects.filter(name="Library kit").exists())
        logo = SimpleUploadedFile("logo.jpg", image_bytes("JPEG"))
        response = self.client.post(NEW, {**form_data(), "branding_logo": logo})
        created = Configuration.objects.get(name="Library kit")
        self.assertEqual(created.branding_images()["logo"][:3], b"\xff\xd8\xff")

    def test_saving_needs_the_csrf_token(self):
        self.assert_csrf_needed(NEW, form_data())
        self.assertFalse(Configuration.objects.filter(name="Library kit").exists())


class EditTests(ConfigurationPageTestCase):
    def setUp(self):
        super().setUp()
        self.config.wifi_password = "wifi-secret-1"
        self.config.save()

    def test_the_form_shows_the_stored_values_but_no_password(self):
        response = self.client.get(self.url(action="edit/"))
        self.assertContains(response, 'value="Kiwix Hotspot"')
        self.assertNotContains(response, "hotspot-admin-pw")
        self.assertNotContains(response, "wifi-secret-1")
        self.assertContains(response, 'data-testid="picker-chosen-row"', count=1)

    def test_empty_password_fields_keep_the_current_passwords(self):
        response = self.client.post(
            self.url(action="edit/"),
            form_data(name="School kit", ssid="New name", admin_password=""),
        )
        self.assertRedirects(response, self.url())
        self.config.refresh_from_db()
        self.assertEqual(self.config.ssid, "New name")
        self.assertEqual(self.config.admin_password, "hotspot-admin-pw")
        self.assertEqual(self.config.wifi_password, "wifi-secret-1")

    def test_new_passwords_replace_them_and_the_hotspot_may_become_open(self):
        self.client.post(
            self.url(action="edit/"),
            form_data(name="School kit", admin_password="new-admin-pw1"),
        )
        self.config.refresh_from_db()
        self.assertEqual(self.config.admin_password, "new-admin-pw1")
        self.client.post(
            self.url(action="edit/"),
            form_data(name="School kit", admin_password="", open_hotspot="on"),
        )
        self.config.refresh_from_db()
        self.assertEqual(self.config.wifi_password, "")

    def test_more_content_updates_the_stored_minimum_size(self):
        before = self.config.render().min_size
        bigger = {**ZIM, "url": "http://127.0.0.1:9/more.zim", "size": 3 * 10**9}
        self.client.post(
            self.url(action="edit/"),
            form_data(name="School kit", contents=json.dumps([ZIM, bigger])),
        )
        self.config.refresh_from_db()
        self.assertEqual(len(self.config.contents), 2)
        self.assertGreater(self.config.image_bytes, before + 2 * 10**9)

    def test_a_stored_logo_is_shown_replaced_or_removed(self):
        self.config.branding_logo = ContentFile(PNG, name="logo.png")
        self.config.save()
        page = self.client.get(self.url(action="edit/"))
        self.assertContains(
            page, f'src="/configurations/{self.config.pk}/branding/logo/"'
        )
        self.assertNotContains(page, "/media/")
        self.assertContains(page, 'name="remove_logo"')
        self.assertNotContains(page, 'name="remove_favicon"')
        jpeg = image_bytes("JPEG")
        self.client.post(
            self.url(action="edit/"),
            {
                **form_data(name="School kit", admin_password=""),
                "branding_logo": SimpleUploadedFile("new.jpg", jpeg),
            },
        )
        self.config.refresh_from_db()
        self.assertEqual(self.config.branding_images()["logo"], jpeg)
        self.client.post(
            self.url(action="edit/"),
            form_data(name="School kit", admin_password="", remove_logo="on"),
        )
        self.config.refresh_from_db()
        self.assertFalse(self.config.branding_logo)
        self.assertEqual(self.config.image_bytes, self.config.render().min_size)

    def test_a_refused_edit_shows_the_stored_name_above_the_posted_one(self):
        response = self.client.post(
            self.url(action="edit/"), form_data(name="Kit/1", admin_password="")
        )
        self.assertContains(response, '<h1 class="h3 mb-3">Edit School kit</h1>')
        self.assertContains(response, 'value="Kit/1"')

    def test_operators_may_not_change_or_delete_a_clients_configuration(self):
        manager = self.as_user(self.manager)
        for action in ("edit/", "delete/"):
            with self.subTest(action=action):
                self.assertEqual(manager.get(self.url(action=action)).status_code, 403)
                response = manager.post(self.url(action=action), form_data())
                self.assertEqual(response.status_code, 403)
        self.config.refresh_from_db()
        self.assertEqual(self.config.name, "School kit")

    def test_operators_change_their_own_configurations(self):
        own = configuration(self.manager, name="Staff kit")
        response = self.as_user(self.manager).post(
            self.url(own, "edit/"), form_data(name="Staff kit 2", admin_password="")
        )
        self.assertRedirects(response, self.url(own))
        own.refresh_from_db()
        self.assertEqual(own.name, "Staff kit 2")

    def test_editing_needs_the_csrf_token(self):
        self.assert_csrf_needed(self.url(action="edit/"), form_data(name="Changed"))
        self.config.refresh_from_db()
        self.assertEqual(self.config.name, "School kit")


class DuplicateAndDeleteTests(ConfigurationPageTestCase):
    def test_duplicating_makes_a_copy_named_copy_and_opens_it(self):
        response = self.client.post(self.url(action="duplicate/"))
        copy = Configuration.objects.get(name="School kit (copy)")
        self.assertRedirects(response, self.url(copy, "edit/"))
        self.assertEqual(copy.owner, self.owner)
        self.assertEqual(copy.contents, self.config.contents)

    def test_an_operator_copies_a_clients_configuration_as_its_own(self):
        self.as_user(self.manager).post(self.url(action="duplicate/"))
        copy = Configuration.objects.get(name="School kit (copy)")
        self.assertEqual(copy.owner, self.manager)

    def test_duplicating_is_a_post_with_the_csrf_token(self):
        response = self.client.get(self.url(action="duplicate/"))
        self.assertEqual(response.status_code, 405)
        self.assert_csrf_needed(self.url(action="duplicate/"))
        self.assert_sent_to_login(self.url(action="duplicate/"), method="post")
        self.assert_refused_to_workers(self.url(action="duplicate/"), method="post")
        self.assertEqual(Configuration.objects.count(), 1)

    def test_deleting_asks_first_then_deletes(self):
        response = self.client.get(self.url(action="delete/"))
        self.assertContains(response, 'data-testid="configuration-delete-confirm"')
        self.assertTrue(Configuration.objects.filter(pk=self.config.pk).exists())
        self.assert_csrf_needed(self.url(action="delete/"))
        self.assertTrue(Configuration.objects.filter(pk=self.config.pk).exists())
        response = self.client.post(self.url(action="delete/"))
        self.assertRedirects(response, LIST)
        self.assertFalse(Configuration.objects.filter(pk=self.config.pk).exists())


class ExportImportTests(ConfigurationPageTestCase):
    def test_the_export_is_a_json_file_without_passwords(self):
        response = self.client.get(self.url(action="export.json"))
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertIn("school-kit.json", response["Content-Disposition"])
        self.assertEqual(response["Cache-Control"], "no-store")
        document = json.loads(response.content)
        self.assertEqual(document["configuration"]["contents"], [ZIM])
        self.assertNotIn(b"hotspot-admin-pw", response.content)

    def test_operators_export_a_clients_configuration(self):
        response = self.as_user(self.manager).get(self.url(action="export.json"))
        self.assertEqual(response.status_code, 200)

    def test_an_import_asks_for_the_passwords_and_makes_a_new_configuration(self):
        text = json.dumps(export_configuration(self.config)).encode()
        upload = SimpleUploadedFile("kit.json", text, "application/json")
        response = self.client.post(
            IMPORT,
            {
                "file": upload,
                "name": "Imported kit",
                "admin_password": "imported-pw1",
            },
        )
        imported = Configuration.objects.get(name="Imported kit")
        self.assertRedirects(response, self.url(imported))
        self.assertEqual(imported.owner, self.owner)
        self.assertEqual(imported.admin_password, "imported-pw1")
        self.assertEqual(imported.contents, self.config.contents)

    def test_an_import_says_on_the_form_what_is_wrong(self):
        document = export_configuration(self.config)
        document["configuration"]["ssid"] = "!bad"
        cases = [
            (b"nonsense", {}, "file", "not JSON"),
            (json.dumps(document).encode(), {}, "file", "ssid: The hotspot"),
            (
                json.dumps(export_configuration(self.config)).encode(),
                {},
                "name",
                "already have",
            ),
            (
                json.dumps(export_configuration(self.config)).encode(),
                {"admin_password": "a b c d e"},
                "admin_password",
                "no spaces",
            ),
        ]
        for text, fields, field, words in cases:
            with self.subTest(field=field, words=words):
                upload = SimpleUploadedFile("kit.json", text, "application/json")
                response = self.client.post(
                    IMPORT, {"file": upload, "admin_password": "pw-1234567", **fields}
                )
                self.assertEqual(response.status_code, 200)
                errors = response.context["form"].errors
                self.assertIn(words, " ".join(errors[field]), errors)
        self.assertEqual(Configuration.objects.count(), 1)

    def test_importing_needs_the_csrf_token(self):
        self.assert_csrf_needed(IMPORT, {"admin_password": "pw-1234567"})


class RecipeAndBrandingTests(ConfigurationPageTestCase):
    def test_the_rendered_yaml_downloads_with_no_store(self):
        response = self.client.get(self.url(action="recipe.yaml"))
        self.assertEqual(response["Content-Type"], "application/yaml")
        self.assertEqual(response["Cache-Control"], "no-store")
        self.assertEqual(response.content.decode(), self.config.render().text)
        self.assertEqual(
            self.as_user(self.manager).get(self.url(action="recipe.yaml")).status_code,
            200,
        )

    def test_a_branding_image_is_served_to_who_may_read_the_configuration(self):
        self.config.branding_logo = ContentFile(PNG, name="logo.png")
        self.config.save()
        url = self.url(action="branding/logo/")
        response = self.client.get(url)
        self.assertEqual(
            (response["Content-Type"], response.content), ("image/png", PNG)
        )
        for missing in ("branding/favicon/", "branding/other/"):
            response = self.client.get(self.url(action=missing))
            self.assertEqual(response.status_code, 404)
        self.assert_not_found_for_other_clients(url)
        self.assert_sent_to_login(url)
        self.assert_refused_to_workers(url)


class CsrfTests(ConfigurationPageTestCase):
    def test_no_client_page_nor_account_page_is_exempt_from_csrf(self):
        patterns = [*client_pages.urlpatterns, *accounts_pages.urlpatterns]
        exempt = [
            str(pattern.pattern)
            for pattern in patterns
            if getattr(pattern.callback, "csrf_exempt", False)
        ]
        self.assertEqual(exempt, [])
        self.assertGreater(len(patterns), 20)
