"""Anonymizing a finished order (pipeline.anonymize_order): the recipient, the
address, the tracking number and the hotspot's passwords are erased; the history
(events, tasks, the rest of the snapshot) is kept."""

from django.core.exceptions import ValidationError
from django.test import TestCase

from apps.orders import pipeline
from apps.orders.models import Order, OrderEvent, OrderStatus
from apps.scheduler.models import Task
from apps.scheduler.testing import World, order


class AnonymizeTests(TestCase):
    def setUp(self):
        self.world = World()
        self.order = order(self.world.client, recipient_phone="+33 1 23 45 67 89")

    def shipped(self) -> Order:
        Order.objects.filter(pk=self.order.pk).update(
            status=OrderStatus.PENDING_SHIPMENT
        )
        self.order.refresh_from_db()
        return pipeline.ship_order(
            order=self.order,
            actor=self.world.manager,
            carrier="La Poste",
            tracking="LP1",
        )

    def test_a_shipped_order_loses_its_personal_data_and_keeps_its_history(self):
        shipped = self.shipped()
        events_before = list(OrderEvent.objects.filter(order=shipped).values_list("pk"))
        tasks_before = Task.objects.filter(order=shipped).count()

        pipeline.anonymize_order(order=shipped, actor=self.world.manager)

        stored = Order.objects.get(pk=shipped.pk)
        for field in pipeline.PERSONAL_FIELDS:
            self.assertEqual(getattr(stored, field), "", field)
        self.assertEqual(stored.config["admin_password"], "")
        self.assertEqual(stored.config["wifi_password"], "")
        self.assertEqual(stored.recipe, "")
        # What is not personal stays: the hotspot, the carrier, the status.
        self.assertEqual(stored.config["name"], "School kit")
        self.assertEqual(stored.config["contents"], self.order.config["contents"])
        self.assertEqual(stored.shipment_carrier, "La Poste")
        self.assertEqual(stored.status, OrderStatus.SHIPPED)
        self.assertTrue(pipeline.is_anonymized(stored))
        self.assertEqual(Task.objects.filter(order=stored).count(), tasks_before)
        events = OrderEvent.objects.filter(order=stored).order_by("at")
        self.assertEqual(
            list(events.values_list("pk")[: len(events_before)]), events_before
        )
        last = events.last()
        self.assertEqual((last.actor, last.status), (self.world.manager, "shipped"))
        self.assertIn("manager", last.message)

    def test_a_canceled_order_may_be_anonymized(self):
        pipeline.cancel_order(order=self.order, actor=self.world.client)
        pipeline.anonymize_order(order=self.order, actor=self.world.manager)
        self.assertEqual(Order.objects.get(pk=self.order.pk).recipient_name, "")

    def test_an_active_order_is_refused_and_left_as_it_was(self):
        with self.assertRaises(ValidationError) as refused:
            pipeline.anonymize_order(order=self.order, actor=self.world.manager)
        self.assertIn("finished", refused.exception.message_dict["status"][0])
        stored = Order.objects.get(pk=self.order.pk)
        self.assertEqual(stored.recipient_email, "ada@example.org")
        self.assertEqual(stored.config["admin_password"], "hotspot-admin-pw")
        self.assertFalse(OrderEvent.objects.filter(message__contains="anonym").exists())

    def test_anonymizing_twice_is_refused_and_records_one_event(self):
        shipped = self.shipped()
        pipeline.anonymize_order(order=shipped, actor=self.world.manager)
        with self.assertRaises(ValidationError) as refused:
            pipeline.anonymize_order(order=shipped, actor=self.world.manager)
        self.assertIn("already", refused.exception.message_dict["status"][0])
        self.assertEqual(
            OrderEvent.objects.filter(
                order=shipped, message__contains="anonym"
            ).count(),
            1,
        )

    def test_an_order_whose_copy_in_hand_is_stale_is_not_erased_twice(self):
        shipped = self.shipped()
        stale = Order.objects.get(pk=shipped.pk)
        pipeline.anonymize_order(order=shipped, actor=self.world.manager)
        with self.assertRaises(ValidationError):
            pipeline.anonymize_order(order=stale, actor=self.world.manager)
        self.assertEqual(
            OrderEvent.objects.filter(
                order=shipped, message__contains="anonym"
            ).count(),
            1,
        )
