"""The sweeper: re-queues, budgets, timeouts, offline workers, expiry, repairs."""

import io
from datetime import timedelta
from unittest import mock

import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import OperationalError
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from apps.orders import pipeline
from apps.orders.models import OrderStatus
from apps.scheduler.management.commands import sweep as sweep_command
from apps.scheduler.models import (
    ImageState,
    Slot,
    Task,
    TaskEvent,
    TaskKind,
    TaskStatus,
    Worker,
)
from apps.scheduler.services.claims import claim_task
from apps.scheduler.services.leases import renew
from apps.scheduler.services.sweeper import sweep
from apps.scheduler.testing import World, order
from apps.scheduler.testing import image as make_image


def later(seconds):
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=False)


class SweeperTests(TestCase):
    def setUp(self):
        self.world = World()

    def keep_warehouse_online(self):
        self.world.warehouse.last_seen = timezone.now()
        self.world.warehouse.save()

    def test_an_expired_lease_is_requeued_with_one_more_attempt(self):
        placed = order(self.world.client)
        task = claim_task(worker=self.world.creator).task
        with later(119):
            self.assertEqual(sweep().requeued, 0)
        with later(121):
            report = sweep()
        self.assertEqual(report.requeued, 1)
        task.refresh_from_db()
        self.assertEqual(task.status, TaskStatus.PENDING)
        self.assertEqual(task.attempts, 1)
        self.assertIsNone(task.lease_id)
        self.assertIsNone(task.worker_id)
        self.assertEqual(task.error, "lease expired")
        self.assertTrue(TaskEvent.objects.filter(task=task, type="requeued").exists())
        placed.refresh_from_db()
        self.assertEqual(placed.status, OrderStatus.BUILDING)

    def test_when_the_attempt_budget_is_spent_the_task_and_order_fail(self):
        placed = order(self.world.client)
        moment = timezone.now()
        for _attempt in range(3):
            with time_machine.travel(moment, tick=False):
                self.keep_warehouse_online()
                self.assertIsNotNone(claim_task(worker=self.world.creator).task)
            moment += timedelta(seconds=121)
            with time_machine.travel(moment, tick=False):
                report = sweep()
        self.assertEqual(report.failed, 1)
        task = Task.objects.get()
        self.assertEqual(task.status, TaskStatus.FAILED)
        placed.refresh_from_db()
        self.assertEqual(placed.status, OrderStatus.FAILED)
        self.assertIn("after 3 attempts", placed.failure_reason)

    @override_settings(PHASE_TIMEOUT_SECONDS=600)
    def test_a_task_stuck_in_one_phase_is_taken_back_although_it_renews(self):
        order(self.world.client)
        task = claim_task(worker=self.world.creator).task
        start = timezone.now()
        renew(task=task, lease_id=task.lease_id, phase="building")
        for minutes in range(1, 10):
            with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
                renew(task=task, lease_id=task.lease_id)
                self.assertEqual(sweep().timed_out, 0)
        with time_machine.travel(start + timedelta(minutes=10, seconds=1), tick=False):
            renew(task=task, lease_id=task.lease_id)
            report = sweep()
        self.assertEqual(report.timed_out, 1)
        task.refresh_from_db()
        self.assertEqual(task.status, TaskStatus.PENDING)
        self.assertIn("phase 'building' timed out", task.error)

    def test_a_canceled_task_whose_worker_vanished_ends_canceled(self):
        placed = order(self.world.client)
        claim_task(worker=self.world.creator)
        pipeline.cancel_order(order=placed, actor=self.world.client)
        with later(121):
            report = sweep()
        self.assertEqual(report.canceled, 1)
        self.assertEqual(Task.objects.get().status, TaskStatus.CANCELED)

    def test_silent_workers_are_marked_offline_once_and_operators_told(self):
        with later(121), self.captureOnCommitCallbacks(execute=True):
            Worker.objects.filter(pk=self.world.creator.pk).update(
                last_seen=timezone.now()
            )
            mail.outbox.clear()
            report = sweep()
            again = sweep()
            writer = Worker.objects.get(pk=self.world.writer.pk)
            self.assertFalse(writer.online)
        self.assertEqual(report.offline, 2)  # the host's downloader and writer
        self.assertEqual(again.offline, 0)
        self.assertIsNotNone(writer.offline_since)
        self.assertEqual(set(Slot.objects.values_list("state", flat=True)), {"offline"})
        self.assertEqual(len(mail.outbox), 2)
        self.assertIn("stopped reporting 2 minutes ago", mail.outbox[0].body)
        self.assertIsNone(Worker.objects.get(pk=self.world.creator.pk).offline_since)

    def test_orders_expire_after_retention_and_their_images_become_deletable(self):
        placed = order(self.world.client, kind="download", quantity=1)
        image = make_image(placed, self.world.warehouse)
        placed.move_to(OrderStatus.BUILDING)
        placed.move_to(OrderStatus.BUILT, image=image)
        placed.refresh_from_db()
        with time_machine.travel(placed.expires_at - timedelta(seconds=1), tick=False):
            self.assertEqual(sweep().expired, 0)
        with time_machine.travel(placed.expires_at, tick=False):
            report = sweep()
        self.assertEqual((report.expired, report.deletable), (1, 1))
        placed.refresh_from_db()
        image.refresh_from_db()
        self.assertEqual(placed.status, OrderStatus.EXPIRED)
        self.assertEqual(image.state, ImageState.DELETABLE)

    def test_a_step_cut_short_by_a_crash_is_finished_by_the_sweeper(self):
        placed = order(self.world.client, quantity=2)
        image = make_image(placed, self.world.warehouse)
        # The process died right after marking the image verified.
        self.assertEqual(sweep().repaired, 1)
        placed.refresh_from_db()
        self.assertEqual(placed.status, OrderStatus.BUILT)
        download = Task.objects.get(order=placed, kind=TaskKind.DOWNLOAD)
        # ... and again right after the download succeeded.
        Task.objects.filter(pk=download.pk).update(
            status=TaskStatus.SUCCEEDED, host="host-1"
        )
        self.assertEqual(sweep().repaired, 1)
        writes = Task.objects.filter(order=placed, kind=TaskKind.WRITE)
        self.assertEqual(writes.count(), 2)
        self.assertEqual(sweep().repaired, 0)  # nothing left to repair
        pipeline.on_write_claimed(writes[0])
        writes.update(status=TaskStatus.SUCCEEDED)
        self.assertEqual(sweep().repaired, 1)
        placed.refresh_from_db()
        self.assertEqual(placed.status, OrderStatus.PENDING_SHIPMENT)
        self.assertEqual(image.pk, placed.image_id)

    def test_the_sweep_command_runs_one_pass_and_prints_the_report(self):
        out = io.StringIO()
        call_command("sweep", stdout=out)
        self.assertIn("sweep: requeued 0", out.getvalue())

    def test_the_rq_job_sweeps(self):
        from apps.scheduler.jobs import sweep_job

        order(self.world.client)
        claim_task(worker=self.world.creator)
        with later(121):
            self.assertIn("requeued 1", sweep_job())


class SweepLoopTests(TransactionTestCase):
    """Not in a test transaction: the loop closes a broken connection, which
    would end the transaction a TestCase wraps each test in."""

    def test_the_sweep_loop_outlives_a_database_outage(self):
        """A pass that meets a database that is down is reported; the loop
        sweeps again at its next pass instead of dying."""
        passes = iter([OperationalError("server closed the connection"), None])
        naps = []

        def flaky_sweep():
            failure = next(passes)
            if failure is not None:
                raise failure
            return sweep()

        def nap(seconds):
            naps.append(seconds)
            if len(naps) == 2:
                raise KeyboardInterrupt  # how the loop is stopped

        out, err = io.StringIO(), io.StringIO()
        with (
            mock.patch.object(sweep_command, "sweep", flaky_sweep),
            mock.patch.object(sweep_command.time, "sleep", nap),
        ):
            call_command("sweep", "--loop", "--interval", "7", stdout=out, stderr=err)
        self.assertIn("sweep failed, next try in 7 s: server closed", err.getvalue())
        self.assertIn("sweep: requeued 0", out.getvalue())
        self.assertEqual(naps, [7, 7])
