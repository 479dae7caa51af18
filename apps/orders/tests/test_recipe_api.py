"""Recipes through the API: content file names, offspot-config's refusals as field
errors, images sized to their content against the card ordered, and who may read
the frozen YAML."""

import yaml
from django.test import TestCase
from offspot_config.inputs.mainconfig import MainConfig

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders import pipeline
from apps.orders.cards import GIB, usable_bytes
from apps.orders.models import Configuration, Order
from apps.scheduler.models import Task, TaskKind, TaskStatus
from apps.scheduler.testing import ZIM, World, api, configuration, order
from apps.scheduler.testing import image as make_image

CONFIGURATIONS = "/api/v1/configurations/"
ORDERS = "/api/v1/orders/"


def zim_at(name: str, **fields) -> dict:
    return {**ZIM, "url": f"http://127.0.0.1:9/zims/{name}", **fields}


def config_body(**fields) -> dict:
    return {
        "name": "School kit",
        "ssid": "Kiwix",
        "domain": "school",
        "language": "fr",
        "timezone": "Europe/Paris",
        "admin_password": "hotspot-admin-pw",
        "contents": [dict(ZIM)],
        **fields,
    }


def order_body(config, **fields) -> dict:
    return {
        "configuration": str(config.pk),
        "card_size_gb": 8,
        "quantity": 2,
        "recipient_name": "Ada School",
        "recipient_email": "ada@example.org",
        "shipping_address": "1 rue de l'Ecole, Paris",
        **fields,
    }


class RecipeApiTestCase(TestCase):
    def setUp(self):
        self.world = World()
        self.client_api = api(self.world.client)

    def create_config(self, **fields):
        return self.client_api.post(
            CONFIGURATIONS, config_body(**fields), format="json"
        )

    def preview(self, config_id) -> dict:
        response = self.client_api.get(f"{CONFIGURATIONS}{config_id}/recipe/")
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()

    def assert_refused(self, response, field, *words) -> str:
        """A 400 naming ``field``, with ``words`` in its message; nothing stored."""
        self.assertEqual(response.status_code, 400, response.content)
        errors = response.json()
        self.assertIn(field, errors, errors)
        message = str(errors[field])
        for word in words:
            self.assertIn(word, message)
        return message


class ContentFileNameTests(RecipeApiTestCase):
    def test_percent_encoded_names_land_decoded_in_the_yaml(self):
        names = {
            "Wikipedia%20en%20bref.zim": "Wikipedia en bref.zim",
            "notes%23no%201%20%26%202.zim": "notes#no 1 & 2.zim",
            "%C3%A9t%C3%A9%20%E6%97%A5%E6%9C%AC.zim": "été 日本.zim",
        }
        response = self.create_config(contents=[zim_at(name) for name in names])
        self.assertEqual(response.status_code, 201, response.content)
        recipe = yaml.safe_load(self.preview(response.json()["id"])["recipe"])
        targets = {entry["to"] for entry in recipe["files"]}
        for decoded in names.values():
            self.assertIn(f"/data/contents/zims/{decoded}", targets)

    def test_names_that_cannot_be_files_are_refused_saying_why(self):
        cases = {
            "a%2Fb.zim": "contains a /",
            "a%00b.zim": "NUL",
            "..": "“..” is not a file name",
            "": "names no file",
        }
        for name, why in cases.items():
            with self.subTest(name=name):
                response = self.create_config(contents=[zim_at(name)])
                message = self.assert_refused(response, "contents", "Content entry 1")
                self.assertIn(why, message)
                self.assertIn("Rename the file", message)
        self.assertFalse(Configuration.objects.exists())

    def test_two_urls_with_the_same_decoded_name_are_refused(self):
        contents = [zim_at("a%20b.zim"), zim_at("../other/a%20b.zim")]
        response = self.create_config(contents=contents)
        self.assert_refused(response, "contents", "Content entry 2", "“a b.zim”")


class OffspotRefusalTests(RecipeApiTestCase):
    def test_what_offspot_refuses_is_a_400_field_error_never_a_500(self):
        cases = [
            ({"ssid": "Kiwix+Ecole"}, "ssid", "may not contain +"),
            ({"ssid": "#Kiwix"}, "ssid", "may not start with"),
            ({"timezone": "Etc/GMT+1"}, "timezone", "Europe/Paris"),
            ({"domain": "école"}, "domain", "letters, digits and dashes"),
            ({"admin_password": "pass:word"}, "admin_password", ", : and $"),
            (
                {"contents": [{"kind": "package", "ident": "nope.example"}]},
                "contents",
                "offspot-config's catalog",
            ),
            (
                {"contents": [{"kind": "package", "ident": "x", "url": ZIM["url"]}]},
                "contents",
                "only its ident",
            ),
            (
                {"contents": [{**ZIM, "checksum_url": "http://127.0.0.1:9/sum"}]},
                "contents",
                ".sha256, .md5",
            ),
        ]
        for fields, field, words in cases:
            with self.subTest(fields=fields):
                self.assert_refused(self.create_config(**fields), field, words)
        self.assertFalse(Configuration.objects.exists())

    def test_a_catalog_package_and_a_zim_with_an_ident_are_accepted(self):
        contents = [
            {
                "kind": "zim",
                "ident": "openZIM:wikipedia_fr_test:maxi",
                "title": "Wikipédia",
                "url": "http://127.0.0.1:9/wikipedia_fr_test_maxi_2024-06.zim",
                "size": 10**8,
                "md5": "b" * 32,
                "languages": ["fra"],
            },
            {"kind": "package", "ident": "nomad.offspot.kiwix.org"},
        ]
        response = self.create_config(contents=contents)
        self.assertEqual(response.status_code, 201, response.content)
        stored = Configuration.objects.get()
        self.assertEqual(stored.contents, contents)
        self.assertEqual(response.json()["image_bytes"], stored.render().min_size)

    def test_an_order_of_a_configuration_offspot_now_refuses_names_the_field(self):
        config = configuration(self.world.client)
        Configuration.objects.filter(pk=config.pk).update(ssid="Kiwix+Ecole")
        response = self.client_api.post(ORDERS, order_body(config), format="json")
        self.assert_refused(response, "configuration", "Fix the configuration", "ssid")
        self.assertFalse(Order.objects.exists())
        self.assertFalse(Task.objects.exists())


class ImageSizeTests(RecipeApiTestCase):
    def place(self, config, **fields):
        response = self.client_api.post(
            ORDERS, order_body(config, **fields), format="json"
        )
        self.assertEqual(response.status_code, 201, response.content)
        return Order.objects.get(pk=response.json()["id"])

    def test_the_same_content_on_8_and_128_gb_cards_freezes_the_same_image(self):
        config = configuration(self.world.client)
        small, big = (
            self.place(config, card_size_gb=8),
            self.place(config, card_size_gb=128),
        )
        self.assertEqual(small.recipe, big.recipe)
        self.assertEqual(small.image_bytes, big.image_bytes)
        self.assertEqual(yaml.safe_load(big.recipe)["output"], {"size": "auto"})
        builds = Task.objects.filter(kind=TaskKind.CREATE)
        self.assertEqual(
            sorted(builds.values_list("needed_bytes", flat=True)),
            [small.image_bytes, small.image_bytes],
        )
        for build in builds:
            # The recipe stays on the order; the creator fetches it with its task.
            self.assertEqual(build.work, {"upload_folder": f"orders/{build.order_id}"})

    def test_too_much_content_for_8_gb_is_refused_naming_the_card_that_fits(self):
        config = configuration(self.world.client, contents=[{**ZIM, "size": 20 * GIB}])
        response = self.client_api.post(ORDERS, order_body(config), format="json")
        over = (config.render().min_size - usable_bytes(8)) / GIB
        self.assert_refused(
            response, "card_size_gb", f"{over:.2f} GiB too much", "Choose a 32 GB card"
        )
        self.assertFalse(Order.objects.exists())
        self.place(config, card_size_gb=32)

    def test_the_copies_of_a_128_gb_order_need_a_128_gb_card(self):
        placed = order(self.world.client, card_size_gb=128, quantity=2)
        image = make_image(placed, self.world.warehouse, size=placed.image_bytes)
        download = pipeline.create_download_task(placed, image)
        Task.objects.filter(pk=download.pk).update(host="host-1")
        download.refresh_from_db()
        pipeline.create_write_tasks(placed, download)
        writes = Task.objects.filter(order=placed, kind=TaskKind.WRITE)
        self.assertEqual(
            list(writes.values_list("needed_bytes", flat=True)),
            [usable_bytes(128)] * 2,
        )
        self.assertEqual(writes.first().work["card_bytes"], usable_bytes(128))
        self.assertLess(placed.image_bytes, usable_bytes(8))  # the image is small

        host = api(self.world.host_account)

        def claim(capacity):
            response = host.post(
                "/api/v1/tasks/claim/",
                {
                    "worker": str(self.world.writer.pk),
                    "slot": "slot-1",
                    "card_capacity": capacity,
                },
                format="json",
            )
            self.assertEqual(response.status_code, 200, response.content)
            return response.json()

        refused = claim(63_864_569_856)  # a 64 GB card
        self.assertEqual(refused["code"], "card_too_small")
        self.assertIsNone(refused["task"])
        self.assertIn(str(usable_bytes(128)), refused["reason"])
        self.assertFalse(writes.filter(status=TaskStatus.LEASED).exists())
        taken = claim(127_865_454_592)  # a 128 GB card
        self.assertEqual(taken["task"]["kind"], "write")
        self.assertEqual(writes.filter(status=TaskStatus.LEASED).count(), 1)


class RecipeEndpointTests(RecipeApiTestCase):
    def setUp(self):
        super().setUp()
        self.placed = order(self.world.client, quantity=1)
        self.url = f"{ORDERS}{self.placed.pk}/recipe/"

    def test_the_owner_downloads_the_frozen_yaml_as_a_file(self):
        response = self.client_api.get(self.url)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response["Content-Type"], "application/yaml; charset=utf-8")
        self.assertIn("attachment", response["Content-Disposition"])
        self.assertEqual(response["Cache-Control"], "no-store")
        text = response.content.decode()
        self.assertEqual(text, self.placed.recipe)
        MainConfig.read_from(text)

    def test_the_schema_describes_the_yaml_download_as_the_mapping_it_is(self):
        schema = self.client.get("/api/schema/?format=json").json()
        answers = schema["paths"]["/api/v1/orders/{id}/recipe/"]["get"]["responses"]
        described = answers["200"]["content"]["application/yaml"]["schema"]
        self.assertEqual(described["type"], "object")
        body = yaml.safe_load(self.client_api.get(self.url).content)
        self.assertIsInstance(body, dict)

    def test_asked_for_json_the_recipe_comes_with_its_size(self):
        response = self.client_api.get(self.url, HTTP_ACCEPT="application/json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(
            response.json(),
            {"recipe": self.placed.recipe, "image_bytes": self.placed.image_bytes},
        )

    def test_staff_read_it_another_client_gets_404_and_anonymous_401(self):
        for user, status in (
            (self.world.manager, 200),
            (make_user(Role.ADMIN, "root"), 200),
            (make_user(Role.CLIENT, "eve"), 404),
            (self.world.creator_account, 403),
        ):
            with self.subTest(user=user.username):
                self.assertEqual(api(user).get(self.url).status_code, status)
        self.assertEqual(self.client_class().get(self.url).status_code, 401)

    def test_the_recipe_and_the_passwords_never_appear_in_order_answers(self):
        for url in (ORDERS, f"{ORDERS}{self.placed.pk}/"):
            with self.subTest(url=url):
                response = self.client_api.get(url)
                self.assertEqual(response.status_code, 200, response.content)
                self.assertNotIn(b"recipe", response.content)
                self.assertNotIn(b"hotspot-admin-pw", response.content)
                self.assertNotIn(b"offspot", response.content)

    def test_an_order_placed_before_recipes_were_kept_has_none_to_download(self):
        Order.objects.filter(pk=self.placed.pk).update(recipe="")
        response = self.client_api.get(self.url, HTTP_ACCEPT="application/json")
        self.assertEqual(response.status_code, 404, response.content)
        self.assertIn("before recipes", response.json()["detail"])

    def test_a_configuration_preview_gives_its_size_and_smallest_card(self):
        config = self.placed.configuration
        data = self.preview(config.pk)
        self.assertEqual(data["recipe"], self.placed.recipe)
        self.assertEqual(data["image_bytes"], self.placed.image_bytes)
        self.assertEqual(data["min_card_size_gb"], 8)
        other = api(make_user(Role.CLIENT, "eve")).get(
            f"{CONFIGURATIONS}{config.pk}/recipe/"
        )
        self.assertEqual(other.status_code, 404, other.content)

    def test_configuration_lists_show_the_size_saved_with_them(self):
        response = self.create_config(name="Second kit")
        self.assertEqual(response.status_code, 201, response.content)
        listed = self.client_api.get(CONFIGURATIONS).json()["results"]
        row = next(row for row in listed if row["name"] == "Second kit")
        stored = Configuration.objects.get(pk=row["id"])
        self.assertEqual(row["image_bytes"], stored.render().min_size)
        self.assertEqual(row["min_card_size_gb"], 8)
        self.assertNotIn("recipe", row)
