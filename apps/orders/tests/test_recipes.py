"""A configuration rendered by offspot-config (apps.orders.recipes.render): YAML that
offspot-config reads back, as Kiwix builds its hotspots, without the network."""

import socket
from unittest import mock

import yaml
from django.core.exceptions import ValidationError
from django.test import SimpleTestCase, override_settings
from django.utils import translation
from offspot_config.builder import BRANDING_PATH
from offspot_config.catalog import app_catalog
from offspot_config.inputs.mainconfig import MainConfig
from offspot_config.utils.sizes import get_min_image_size

from apps.orders.recipes import render

MIB = 1024**2
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>'
FILES_PACKAGE = "nomad.offspot.kiwix.org"
APP_PACKAGE = "file-manager.offspot.kiwix.org"
#: A ZIM as Kiwix's OPDS catalog describes it.
TYPED_ZIM = {
    "kind": "zim",
    "ident": "openZIM:wikipedia_fr_test:maxi",
    "name": "wikipedia_fr_test",
    "flavour": "maxi",
    "version": "2024-06",
    "title": "Wikipédia (test)",
    "description": "Quelques articles",
    "languages": ["fra"],
    "tags": ["wikipedia"],
    "url": "https://download.kiwix.org/zim/wikipedia/wikipedia_fr_test_maxi_2024-06.zim",
    "size": 300 * 1024**2,
    "checksum_url": (
        "https://download.kiwix.org/zim/wikipedia/wikipedia_fr_test_maxi_2024-06.zim.md5"
    ),
}
#: The simple entry of earlier versions, on an address nothing listens to.
SIMPLE_ZIM = {
    "title": "Wiktionnaire",
    "url": "http://127.0.0.1:9/zims/wiktionary_fr_all.zim",
    "size": 50 * 1024**2,
    "sha256": "a" * 64,
}


def configuration(**fields) -> dict:
    """A configuration's snapshot, as ``Configuration.snapshot()`` gives it."""
    return {
        "name": "School kit",
        "domain": "school",
        "ssid": "Kiwix École",
        "language": "fr",
        "timezone": "Africa/Dakar",
        "admin_login": "teacher",
        "admin_password": "hotspot-admin-pw",
        "wifi_password": "wifi-secret-1",
        "contents": [
            TYPED_ZIM,
            SIMPLE_ZIM,
            {"kind": "package", "ident": FILES_PACKAGE},
            {"kind": "package", "ident": APP_PACKAGE},
        ],
        **fields,
    }


def files_of(text: str) -> dict[str, dict]:
    return {entry["to"]: entry for entry in yaml.safe_load(text)["files"]}


class RenderTests(SimpleTestCase):
    def setUp(self):
        self.recipe = render(configuration(), branding={"logo": PNG, "favicon": SVG})
        self.data = yaml.safe_load(self.recipe.text)

    def test_offspot_config_reads_the_yaml_back_and_sizes_it_as_we_do(self):
        parsed = MainConfig.read_from(self.recipe.text)
        self.assertIsNone(parsed.output.size)  # auto
        self.assertEqual(self.data["output"], {"size": "auto"})
        self.assertEqual(self.recipe.min_size, get_min_image_size(parsed))
        self.assertEqual(self.recipe.min_size % 512, 0)

    def test_the_offspot_section_carries_name_domain_ssid_passphrase_and_time_zone(
        self,
    ):
        offspot = self.data["offspot"]
        self.assertEqual(offspot["timezone"], "Africa/Dakar")
        self.assertEqual(offspot["hostname"], "school")
        ap = offspot["ap"]
        self.assertEqual(
            (ap["ssid"], ap["passphrase"], ap["domain"], ap["tld"]),
            ("Kiwix École", "wifi-secret-1", "school", "hotspot"),
        )
        services = offspot["containers"]["services"]
        self.assertEqual(
            services["adminui"]["environment"]["ADMIN_USERNAME"], "teacher"
        )
        self.assertEqual(
            services["adminui"]["environment"]["ADMIN_PASSWORD"], "hotspot-admin-pw"
        )

    def test_the_base_image_is_the_one_the_settings_name(self):
        self.assertEqual(
            self.data["base"],
            {
                "source": "https://drive.hotspot.kiwix.org/base/offspot-base-arm64-1.4.2.img",
                "rootfs_size": 3_716_153_344,
            },
        )

    def test_the_dashboard_lists_both_zims_and_both_packages_without_icons(self):
        services = self.data["offspot"]["containers"]["services"]
        for service in ("home", "kiwix", "files", "reverse-proxy", "home-portal"):
            self.assertIn(service, services)
        dashboard = yaml.safe_load(
            files_of(self.recipe.text)["/data/contents/dashboard.yaml"]["content"]
        )
        self.assertEqual(dashboard["metadata"]["fqdn"], "school.hotspot")
        self.assertEqual(
            [package["ident"] for package in dashboard["packages"]],
            [TYPED_ZIM["ident"], "wiktionary_fr_all", FILES_PACKAGE, APP_PACKAGE],
        )
        self.assertEqual({package["icon"] for package in dashboard["packages"]}, {""})

    def test_zims_land_in_kiwix_serves_folder_with_their_checksums(self):
        files = files_of(self.recipe.text)
        typed = files["/data/contents/zims/openZIM_wikipedia_fr_test_maxi.zim"]
        # download.kiwix.org is fetched from Kiwix's mirror, as Kiwix does.
        self.assertEqual(
            typed["url"],
            "https://mirror.download.kiwix.org/zim/wikipedia/"
            "wikipedia_fr_test_maxi_2024-06.zim",
        )
        self.assertEqual(
            typed["checksum"],
            {"algo": "md5", "value": TYPED_ZIM["checksum_url"], "kind": "url"},
        )
        simple = files["/data/contents/zims/wiktionary_fr_all.zim"]
        self.assertEqual((simple["url"], simple["size"]), (SIMPLE_ZIM["url"], 50 * MIB))
        self.assertEqual(simple["checksum"]["algo"], "sha-256")

    def test_the_catalogs_files_and_app_packages_are_installed_as_offspot_does(self):
        files = files_of(self.recipe.text)
        nomad = app_catalog[FILES_PACKAGE]
        entry = files[f"/data/contents/files/{FILES_PACKAGE}"]
        self.assertEqual((entry["url"], entry["via"]), (nomad.download_url, "zip"))
        manager = app_catalog[APP_PACKAGE]
        services = self.data["offspot"]["containers"]["services"]
        self.assertEqual(services[manager.domain]["image"], manager.image)
        idents = {image["ident"] for image in self.data["oci_images"]}
        self.assertIn(manager.image, idents)

    def test_the_branding_goes_into_the_yaml_as_base64_files(self):
        files = files_of(self.recipe.text)
        logo = files[str(BRANDING_PATH / "horizontal-logo-light.png")]
        favicon = files[str(BRANDING_PATH / "square-logo.svg")]
        self.assertEqual((logo["via"], logo["size"]), ("base64", len(PNG)))
        self.assertEqual((favicon["via"], favicon["size"]), ("base64", len(SVG)))

    def test_the_same_configuration_renders_the_same_text(self):
        again = render(configuration(), branding={"logo": PNG, "favicon": SVG})
        self.assertEqual(again, self.recipe)

    def test_a_fixed_output_size_is_written_and_honoured_by_offspot_config(self):
        fixed = render(configuration(), output_size=64 * 10**9)
        self.assertEqual(yaml.safe_load(fixed.text)["output"]["size"], 64 * 10**9)
        self.assertEqual(MainConfig.read_from(fixed.text).output.size, 64 * 10**9)


class NoNetworkTests(SimpleTestCase):
    def test_rendering_opens_no_connection_even_with_icons_in_the_catalog(self):
        self.assertTrue(app_catalog[FILES_PACKAGE].icon_url)  # what is not fetched
        attempts = []

        def unplugged(*args, **kwargs):
            attempts.append(args)
            # Not an OSError: urllib3 would retry that, for minutes.
            raise RuntimeError("the network is unplugged")

        with (
            mock.patch.object(socket, "getaddrinfo", unplugged),
            mock.patch.object(socket.socket, "connect", unplugged),
            mock.patch.object(socket.socket, "connect_ex", unplugged),
        ):
            recipe = render(configuration(), branding={"logo": PNG})
            MainConfig.read_from(recipe.text)
        self.assertEqual(attempts, [])
        self.assertGreater(recipe.min_size, 0)


class PercentEncodedNameTests(SimpleTestCase):
    def test_an_encoded_file_name_lands_decoded(self):
        cases = {
            "Wikipedia%20en%20bref.zim": "Wikipedia en bref.zim",
            "notes%23no%201%20%26%202.zim": "notes#no 1 & 2.zim",
            "%C3%A9t%C3%A9%20%E6%97%A5%E6%9C%AC.zim": "été 日本.zim",
        }
        entries = [
            {**SIMPLE_ZIM, "url": f"http://127.0.0.1:9/zims/{encoded}"}
            for encoded in cases
        ]
        recipe = render(configuration(contents=entries))
        targets = set(files_of(recipe.text))
        for decoded in cases.values():
            self.assertIn(f"/data/contents/zims/{decoded}", targets)
        for encoded in cases:
            self.assertNotIn(f"/data/contents/zims/{encoded}", targets)


@override_settings(HOTSPOT_KIWIX_MIRROR="")
class RefusalTests(SimpleTestCase):
    def setUp(self):
        # The messages' words, whatever language an earlier test left active.
        self.enterContext(translation.override("en"))

    def refused(self, **fields) -> dict:
        with self.assertRaises(ValidationError) as caught:
            render(configuration(**fields))
        return caught.exception.message_dict

    def test_an_ssid_offspot_refuses_is_a_field_error(self):
        errors = self.refused(ssid="Kiwix+Ecole")
        self.assertIn("may not contain +", " ".join(errors["ssid"]))

    def test_a_time_zone_offspot_refuses_is_a_field_error(self):
        self.assertIn(
            "Europe/Paris", " ".join(self.refused(timezone="Etc/GMT+1")["timezone"])
        )

    def test_a_domain_that_is_no_host_name_is_a_field_error(self):
        self.assertIn("my-school", " ".join(self.refused(domain="-school")["domain"]))

    def test_an_admin_password_offspot_cannot_pass_on_is_a_field_error(self):
        errors = self.refused(admin_password="pass:word,1")
        self.assertIn(", : and $", " ".join(errors["admin_password"]))

    def test_a_package_missing_from_offspots_catalog_is_a_content_error(self):
        errors = self.refused(contents=[{"kind": "package", "ident": "nope.example"}])
        self.assertIn("Content entry 1", errors["contents"][0])
        self.assertIn("offspot-config's catalog", errors["contents"][0])

    def test_two_zims_landing_on_the_same_file_are_refused(self):
        twin = {**TYPED_ZIM, "url": "https://example.org/other.zim"}
        errors = self.refused(contents=[TYPED_ZIM, twin])
        self.assertIn("Content entry 2", errors["contents"][0])
        self.assertIn("openZIM_wikipedia_fr_test_maxi.zim", errors["contents"][0])

    def test_a_branding_image_that_is_not_an_image_is_a_field_error(self):
        with self.assertRaises(ValidationError) as caught:
            render(configuration(), branding={"logo": b"GIF89a..."})
        self.assertIn(
            "PNG, JPEG or SVG", caught.exception.message_dict["branding_logo"][0]
        )

    def test_a_field_of_the_wrong_type_is_a_content_error_not_a_crash(self):
        errors = self.refused(contents=[{**TYPED_ZIM, "languages": "fra"}])
        self.assertIn("languages", errors["contents"][0])
