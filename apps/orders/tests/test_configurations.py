"""Configurations through the API: what is refused, with which words, never a 500."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from PIL import Image

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders.models import MAX_BRANDING_BYTES, Configuration
from apps.scheduler.testing import ZIM, api

URL = "/api/v1/configurations/"


def image_bytes(kind: str = "PNG", size=(48, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, kind)
    return out.getvalue()


PNG = image_bytes()


def body(**fields) -> dict:
    return {
        "name": "School kit",
        "ssid": "Kiwix",
        "language": "fr",
        "timezone": "Europe/Paris",
        "admin_login": "admin",
        "admin_password": "hotspot-admin-pw",
        "wifi_password": "",
        "contents": [dict(ZIM)],
        **fields,
    }


def entry(**fields) -> dict:
    return {**ZIM, **fields}


class ConfigurationTestCase(TestCase):
    def setUp(self):
        self.client_user = make_user(Role.CLIENT, "client")
        self.api = api(self.client_user)

    def create(self, **fields):
        return self.api.post(URL, body(**fields), format="json")

    def assert_refused(self, response, field, *words):
        """A 400 naming ``field`` whose message has ``words``; nothing stored."""
        self.assertEqual(response.status_code, 400, response.content)
        errors = response.json()
        self.assertIn(field, errors, errors)
        text = str(errors[field])
        for word in words:
            self.assertIn(word, text)
        self.assertFalse(
            Configuration.objects.exclude(name="Existing kit").exists(),
            "a refused configuration must not be stored",
        )
        return errors[field]


class CreateConfigurationTests(ConfigurationTestCase):
    def test_a_valid_configuration_is_stored_and_its_passwords_never_come_back(self):
        response = self.create(wifi_password="wifi-secret-1")
        self.assertEqual(response.status_code, 201, response.content)
        data = response.json()
        self.assertNotIn("admin_password", data)
        self.assertNotIn("wifi_password", data)
        self.assertTrue(data["has_wifi_password"])
        self.assertEqual(data["owner"], "client")
        self.assertEqual(data["total_size"], ZIM["size"])
        self.assertEqual(data["min_card_size_gb"], 8)
        stored = Configuration.objects.get(pk=data["id"])
        self.assertEqual(
            (stored.owner, stored.wifi_password, stored.admin_password),
            (self.client_user, "wifi-secret-1", "hotspot-admin-pw"),
        )

    def test_an_empty_wifi_password_makes_an_open_hotspot(self):
        response = self.create(wifi_password="")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertFalse(response.json()["has_wifi_password"])

    def test_a_name_shorter_than_three_characters_is_refused(self):
        self.assert_refused(self.create(name="ab"), "name", "at least 3")

    def test_a_name_with_a_slash_or_a_leading_dash_is_refused_saying_what_is_allowed(
        self,
    ):
        for name in ("Kit/1", "-Kit", "Kit<script>"):
            with self.subTest(name=name):
                self.assert_refused(
                    self.create(name=name), "name", "letters, digits, spaces"
                )

    def test_a_name_longer_than_80_characters_is_refused(self):
        self.assert_refused(self.create(name="K" * 81), "name", "80")

    def test_a_second_configuration_with_the_same_name_is_refused(self):
        self.assertEqual(self.create(name="Existing kit").status_code, 201)
        self.assert_refused(
            self.create(name="Existing kit"), "name", "already have a configuration"
        )
        self.assertEqual(Configuration.objects.filter(name="Existing kit").count(), 1)

    def test_another_clients_configuration_may_have_the_same_name(self):
        other = api(make_user(Role.CLIENT, "other"))
        self.assertEqual(self.create().status_code, 201)
        response = other.post(URL, body(), format="json")
        self.assertEqual(response.status_code, 201, response.content)

    def test_an_ssid_of_33_bytes_in_17_characters_is_refused_counting_bytes(self):
        ssid = "é" * 16 + "a"  # 17 characters, 33 bytes in UTF-8
        self.assert_refused(self.create(ssid=ssid), "ssid", "32 bytes", "33")

    def test_an_ssid_of_exactly_32_bytes_of_multibyte_characters_is_accepted(self):
        response = self.create(ssid="é" * 16)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(Configuration.objects.get().ssid, "é" * 16)

    def test_an_ssid_of_33_ascii_characters_is_refused(self):
        self.assert_refused(self.create(ssid="a" * 33), "ssid", "32")

    def test_an_ssid_with_a_control_character_is_refused(self):
        self.assert_refused(self.create(ssid="Kiwix\x07"), "ssid", "control")

    def test_an_unknown_time_zone_is_refused_with_an_example_of_a_good_one(self):
        self.assert_refused(
            self.create(timezone="Mars/Olympus"), "timezone", "Europe/Paris"
        )

    def test_an_unknown_language_is_refused(self):
        self.assert_refused(self.create(language="xx"), "language", "xx")

    def test_a_wifi_password_shorter_than_8_or_longer_than_63_is_refused(self):
        for password in ("short", "p" * 64):
            with self.subTest(length=len(password)):
                self.assert_refused(
                    self.create(wifi_password=password), "wifi_password", "8 to 63"
                )

    def test_a_wifi_password_with_non_ascii_characters_is_refused(self):
        self.assert_refused(
            self.create(wifi_password="motdepassé"), "wifi_password", "ASCII"
        )

    def test_an_admin_password_shorter_than_8_characters_is_refused(self):
        self.assert_refused(self.create(admin_password="short"), "admin_password", "8")

    def test_an_admin_login_with_capitals_is_refused(self):
        self.assert_refused(
            self.create(admin_login="Admin"), "admin_login", "lowercase"
        )

    def test_a_content_entry_without_a_size_is_refused_naming_the_entry_and_field(self):
        zim = entry()
        del zim["size"]
        errors = self.assert_refused(self.create(contents=[zim]), "contents")
        self.assertIn("size", errors["0"])

    def test_a_content_entry_with_a_zero_size_is_refused(self):
        errors = self.assert_refused(self.create(contents=[entry(size=0)]), "contents")
        self.assertIn("size", errors["0"])

    def test_a_content_size_no_file_can_have_is_refused_without_a_server_error(self):
        # 10**30 does not fit the 64-bit integers of MongoDB documents.
        errors = self.assert_refused(
            self.create(contents=[entry(size=10**30)]), "contents"
        )
        self.assertIn("size", errors["0"])

    def test_a_content_entry_with_a_bad_url_is_refused(self):
        errors = self.assert_refused(
            self.create(contents=[entry(url="not a url")]), "contents"
        )
        self.assertIn("url", errors["0"])

    def test_a_content_entry_on_ftp_is_refused_asking_for_http(self):
        self.assert_refused(
            self.create(contents=[entry(url="ftp://example.org/a.zim")]),
            "contents",
            "http",
        )

    def test_a_content_entry_with_a_bad_sha256_is_refused_saying_what_one_looks_like(
        self,
    ):
        for sha256 in ("xyz", "A" * 64, "a" * 63):
            with self.subTest(sha256=sha256):
                errors = self.assert_refused(
                    self.create(contents=[entry(sha256=sha256)]), "contents"
                )
                self.assertIn("64 lowercase hex", str(errors["0"]["sha256"]))

    def test_the_same_url_listed_twice_is_refused(self):
        contents = [entry(), entry(title="Again")]
        self.assert_refused(
            self.create(contents=contents), "contents", "Content entry 2", "twice"
        )

    def test_a_configuration_without_content_is_refused(self):
        self.assert_refused(self.create(contents=[]), "contents")

    def test_contents_that_are_not_a_list_are_refused_without_a_server_error(self):
        for contents in ("wikipedia", {"url": ZIM["url"]}, [1, 2], None):
            with self.subTest(contents=contents):
                self.assert_refused(self.create(contents=contents), "contents")

    def test_a_body_that_is_not_json_is_refused_with_400(self):
        response = self.api.post(URL, "{not json", content_type="application/json")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("JSON", response.json()["detail"])
        self.assertFalse(Configuration.objects.exists())


class EditConfigurationTests(ConfigurationTestCase):
    def setUp(self):
        super().setUp()
        response = self.create(name="Existing kit")
        self.assertEqual(response.status_code, 201, response.content)
        self.url = f"{URL}{response.json()['id']}/"

    def patch(self, data, **kwargs):
        kwargs.setdefault("format", "json")
        return self.api.patch(self.url, data, **kwargs)

    def test_a_configuration_is_edited_field_by_field(self):
        response = self.patch({"ssid": "Renamed", "timezone": "Africa/Dakar"})
        self.assertEqual(response.status_code, 200, response.content)
        stored = Configuration.objects.get()
        self.assertEqual((stored.ssid, stored.timezone), ("Renamed", "Africa/Dakar"))
        self.assertEqual(stored.admin_password, "hotspot-admin-pw")

    def test_an_edit_is_validated_like_a_creation(self):
        response = self.patch({"ssid": "é" * 17})
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("34", str(response.json()["ssid"]))
        self.assertEqual(Configuration.objects.get().ssid, "Kiwix")

    def test_renaming_to_the_name_of_another_own_configuration_is_refused(self):
        self.assertEqual(self.create(name="Second kit").status_code, 201)
        response = self.patch({"name": "Second kit"})
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("already have", str(response.json()["name"]))
        self.assertEqual(
            Configuration.objects.filter(name="Second kit").count(), 1, "unchanged"
        )

    def test_a_png_logo_is_uploaded_as_multipart(self):
        logo = SimpleUploadedFile("logo.png", PNG, content_type="image/png")
        response = self.patch({"branding_logo": logo}, format="multipart")
        self.assertEqual(response.status_code, 200, response.content)
        stored = Configuration.objects.get()
        self.assertTrue(stored.branding_logo.name.startswith("branding/logo"))
        self.assertEqual(stored.branding_logo.read(), PNG)
        self.assertTrue(response.json()["branding_logo"].endswith(".png"))

    def test_a_jpeg_logo_is_accepted(self):
        jpeg = image_bytes("JPEG")
        logo = SimpleUploadedFile("logo.jpg", jpeg, content_type="image/jpeg")
        response = self.patch({"branding_logo": logo}, format="multipart")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(Configuration.objects.get().branding_logo.read(), jpeg)

    def test_a_logo_that_is_not_a_real_png_or_jpeg_image_is_refused(self):
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 64
        for name, content in (
            ("logo.gif", image_bytes("GIF")),
            ("logo.png", b"just some text, named .png"),
            ("logo.jpg", elf),
            ("logo.svg", svg),
            ("logo.png", PNG[:40]),  # cut short
        ):
            with self.subTest(name=name, start=content[:8]):
                logo = SimpleUploadedFile(name, content)
                response = self.patch({"branding_logo": logo}, format="multipart")
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn(
                    "must be PNG or JPEG images", str(response.json()["branding_logo"])
                )
                self.assertFalse(Configuration.objects.get().branding_logo)

    def test_a_logo_of_absurd_dimensions_is_refused(self):
        logo = SimpleUploadedFile("wide.png", image_bytes(size=(5000, 1)))
        response = self.patch({"branding_logo": logo}, format="multipart")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("4096 pixels", str(response.json()["branding_logo"]))

    def test_a_favicon_bigger_than_2_mib_is_refused_saying_its_size(self):
        size = MAX_BRANDING_BYTES + 1
        icon = SimpleUploadedFile("icon.png", b"\x00" * size, content_type="image/png")
        response = self.patch({"branding_favicon": icon}, format="multipart")
        self.assertEqual(response.status_code, 400, response.content)
        message = str(response.json()["branding_favicon"])
        self.assertIn("2 MiB", message)
        self.assertIn(str(size), message)
        self.assertFalse(Configuration.objects.get().branding_favicon)
