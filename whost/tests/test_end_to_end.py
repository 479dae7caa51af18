"""A writer host set up with whost alone, end to end: ``whost init``, ``whost
slots identify`` with loop devices as the readers, ``whost start``, then the
units' ExecStart lines run as plain processes (no systemd here) against a live
API and a warehouse FTP server, a real order written onto the two cards, and
``whost status`` showing it."""

import os
import signal
import subprocess
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
from whost import config as cfg
from whost.service import DOWNLOADER, WRITER
from whost.tests.cards import Session, needs_loop, whost
from whost.tests.cards import readers as readers  # fixture
from whost.tests.units import service
from workers.common.bmap import load_bmap
from workers.writer.tests.loopcards import head, make_card

pytestmark = [pytest.mark.django_db(transaction=True), needs_loop]


class Unit:
    """A unit's ExecStart line running as a plain process, its output in a file."""

    def __init__(self, path: Path, log: Path):
        argv, env, cwd = service(path)
        self.argv, self.log = argv, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                # IMAGER_POLL only shortens the idle waits of a test.
                env={**os.environ, **env, "IMAGER_POLL": "0.5"},
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
def units():
    started: list[Unit] = []
    yield started
    for unit in started:
        unit.stop()
        print(f"--- {unit.log.name} ---\n{unit.output()}")  # shown if the test failed


def identify(root: Path, names_readers: dict, cards: dict) -> None:
    """The technician's part: a card in each slot in turn, as whost asks."""
    loops = [
        arg for reader in names_readers.values() for arg in ("--loop", reader.device)
    ]
    session = Session(
        "slots", "identify", *names_readers, "--root", str(root), *loops,
        "--timeout", "60",
    )  # fmt: skip
    for index, (name, reader) in enumerate(names_readers.items()):
        session.expect(f"Insert a card in the reader of {name}")
        reader.insert(cards[name])
        session.expect(f"{name} = /devices/virtual/block/")
        if index < len(names_readers) - 1:
            session.expect("Take the card out.")
        reader.remove()
    code, errors = session.finish()
    assert (code, errors) == (0, ""), session.lines


def test_whost_sets_up_a_host_that_writes_a_real_order_onto_two_cards(
    live_server, tmp_path, readers, units
):
    world = World()
    files = make_image(tmp_path / "built")
    root = tmp_path / "root"
    slots = {"slot-1": readers(), "slot-2": readers()}
    cards = {name: make_card(tmp_path / f"{name}.raw") for name in slots}

    done = whost(
        "init", "--root", str(root), "--api", live_server.url,
        "--username", "writer-host", "--host", "host-1", "--password-stdin",
        "--space-per-slot", "100M", "--reserve", "0", input=PASSWORD + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: logged in to {live_server.url} as writer-host")
    identify(root, slots, cards)
    started = whost("start", "--root", str(root))
    assert started.returncode == 0, started.stderr
    unit_dir = root / "etc/systemd/system"

    (tmp_path / "warehouse").mkdir()
    with warehouse(tmp_path / "warehouse", live_server.url) as ftp:
        order = place_order(world.client, quantity=2)
        publish(ftp.root, order.pk, files)
        verified_image(world, order, files, ftp_url=ftp.url)
        for unit in (DOWNLOADER, WRITER):
            units.append(Unit(unit_dir / unit, tmp_path / f"{unit}.log"))
        assert units[1].argv[-2:] == ["--config", str(root / "etc/whost/whost.toml")]

        # The writer registers the slots named with whost, on their loop devices.
        wait_for(
            lambda: (
                sorted(
                    Slot.objects.filter(
                        worker__host="host-1", state="empty"
                    ).values_list("name", "device_path")
                )
                == sorted((name, reader.device) for name, reader in slots.items())
            ),
            "two empty slots named by whost",
        )
        wait_for(
            lambda: (
                Task.objects.filter(
                    order=order, kind=TaskKind.WRITE, host="host-1"
                ).count()
                == 2
            ),
            "the image downloaded and its write tasks",
        )
        image_dir = cfg.load(root / "etc/whost/whost.toml").image_dir
        assert (image_dir / str(order.pk) / "image.img").is_file()

        for name, reader in slots.items():
            reader.insert(cards[name])
        wait_for(
            lambda: Order.objects.get(pk=order.pk).status == "pending_shipment",
            "every copy written",
            timeout=120,
        )
        wait_for(
            lambda: set(Slot.objects.values_list("state", flat=True)) == {"done"},
            "both slots to say done",
        )

        status = whost("status", "--root", str(root))
        checked = whost("slots", "check", "--root", str(root))

        for unit in units:
            assert unit.stop() == 0

    mapped = list(load_bmap(files.bmap).byte_ranges())
    want = files.image.read_bytes()
    for card in cards.values():
        got = head(card, len(want))
        assert all(got[s:e] == want[s:e] for s, e, _ in mapped)
    writes = Task.objects.filter(order=order, kind=TaskKind.WRITE)
    assert {t.status for t in writes} == {TaskStatus.SUCCEEDED}
    assert sorted(t.result["slot"] for t in writes) == ["slot-1", "slot-2"]

    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"host host-1, API {live_server.url}"
    assert "whost-writer.service: enabled" in lines
    assert any(line.startswith("writer: online") for line in lines)
    rows = {line.split()[0]: line for line in lines if line.startswith("slot-")}
    for name in slots:
        assert rows[name].split()[1:5] == ["done", "8.0", "GB", "-"]  # 8 GB cards
        assert "100%" in rows[name]
        assert "written and verified: remove the card" in rows[name]
    assert checked.returncode == 0, checked.stdout
    assert whost("stop", "--root", str(root)).returncode == 0
