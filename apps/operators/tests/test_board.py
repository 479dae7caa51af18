"""The workshop board: each writer host with its slots, the instruction in each
("insert an 8 GB card", "take the card out"), the progress, the last card written,
a part that htmx refreshes by itself, and the same few queries however many
hosts, slots and waiting copies there are."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.operators.board import build_board
from apps.operators.tests.scene import PageTestCase
from apps.orders.models import OrderStatus
from apps.scheduler.models import SlotState, Task, TaskKind, TaskStatus, Worker
from apps.scheduler.services.workers import register_worker

BOARD = reverse("ops:board")
HOSTS = reverse("ops:board-hosts")


class BoardTestCase(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()

    def slots(self, host="host-1") -> dict:
        (view,) = [h for h in build_board() if h.name == host]
        return {slot.slot.name: slot for slot in view.slots}


class SlotInstructionTests(BoardTestCase):
    def test_empty_slots_ask_for_the_card_sizes_of_the_waiting_copies_oldest_first(
        self,
    ):
        older = self.shop.orders(1, OrderStatus.BUILT, quantity=2)[0]
        newer = self.shop.orders(1, OrderStatus.BUILT, card_size_gb=32)[0]
        self.shop.writes(older, copies=2)
        self.shop.writes(newer)
        slots = self.slots()
        self.assertEqual(
            [slots[name].insert_gb for name in ("slot-1", "slot-2", "slot-3")],
            [8, 8, 32],
        )
        self.assertEqual(slots["slot-1"].instruction, "Insert an empty 8 GB card.")
        self.assertEqual(slots["slot-3"].instruction, "Insert an empty 32 GB card.")
        self.assertIsNone(slots["slot-4"].insert_gb)
        self.assertIn("Nothing to write", slots["slot-4"].instruction)

    def test_a_writing_slot_shows_its_copy_and_progress_and_takes_no_new_card(self):
        order = self.shop.orders(1, OrderStatus.WRITING, quantity=2)[0]
        running, _waiting = self.shop.writes(order, copies=2)
        Task.objects.filter(pk=running.pk).update(status=TaskStatus.RUNNING)
        self.shop.put("slot-1", SlotState.WRITING, task=running, percent=37.6)
        slots = self.slots()
        self.assertEqual(slots["slot-1"].percent, 37.6)
        self.assertIn(
            "Writing copy 1 of 2 of “School kit”", slots["slot-1"].instruction
        )
        self.assertIn("leave the card in", slots["slot-1"].instruction)
        # The one copy still waiting asks for one card, in the next empty slot.
        self.assertEqual(slots["slot-2"].insert_gb, 8)
        self.assertIsNone(slots["slot-3"].insert_gb)

    def test_verifying_done_and_failed_slots_say_what_to_do(self):
        order = self.shop.orders(1, OrderStatus.WRITING, quantity=3)[0]
        verifying, done, failed = self.shop.writes(order, copies=3)
        self.shop.put("slot-1", SlotState.VERIFYING, task=verifying, percent=80)
        self.shop.put("slot-2", SlotState.DONE, task=done, percent=100)
        self.shop.put(
            "slot-3", SlotState.FAILED, task=failed, message="verify mismatch at 4096"
        )
        slots = self.slots()
        self.assertIn("Verifying copy 1", slots["slot-1"].instruction)
        self.assertEqual(slots["slot-2"].percent, 100)
        self.assertIn(
            "Done: take the card out and label it", slots["slot-2"].instruction
        )
        self.assertIn("copy 2 of 3", slots["slot-2"].instruction)
        self.assertEqual(
            slots["slot-3"].instruction,
            "Failed: take the card out. Why: verify mismatch at 4096",
        )
        self.assertEqual(slots["slot-3"].tone, "danger")

    def test_a_card_nobody_wants_is_to_be_taken_out_with_the_writers_reason(self):
        self.shop.put("slot-1", SlotState.CARD_PRESENT, message="Card too small.")
        slots = self.slots()
        self.assertEqual(
            slots["slot-1"].instruction,
            "This card is not used: Card too small. Take it out.",
        )
        self.assertIsNone(slots["slot-1"].percent)

    def test_every_slot_of_a_silent_writer_is_offline(self):
        order = self.shop.orders(1, OrderStatus.BUILT)[0]
        self.shop.writes(order)
        self.shop.put("slot-1", SlotState.WRITING, percent=50)
        Worker.objects.filter(pk=self.shop.writer.pk).update(
            last_seen=timezone.now() - timedelta(hours=1)
        )
        (host,) = build_board()
        self.assertFalse(host.online)
        self.assertEqual({s.state for s in host.slots}, {SlotState.OFFLINE})
        self.assertIn("not running", host.slots[0].instruction)
        self.assertIsNone(host.slots[1].insert_gb)

    def test_a_writer_renewing_a_lease_is_online_whatever_its_last_report(self):
        order = self.shop.orders(1, OrderStatus.WRITING)[0]
        (copy,) = self.shop.writes(order)
        Task.objects.filter(pk=copy.pk).update(
            status=TaskStatus.RUNNING,
            worker=self.shop.writer,
            lease_expires_at=timezone.now() + timedelta(minutes=1),
        )
        Worker.objects.filter(pk=self.shop.writer.pk).update(
            last_seen=timezone.now() - timedelta(hours=1)
        )
        self.assertTrue(build_board()[0].online)

    def test_an_empty_slot_names_the_last_card_written_there(self):
        order = self.shop.orders(1, OrderStatus.PENDING_SHIPMENT, quantity=2)[0]
        first, second = self.shop.writes(order, copies=2)
        slot = self.shop.slot("slot-1")
        now = timezone.now()
        Task.objects.filter(pk=first.pk).update(
            status=TaskStatus.SUCCEEDED, slot=slot, finished_at=now - timedelta(hours=1)
        )
        Task.objects.filter(pk=second.pk).update(
            status=TaskStatus.SUCCEEDED, slot=slot, finished_at=now
        )
        last = self.slots()["slot-1"].last_card
        self.assertIn("Last card written here: copy 2 of 2", last)
        self.assertEqual(self.slots()["slot-2"].last_card, "")

    def test_a_card_written_days_ago_is_not_named(self):
        order = self.shop.orders(1, OrderStatus.SHIPPED)[0]
        (old,) = self.shop.writes(order)
        Task.objects.filter(pk=old.pk).update(
            status=TaskStatus.SUCCEEDED,
            slot=self.shop.slot("slot-1"),
            finished_at=timezone.now() - timedelta(days=2),
        )
        self.assertEqual(self.slots()["slot-1"].last_card, "")

    def test_the_host_says_how_many_copies_wait_and_what_it_downloads(self):
        order = self.shop.orders(1, OrderStatus.BUILT, quantity=3)[0]
        self.shop.writes(order, copies=3)
        other = self.shop.orders(1, OrderStatus.BUILT)[0]
        Task.objects.create(
            order=other,
            kind=TaskKind.DOWNLOAD,
            host="host-1",
            status=TaskStatus.RUNNING,
            percent=61,
        )
        (host,) = build_board()
        self.assertEqual(host.waiting_copies, 3)
        self.assertEqual(host.download["percent"], 61)
        response = self.client.get(BOARD)
        self.assertContains(response, "3 copies wait for a card")
        self.assertContains(response, "3 \N{MULTIPLICATION SIGN} 8 GB (next:")
        self.assertContains(response, "Downloading the image of “School kit”: 61%")

    def test_copies_bound_to_another_host_are_not_asked_for_here(self):
        order = self.shop.orders(1, OrderStatus.BUILT)[0]
        self.shop.writes(order, host="host-2")
        self.assertIsNone(self.slots()["slot-1"].insert_gb)


class BoardPageTests(BoardTestCase):
    def test_hosts_slots_instructions_and_progress_have_stable_test_ids(self):
        order = self.shop.orders(1, OrderStatus.WRITING, quantity=2)[0]
        running, _waiting = self.shop.writes(order, copies=2)
        self.shop.put("slot-1", SlotState.WRITING, task=running, percent=42)
        slot = self.shop.slot("slot-1")
        response = self.client.get(BOARD)
        self.assertContains(response, 'data-testid="host" data-host="host-1"')
        self.assertContains(response, f'id="host-{self.shop.writer.pk}"')
        self.assertContains(
            response,
            f'id="slot-{slot.pk}" data-testid="slot" data-slot="slot-1" '
            'data-state="writing"',
        )
        self.assertContains(response, 'data-testid="slot-instruction"', count=4)
        self.assertContains(response, 'data-testid="slot-progress"', count=1)
        self.assertContains(response, 'aria-valuenow="42"')
        self.assertContains(
            response, 'data-slot="slot-2" data-state="empty" data-insert-gb="8"'
        )
        self.assertContains(response, "Insert an empty 8 GB card.")

    def test_the_slots_part_asks_htmx_to_refresh_it_every_few_seconds(self):
        response = self.client.get(BOARD)
        self.assertContains(response, f'hx-get="{HOSTS}"')
        self.assertContains(response, 'hx-trigger="every 3s"')
        self.assertContains(response, 'hx-swap="outerHTML"')
        self.assertContains(response, "/static/vendor/htmx-2.0.11/htmx.min.js")

    def test_the_part_is_the_hosts_alone_fresh_each_time_and_polls_again(self):
        self.shop.put("slot-1", SlotState.VERIFYING, percent=10)
        first = self.client.get(HOSTS, HTTP_HX_REQUEST="true")
        self.assertEqual(first["Cache-Control"], "no-store")
        html = first.content.decode()
        self.assertTrue(html.startswith('<div id="board-hosts"'), html[:80])
        self.assertNotIn("<html", html)
        self.assertIn('hx-trigger="every 3s"', html)
        self.assertIn('aria-valuenow="10"', html)
        self.shop.put("slot-1", SlotState.VERIFYING, percent=90)
        again = self.client.get(HOSTS, HTTP_HX_REQUEST="true")
        self.assertContains(again, 'aria-valuenow="90"')

    def test_a_workshop_without_writer_hosts_says_how_to_start_one(self):
        Worker.objects.filter(kind="writer").delete()
        response = self.client.get(BOARD)
        self.assertContains(response, 'data-testid="no-hosts"')


class BoardQueryTests(BoardTestCase):
    def grow(self):
        """Four more writer hosts of eight slots, dozens of waiting copies, cards
        being written and written cards in every slot's history."""
        now = timezone.now()
        for number in range(2, 6):
            account = make_user(Role.WRITER, f"host-account-{number}")
            writer = register_worker(
                account=account,
                kind="writer",
                host=f"host-{number}",
                slots=[
                    {"name": f"s{n}", "device_path": f"/dev/disk/by-path/{n}"}
                    for n in range(8)
                ],
            )
            orders = self.shop.orders(6, OrderStatus.WRITING, quantity=4)
            for order in orders:
                self.shop.writes(order, copies=4, host=f"host-{number}")
            tasks = list(Task.objects.filter(host=f"host-{number}"))
            for index, slot in enumerate(writer.slots.all()):
                Task.objects.filter(pk=tasks[index].pk).update(
                    status=TaskStatus.SUCCEEDED, slot=slot, finished_at=now
                )
                slot.state = SlotState.WRITING
                slot.task = tasks[index + 8]
                slot.percent = 12
                slot.save()

    def test_the_board_and_its_part_cost_the_same_queries_for_one_host_or_five(self):
        order = self.shop.orders(1, OrderStatus.WRITING, quantity=2)[0]
        written, copy = self.shop.writes(order, copies=2)
        Task.objects.filter(pk=written.pk).update(
            status=TaskStatus.SUCCEEDED,
            slot=self.shop.slot("slot-2"),
            finished_at=timezone.now(),
        )
        self.shop.put("slot-1", SlotState.WRITING, task=copy, percent=5)
        for page in (BOARD, HOSTS):
            self.client.get(page)  # warm-up
            with CaptureQueriesContext(connection) as one:
                self.client.get(page)
            if page == BOARD:
                self.grow()
            with self.assertNumQueries(len(one)):
                response = self.client.get(page)
            self.assertEqual(len(response.context["hosts"]), 5)
            self.assertEqual(sum(len(h.slots) for h in response.context["hosts"]), 36)
