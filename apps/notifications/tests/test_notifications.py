"""Notification e-mails: who gets which, in their language, through rq."""

import django_rq
from django.conf import settings
from django.core import mail
from django.db import connection
from django.test import TestCase, override_settings
from rq.worker import SimpleWorker

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.notifications.jobs import send_notification
from apps.notifications.models import PendingNotification
from apps.notifications.services import KINDS, notify, queue_pending
from apps.scheduler.models import Task
from apps.scheduler.services.sweeper import sweep
from apps.scheduler.testing import World, order


class NotificationTests(TestCase):
    def setUp(self):
        self.world = World()
        self.order = order(self.world.client, quantity=2)
        self.slot = self.world.writer.slots.get(name="slot-1")
        mail.outbox.clear()

    def context(self):
        task = Task.objects.create(order=self.order, kind="write", copy_number=1)
        return {
            "order_id": str(self.order.pk),
            "task_id": str(task.pk),
            "slot_id": str(self.slot.pk),
            "worker_id": str(self.world.writer.pk),
            "host": "host-1",
            "slot_name": "slot-1",
            "download_url": "http://127.0.0.1:8080/x.img",
            "message": "disk full",
        }

    def test_every_kind_renders_in_english_and_french(self):
        context = self.context()
        for language in ("en", "fr"):
            self.world.client.language = language
            self.world.client.save()
            for kind in sorted(KINDS):
                with self.subTest(kind=kind, language=language):
                    mail.outbox.clear()
                    self.assertGreater(send_notification(kind, context), 0)
                    for message in mail.outbox:
                        self.assertNotIn("{", message.subject + message.body)
                        self.assertNotIn("\n", message.subject)

    def test_operators_are_asked_to_insert_a_card_in_a_named_slot(self):
        send_notification("insert_card", self.context())
        self.assertEqual([m.to for m in mail.outbox], [["ops@example.org"]])
        self.assertEqual(
            mail.outbox[0].subject, "Insert a card in slot slot-1 of host-1"
        )
        self.assertIn("8 GB card", mail.outbox[0].body)

    @override_settings(OPERATOR_EMAILS=["desk@example.org", "ops@example.org"])
    def test_operator_addresses_are_managers_and_the_configured_list_once_each(self):
        make_user(Role.ADMIN, "boss", email="boss@example.org")
        send_notification("worker_problem", self.context())
        self.assertEqual(
            sorted(m.to[0] for m in mail.outbox),
            ["boss@example.org", "desk@example.org", "ops@example.org"],
        )

    def test_a_french_client_reads_french(self):
        self.world.client.language = "fr"
        self.world.client.save()
        send_notification("order_placed", self.context())
        self.assertEqual(mail.outbox[0].subject, "Commande reçue : School kit")
        self.assertIn("Nous avons bien reçu votre commande", mail.outbox[0].body)

    @override_settings(OPERATOR_EMAILS=["desk@example.org"], LANGUAGE_CODE="en")
    def test_each_manager_reads_operator_mail_in_their_own_language(self):
        self.world.manager.language = "fr"
        self.world.manager.save()
        send_notification("worker_problem", {**self.context(), "silent_minutes": "3"})
        by_address = {m.to[0]: m for m in mail.outbox}
        self.assertEqual(set(by_address), {"desk@example.org", "ops@example.org"})
        french, english = by_address["ops@example.org"], by_address["desk@example.org"]
        self.assertIn("Problème d'agent", french.subject)
        self.assertIn("Il ne donne plus de nouvelles depuis 3 minutes.", french.body)
        # An address of OPERATOR_EMAILS has no account: the site's language.
        self.assertIn("Worker problem", english.subject)
        self.assertIn("It stopped reporting 3 minutes ago.", english.body)
        self.assertNotIn("disk full", english.body)

    def test_the_shipment_goes_to_the_recipient_in_the_hotspot_language(self):
        self.order.shipment_tracking = "LP123"
        self.order.save()
        send_notification("order_shipped", self.context())
        by_address = {m.to[0]: m for m in mail.outbox}
        self.assertIn("LP123", by_address["ada@example.org"].body)
        # The order's configuration is French: the recipient reads French.
        self.assertIn("expédiées", by_address["ada@example.org"].subject)

    @override_settings(SITE_URL="https://cards.example.org")
    def test_every_email_links_to_the_orders_page_its_reader_opens(self):
        """Clients get their order's page, operators the operators' one."""
        client_page = f"https://cards.example.org/orders/{self.order.pk}/"
        ops_page = f"https://cards.example.org/ops/orders/{self.order.pk}/"
        context = self.context()
        for language in ("en", "fr"):
            self.world.client.language = language
            self.world.client.save()
            for kind in sorted(KINDS):
                with self.subTest(kind=kind, language=language):
                    mail.outbox.clear()
                    send_notification(kind, context)
                    self.assertTrue(mail.outbox)
                    for message in mail.outbox:
                        if message.to == ["ada@example.org"]:
                            # The cards' recipient may have no account.
                            self.assertNotIn("/orders/", message.body)
                        elif message.to == [self.world.client.email]:
                            self.assertIn(client_page, message.body)
                            self.assertNotIn("/ops/", message.body)
                        else:
                            self.assertIn(ops_page, message.body)

    def test_the_owner_opens_the_linked_page(self):
        send_notification("order_placed", self.context())
        path = mail.outbox[0].body.split(settings.SITE_URL)[-1].split()[0]
        self.client.force_login(self.world.client)
        self.assertContains(self.client.get(path), 'data-testid="order-progress"')

    def test_an_unknown_kind_is_a_programming_error(self):
        with self.assertRaises(ValueError):
            notify("order_exploded", order_id=self.order.pk)


class QueueTests(TestCase):
    """The real path: notify() puts a job on Redis after the commit, an rq worker
    sends it."""

    @override_settings(
        RQ_QUEUES={"default": {"URL": "redis://127.0.0.1:6379/15", "ASYNC": True}}
    )
    def test_notify_queues_on_redis_after_commit_and_an_rq_worker_sends(self):
        world = World()
        queue = django_rq.get_queue("default", is_async=True)
        queue.empty()
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            placed = order(world.client)
        if connection.features.supports_transactions:
            self.assertEqual(queue.count, 0)  # nothing before the commit
            for callback in callbacks:
                callback()
        # MongoDB has no transactions here: "after the commit" is at once.
        self.assertEqual(queue.count, 1)
        mail.outbox.clear()
        worker = django_rq.get_worker("default", worker_class=SimpleWorker)
        worker.work(burst=True)
        self.assertEqual(queue.count, 0)
        self.assertEqual([m.to for m in mail.outbox], [["client@example.org"]])
        self.assertIn(str(placed.pk), mail.outbox[0].body)


class OutageTests(TestCase):
    """Redis down: the notification waits in the database, and the sweep after
    Redis is back queues it once."""

    DOWN = {"default": {"URL": "redis://127.0.0.1:1/0", "ASYNC": True}}
    UP = {"default": {"URL": "redis://127.0.0.1:6379/15", "ASYNC": True}}

    def test_a_notification_queued_while_redis_is_down_is_sent_after(self):
        world = World()
        with override_settings(RQ_QUEUES=self.DOWN):
            with self.captureOnCommitCallbacks(execute=True):
                placed = order(world.client)
            [pending] = PendingNotification.objects.all()
            self.assertEqual(pending.kind, "order_placed")
            # Still down: the sweep leaves it where it is.
            self.assertEqual(queue_pending(), 0)
            self.assertEqual(PendingNotification.objects.count(), 1)
        with override_settings(RQ_QUEUES=self.UP):
            queue = django_rq.get_queue("default", is_async=True)
            queue.empty()
            self.assertEqual(sweep().mailed, 1)
            self.assertEqual(sweep().mailed, 0)  # once
            self.assertEqual(queue.count, 1)
            mail.outbox.clear()
            django_rq.get_worker("default", worker_class=SimpleWorker).work(burst=True)
        self.assertFalse(PendingNotification.objects.exists())
        self.assertEqual([m.to for m in mail.outbox], [["client@example.org"]])
        self.assertIn(str(placed.pk), mail.outbox[0].body)
