"""The whole chain (demo.chain.Chain) on servers of its own, for the fault tests:
web service, sweeper, rq worker, warehouse, creator, downloader and a writer with
one loop-device slot, on a PostgreSQL cluster and a redis-server that the tests stop and
start (tests/faults/services.py). One chain serves a test module (another
fault module may import ``FaultChain`` and the ``fault_chain`` fixture); each test
places orders of its own and checks only those.
"""

from __future__ import annotations

import email
import os
import shutil
import signal
from pathlib import Path

import psycopg
import pytest

from demo.cards import LoopCardSlot, blank_card, loop_missing
from demo.catalog import ContentServer, catalog_entries, make_catalog
from demo.chain import Chain, free_port, wait_for
from tests.faults.services import PostgresCluster, RedisServer, missing
from workers.common.api import ApiError

#: A lease outlives every outage of the suite (services.OUTAGE_SECONDS), so a
#: task survives it in the hands of the worker that holds it, or it is lost
#: and the sweeper's requeue shows in the task's events.
LEASE_SECONDS = 60
FINISHED = {"pending_shipment", "shipped", "failed", "canceled", "expired"}
TOOLS = ("zimwriterfs", "sfdisk", "mformat", "mcopy", "mke2fs")
TOOLS += ("docker-registry", "skopeo")
#: cgroup v1's write limit per device: a slowed-down card is written for long
#: enough that a fault lands in the middle of it.
BLKIO = Path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device")


def skip_reason() -> str | None:
    """Why the fault tests cannot run here, or None. They run once, in the
    PostgreSQL pass of scripts/test.sh, as the end-to-end test does."""
    if os.environ.get("IMAGER_TEST_DB") != "postgres":
        return "IMAGER_TEST_DB=postgres (it runs once, in the PostgreSQL pass)"
    lacking = missing() or loop_missing()
    if lacking:
        return lacking
    if not BLKIO.exists():
        return f"{BLKIO} (cgroup v1 blkio, to slow a card down)"
    tools = [tool for tool in TOOLS if shutil.which(tool) is None]
    if tools:
        return f"the tools {', '.join(tools)}"
    return None


class FaultChain(Chain):
    """A Chain whose database and Redis are ``postgres`` and ``redis``."""

    def __init__(self, data: Path, postgres: PostgresCluster, redis: RedisServer):
        self.postgres, self.redis = postgres, redis
        super().__init__(
            data,
            port=free_port(),
            ftp_port=free_port(),
            env={
                "DATABASE_URL": postgres.url("imager"),
                "REDIS_URL": redis.url(0),
                "LEASE_SECONDS": str(LEASE_SECONDS),
                "IMAGER_RENEW": "2",
                # E-mails are files in data/mail (the file backend).
                "EMAIL_HOST": "",
                "OPERATOR_EMAILS": "ops@example.org",
            },
            poll=0.5,
            renew=2,
            sweep_interval=5,
        )
        self.slot: LoopCardSlot | None = None
        self.cards = self.demo / "cards"
        self.content: ContentServer | None = None
        self.entries: list[dict] = []
        self.placed: list[str] = []

    def start_all(self) -> None:
        self.migrate()
        self.accounts()
        self.start_web()
        self.start_jobs()
        self.start_warehouse()
        self.make_base_image()
        zims = make_catalog(self.demo / "catalog", sizes=(200_000, 400_000))
        self.content = ContentServer(self.demo / "catalog")
        self.entries = catalog_entries(zims, self.content.url)
        self.start_registry()
        self.start_creator("creator")
        self.start_downloader()
        self.slot = LoopCardSlot()
        self.start_writer({"slot-1": self.slot})

    def restart(self, name: str, start, sig: int = signal.SIGTERM) -> None:
        """Stop one child (SIGTERM: as systemd or docker restarts it) and start
        it again at once on the same ports."""
        self.children.kill(name, sig)
        start()

    def place(self, name: str, kind: str = "physical") -> str:
        order = self.place_order(self.entries, quantity=1, name=name, kind=kind)
        self.placed.append(order)
        return order

    def tidy(self, orders: list[str]) -> None:
        """After a test: cancel its orders that are still going (a failed test's
        copy would take the next test's card), take the card out, free the slot."""
        for order in orders:
            try:
                if self.order(order)["status"] not in FINISHED:
                    self.client("demo-manager").post(f"api/v1/orders/{order}/cancel/")
            except ApiError as exc:
                print(f"could not cancel order {order}: {exc}")
        if self.slot is not None:
            self.throttle(0)
            if self.slot.card is not None:
                self.slot.remove()

    def task(self, order_id: str, kind: str) -> dict | None:
        found = [t for t in self.tasks(order_id) if t["kind"] == kind]
        return found[0] if found else None

    def feed_card(self, name: str) -> Path:
        """Put a blank card in the slot, taking out a written one."""
        if self.slot.card is not None:
            self.slot.remove()
        card = blank_card(self.cards / f"{name}.img")
        self.slot.insert(card)
        return card

    def throttle(self, rate: int) -> None:
        """Limit (bytes/s) or free (0) writes to the slot's loop device."""
        BLKIO.write_text(f"{self.slot.rdev} {rate}\n")

    def slot_state(self) -> dict:
        return next(s for s in self.slots() if s["name"] == "slot-1")

    def wait_order(self, order_id: str, status: str, timeout: float) -> dict:
        def reached():
            order = self.order(order_id)
            assert order["status"] not in {"failed", "canceled"}, order
            return order if order["status"] == status else None

        return wait_for(
            reached,
            f"order {order_id} {status}",
            timeout=timeout,
            interval=0.5,
            alive=self.children.check,
        )

    def events(self, order_ids, kind: str) -> list[str]:
        """The task ids of every event of one type of these orders' tasks, read
        from the database (the API shows no events)."""
        with psycopg.connect(self.postgres.url("imager")) as conn:
            rows = conn.execute(
                "SELECT e.task_id FROM scheduler_taskevent e JOIN scheduler_task t"
                " ON t.id = e.task_id WHERE e.type = %s AND t.order_id = ANY(%s)",
                (kind, list(order_ids)),
            ).fetchall()
        return sorted(str(task) for (task,) in rows)

    def done_once(self, order_ids) -> list[dict]:
        """Assert that every task of these orders succeeded at its first
        attempt, with one success reported and never taken back; the tasks."""
        tasks = [t for o in order_ids for t in self.tasks(o)]
        assert tasks
        for task in tasks:
            assert task["status"] == "succeeded", task
            assert task["attempts"] == 0, task
        assert self.events(order_ids, "succeeded") == sorted(t["id"] for t in tasks)
        assert self.events(order_ids, "requeued") == []
        return tasks

    def log_since(self, name: str, offset: int) -> str:
        """What a child logged after ``offset`` (a size from ``log_size``)."""
        with open(self.children.log(name), "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def log_size(self, name: str) -> int:
        return self.children.log(name).stat().st_size

    def mails(self) -> list[str]:
        """Every e-mail sent so far (the file backend writes one file per
        connection, messages separated by a line of dashes)."""
        folder = self.data / "mail"
        if not folder.is_dir():
            return []
        messages = []
        for path in sorted(folder.iterdir()):
            text = path.read_text(errors="replace")
            messages += [m for m in text.split("-" * 79 + "\n") if m.strip()]
        return messages

    def mails_of(self, order_id: str, name: str) -> list[tuple[str, str]]:
        """(to, subject) of every e-mail about one order: its page's link (the
        order's id) or, for a recipient without an account, its name."""
        found = []
        for text in self.mails():
            message = email.message_from_string(text)
            body = message.get_payload(decode=True).decode(errors="replace")
            if order_id in body or name in body:
                found.append((message["To"], " ".join(message["Subject"].split())))
        return found

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.slot is not None:
                self.throttle(0)
                self.slot.close()
            if self.content is not None:
                self.content.close()
            for big in ("warehouse", "images", "creator", "creator-cache", "cards"):
                shutil.rmtree(self.demo / big, ignore_errors=True)

    def print_logs(self) -> None:
        for name in sorted(self.children.procs):
            log = self.children.log(name)
            # Captured: pytest shows it only when a test failed.
            print(f"--- {name} ---\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def fault_chain(tmp_path_factory):
    """The chain on its own PostgreSQL and Redis, for one test module."""
    postgres, redis = PostgresCluster(), RedisServer()
    chain = None
    try:
        postgres.init()
        postgres.start()
        postgres.create_database("imager")
        redis.start()
        chain = FaultChain(tmp_path_factory.mktemp("faults") / "d", postgres, redis)
        chain.start_all()
        yield chain
    finally:
        if chain is not None:
            chain.close()
            chain.print_logs()
        redis.close()
        postgres.close()


__all__ = ["FaultChain", "fault_chain", "skip_reason"]
