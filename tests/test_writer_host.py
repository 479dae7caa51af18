"""A writer host end to end: ``python -m workers.downloader`` and ``python -m
workers.writer`` as processes against the live API, an FTP warehouse, and loop
devices as the cards in two slots."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps.accounts.testing import PASSWORD
from apps.orders.models import Order
from apps.scheduler.models import Slot, Task, TaskKind, TaskStatus
from apps.scheduler.testing import World
from apps.scheduler.testing import order as place_order
from tests.hosting import (
    make_image,
    publish,
    verified_image,
    wait_for,
    warehouse,
)
from workers.common.bmap import load_bmap
from workers.writer.tests.loopcards import head, make_card, needs_loop
from workers.writer.tests.loopcards import loop_card_slots as loop_card_slots  # fixture

pytestmark = [pytest.mark.django_db(transaction=True), needs_loop]
ROOT = Path(__file__).resolve().parents[1]


class Process:
    """A worker process whose output goes to a file, shown when a test fails."""

    def __init__(self, log: Path, module: str, *args: str, url: str):
        self.log = log
        env = {
            **os.environ,
            "IMAGER_API_URL": url,
            "IMAGER_USERNAME": "writer-host",
            "IMAGER_PASSWORD": PASSWORD,
            "IMAGER_HOST": "host-1",
        }
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def processes():
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()
        # Captured: pytest shows it only when the test failed.
        print(f"--- {process.log.name} ---\n{process.output()}")


def test_a_writer_host_downloads_an_order_and_writes_its_copies_in_two_slots(
    live_server, tmp_path, loop_card_slots, processes
):
    world = World()
    files = make_image(tmp_path / "built")
    image_dir = tmp_path / "images"
    slots = {"slot-1": loop_card_slots(), "slot-2": loop_card_slots()}
    with warehouse(tmp_path / "warehouse", live_server.url) as ftp:
        order = place_order(world.client, quantity=2)
        publish(ftp.root, order.pk, files)
        verified_image(world, order, files, ftp_url=ftp.url)
        common = ["--image-dir", str(image_dir), "--poll", "0.3", "--progress", "log"]
        downloader = Process(
            tmp_path / "downloader.log",
            "workers.downloader",
            *common,
            "--reserve",
            "0",
            url=live_server.url,
        )
        writer = Process(
            tmp_path / "writer.log",
            "workers.writer",
            *common,
            *(f"--slot={name}={slot.device}" for name, slot in slots.items()),
            url=live_server.url,
        )
        processes += [downloader, writer]

        # The downloader fetches and verifies the image; the API makes a write
        # task per copy on this host; the writer shows two empty slots.
        wait_for(
            lambda: (
                Task.objects.filter(
                    order=order, kind=TaskKind.WRITE, host="host-1"
                ).count()
                == 2
            ),
            "the write tasks",
        )
        folder = image_dir / str(order.pk)
        assert (folder / "image.img").read_bytes() == files.image.read_bytes()
        wait_for(
            lambda: (
                sorted(
                    Slot.objects.filter(
                        worker__host="host-1", state="empty"
                    ).values_list("name", "device_path")
                )
                == sorted((name, slot.device) for name, slot in slots.items())
            ),
            "two empty slots on the loop devices",
        )

        cards = {name: make_card(tmp_path / f"{name}.raw") for name in slots}
        for name, slot in slots.items():
            slot.insert(cards[name])

        wait_for(
            lambda: Order.objects.get(pk=order.pk).status == "pending_shipment",
            "every copy written",
        )
        wait_for(
            lambda: set(Slot.objects.values_list("state", flat=True)) == {"done"},
            "both slots to say done",
        )
        mapped = list(load_bmap(files.bmap).byte_ranges())
        want = files.image.read_bytes()
        for card in cards.values():
            got = head(card, len(want))
            assert all(got[s:e] == want[s:e] for s, e, _ in mapped)
        writes = Task.objects.filter(order=order, kind=TaskKind.WRITE)
        assert {t.status for t in writes} == {TaskStatus.SUCCEEDED}
        assert sorted(t.result["slot"] for t in writes) == ["slot-1", "slot-2"]

        for slot in slots.values():
            slot.remove()
        wait_for(
            lambda: set(Slot.objects.values_list("state", flat=True)) == {"empty"},
            "both slots empty again",
        )
        # No copy of the order is left to write here: the downloader drops it.
        wait_for(lambda: not folder.exists(), "the image to be deleted")

        assert writer.stop() == 0
        assert downloader.stop() == 0
    assert set(Slot.objects.values_list("state", flat=True)) == {"offline"}
    assert "slot-1: Copy" in writer.output()
