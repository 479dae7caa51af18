"""Leases fence every change: a worker that lost its lease gets 409 and changes
nothing; repeated events change nothing either."""

from datetime import timedelta
from uuid import uuid4

import time_machine
from django.test import TestCase
from django.utils import timezone

from apps.orders.pipeline import cancel_order
from apps.scheduler.models import Task, TaskEvent, TaskStatus
from apps.scheduler.services.sweeper import sweep
from apps.scheduler.testing import World, api, event, order


class LeaseTests(TestCase):
    def setUp(self):
        self.world = World()
        self.order = order(self.world.client)
        self.creator = api(self.world.creator_account)
        answer = self.creator.post(
            "/api/v1/tasks/claim/",
            {"worker": str(self.world.creator.pk)},
            format="json",
        ).json()
        self.task = answer["task"]
        self.url = f"/api/v1/tasks/{self.task['id']}"

    def renew(self, lease_id=None, **body):
        return self.creator.post(
            f"{self.url}/renew/",
            {"lease_id": str(lease_id or self.task["lease_id"]), **body},
            format="json",
        )

    def snapshot(self):
        row = Task.objects.get(pk=self.task["id"])
        return (row.status, row.phase, row.percent, row.lease_id, row.worker_id)

    def test_renewal_extends_the_lease_and_records_progress(self):
        with time_machine.travel(timezone.now() + timedelta(seconds=60), tick=False):
            response = self.renew(phase="downloading content", percent=12.5)
            self.assertEqual(response.status_code, 200, response.content)
            expires = Task.objects.get(pk=self.task["id"]).lease_expires_at
            # MongoDB keeps milliseconds only.
            self.assertAlmostEqual(
                expires,
                timezone.now() + timedelta(seconds=120),
                delta=timedelta(milliseconds=1),
            )
        status, phase, percent, *_ = self.snapshot()
        self.assertEqual(
            (status, phase, percent), ("running", "downloading content", 12.5)
        )

    def test_an_expired_lease_gets_409_on_renew_and_events_and_changes_nothing(self):
        self.renew(phase="building", percent=30)
        later = timezone.now() + timedelta(seconds=121)
        with time_machine.travel(later, tick=False):
            before = self.snapshot()
            renew = self.renew(phase="uploading", percent=90)
            self.assertEqual(renew.status_code, 409)
            self.assertEqual(renew.json()["code"], "lease_lost")
            done = event(
                self.creator, self.task["id"], self.task["lease_id"], "succeeded"
            )
            self.assertEqual(done.status_code, 409)
            self.assertEqual(self.snapshot(), before)
            self.assertFalse(TaskEvent.objects.filter(type="succeeded").exists())

    def test_after_the_sweeper_gives_the_task_to_another_worker_the_old_lease_is_dead(
        self,
    ):
        later = timezone.now() + timedelta(seconds=121)
        with time_machine.travel(later, tick=False):
            report = sweep()
            self.assertEqual(report.requeued, 1)
            # The warehouse still reports in (its heartbeat would have).
            self.world.warehouse.last_seen = timezone.now()
            self.world.warehouse.save()
            task = Task.objects.get(pk=self.task["id"])
            self.assertEqual((task.status, task.attempts), ("pending", 1))
            from apps.scheduler.services.workers import register_worker

            other = register_worker(
                account=self.world.creator_account, kind="creator", host="builder-2"
            )
            again = self.creator.post(
                "/api/v1/tasks/claim/", {"worker": str(other.pk)}, format="json"
            ).json()["task"]
            self.assertEqual(again["id"], self.task["id"])
            self.assertEqual(self.renew().status_code, 409)
            stale = event(
                self.creator, self.task["id"], self.task["lease_id"], "failed"
            )
            self.assertEqual(stale.status_code, 409)
            current = Task.objects.get(pk=self.task["id"])
            self.assertEqual(str(current.lease_id), again["lease_id"])
            self.assertEqual(current.worker_id, other.pk)
            self.assertEqual(current.status, "leased")

    def test_another_account_cannot_use_a_lease_it_learned(self):
        from apps.accounts.models import Role
        from apps.accounts.testing import make_user

        intruder = api(make_user(Role.CREATOR, "intruder"))
        before = self.snapshot()
        response = intruder.post(
            f"{self.url}/renew/",
            {"lease_id": self.task["lease_id"], "phase": "x"},
            format="json",
        )
        self.assertEqual(response.status_code, 409)
        self.assertEqual(self.snapshot(), before)

    def test_a_repeated_event_is_applied_once(self):
        body = {
            "lease_id": self.task["lease_id"],
            "event_id": str(uuid4()),
            "type": "log",
            "text": "line\n",
        }
        first = self.creator.post(f"{self.url}/events/", body, format="json")
        second = self.creator.post(f"{self.url}/events/", body, format="json")
        self.assertEqual(first.json()["duplicate"], False)
        self.assertEqual(second.json()["duplicate"], True)
        self.assertEqual(Task.objects.get(pk=self.task["id"]).log_tail, "line\n")
        self.assertEqual(TaskEvent.objects.filter(type="log").count(), 1)

    def test_a_success_repeated_after_its_answer_was_lost_is_not_a_409(self):
        self.creator.post(
            f"{self.url}/image/",
            {
                "lease_id": self.task["lease_id"],
                "file_name": "a.img",
                "size": 10,
                "sha256": "1" * 64,
                "bmap_name": "a.bmap",
                "bmap_size": 5,
                "bmap_sha256": "2" * 64,
            },
            format="json",
        )
        body = {
            "lease_id": self.task["lease_id"],
            "event_id": str(uuid4()),
            "type": "succeeded",
        }
        first = self.creator.post(f"{self.url}/events/", body, format="json")
        self.assertEqual(first.status_code, 200, first.content)
        again = self.creator.post(f"{self.url}/events/", body, format="json")
        self.assertEqual(again.status_code, 200)
        self.assertTrue(again.json()["duplicate"])
        self.assertEqual(TaskEvent.objects.filter(type="succeeded").count(), 1)

    def test_a_retryable_failure_requeues_within_the_budget_then_fails_the_order(self):
        for attempt in range(1, 4):
            response = event(
                self.creator,
                self.task["id"],
                self.task["lease_id"],
                "failed",
                error=f"mke2fs exited 1 (attempt {attempt})",
            )
            self.assertEqual(response.status_code, 200, response.content)
            task = Task.objects.get(pk=self.task["id"])
            if attempt < 3:
                self.assertEqual((task.status, task.attempts), ("pending", attempt))
                self.task = self.creator.post(
                    "/api/v1/tasks/claim/",
                    {"worker": str(self.world.creator.pk)},
                    format="json",
                ).json()["task"]
        self.assertEqual(task.status, TaskStatus.FAILED)
        self.order.refresh_from_db()
        self.assertEqual(self.order.status, "failed")
        self.assertIn("attempt 3", self.order.failure_reason)

    def test_cancel_is_seen_at_renewal_and_acknowledged(self):
        cancel_order(order=self.order, actor=self.world.client)
        renewal = self.renew()
        self.assertEqual(renewal.status_code, 200)
        self.assertTrue(renewal.json()["cancel"])
        success = event(
            self.creator, self.task["id"], self.task["lease_id"], "succeeded"
        )
        self.assertEqual(success.status_code, 409)
        self.assertEqual(success.json()["code"], "canceled")
        done = event(self.creator, self.task["id"], self.task["lease_id"], "canceled")
        self.assertEqual(done.status_code, 200)
        self.assertEqual(Task.objects.get(pk=self.task["id"]).status, "canceled")

    def test_an_unrequested_cancel_and_an_unknown_event_are_400(self):
        response = event(
            self.creator, self.task["id"], self.task["lease_id"], "canceled"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("type", response.json())
        response = event(
            self.creator, self.task["id"], self.task["lease_id"], "exploded"
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(self.snapshot()[0], "leased")
