"""The data step of orders' migration 0003: orders placed before recipes existed get
theirs, and their unfinished builds the new work."""

from importlib import import_module

from django.apps import apps
from django.test import TestCase

from apps.orders.models import Configuration, Order, OrderStatus
from apps.scheduler.models import Task, TaskKind, TaskStatus
from apps.scheduler.testing import World, configuration

migration = import_module(
    "apps.orders.migrations.0003_configuration_domain_order_recipe"
)


class FreezeRecipesTests(TestCase):
    def setUp(self):
        self.world = World()
        self.config = configuration(self.world.client)
        Configuration.objects.filter(pk=self.config.pk).update(image_bytes=0)

    def old_order(self, status=OrderStatus.PENDING, **config) -> Order:
        """An order as the previous version left it: no recipe, old work."""
        placed = Order.objects.create(
            owner=self.world.client,
            configuration=self.config,
            config={**self.config.snapshot(), **config},
            card_size_gb=8,
            recipient_name="Ada",
            recipient_email="ada@example.org",
            shipping_address="Paris",
            status=status,
        )
        Task.objects.create(
            order=placed,
            kind=TaskKind.CREATE,
            work={"config": placed.config, "card_size_gb": 8, "image_bytes": 1},
            needed_bytes=1,
        )
        return placed

    def test_an_order_to_build_gets_its_recipe_and_its_build_the_new_work(self):
        placed = self.old_order()
        migration.freeze_recipes(apps, None)
        placed.refresh_from_db()
        expected = self.config.render()
        self.assertEqual((placed.recipe, placed.image_bytes), expected)
        build = Task.objects.get(order=placed)
        self.assertEqual(
            build.work,
            {"upload_folder": f"orders/{placed.pk}"},
        )
        self.assertEqual(build.needed_bytes, expected.min_size)
        self.config.refresh_from_db()
        self.assertEqual(self.config.image_bytes, expected.min_size)

    def test_an_order_to_build_that_offspot_refuses_fails_saying_why(self):
        placed = self.old_order(ssid="Kiwix+Ecole")
        migration.freeze_recipes(apps, None)
        placed.refresh_from_db()
        self.assertEqual(placed.status, OrderStatus.FAILED)
        self.assertIn("ssid", placed.failure_reason)
        self.assertEqual(placed.events.get().status, OrderStatus.FAILED)
        self.assertEqual(Task.objects.get(order=placed).status, TaskStatus.CANCELED)

    def test_a_finished_order_keeps_no_recipe(self):
        placed = self.old_order(status=OrderStatus.SHIPPED)
        migration.freeze_recipes(apps, None)
        placed.refresh_from_db()
        self.assertEqual((placed.recipe, placed.status), ("", OrderStatus.SHIPPED))
