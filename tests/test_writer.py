"""The writer against a live API with loop devices (root) and file slots (no
root) as cards: a card pulled out mid-write fails that card only, the next card
completes the copy, and two slots write at the same time."""

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.accounts.testing import PASSWORD
from apps.orders.cards import usable_bytes
from apps.orders.pipeline import cancel_order
from apps.scheduler.models import Slot, Task, TaskEvent, TaskStatus
from apps.scheduler.testing import World
from apps.scheduler.testing import order as place_order
from demo.cards import FileCardSlot
from tests.hosting import (
    ImageFiles,
    downloaded_to,
    make_image,
    verified_image,
    wait_for,
)
from workers.common.api import ApiClient
from workers.common.bmap import load_bmap
from workers.writer.flash import FILE_SECTOR, verify
from workers.writer.tests.loopcards import (
    OLD,
    LoopCardSlot,
    MiB,
    head,
    make_card,
    needs_loop,
)
from workers.writer.tests.loopcards import loop_card_slots as loop_card_slots  # fixture
from workers.writer.worker import Writer, parser

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Login throttle counters live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@dataclass
class Host:
    url: str
    world: World
    files: ImageFiles
    image_dir: Path
    cards: Path

    def order_with_copies(self, quantity: int, **fields):
        order = place_order(self.world.client, quantity=quantity, **fields)
        verified_image(self.world, order, self.files)
        tasks = downloaded_to(order, "host-1", self.image_dir, self.files)
        return order, tasks

    def card(self, name: str) -> Path:
        return make_card(self.cards / f"{name}.raw")

    def writer(self, slots: dict[str, LoopCardSlot], cls=Writer) -> "Running":
        args = ["--api", self.url, "--username", "writer-host", "--host", "host-1"]
        args += ["--image-dir", str(self.image_dir), "--progress", "log"]
        args += ["--poll", "0.5"]
        for name, slot in slots.items():
            args += ["--slot", f"{name}={slot.device}"]
        api = ApiClient(self.url, "writer-host", PASSWORD, backoff=0.01)
        return Running(cls(parser().parse_args(args), api=api))


class Running:
    """A writer running in a thread until the test ends."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self.thread = threading.Thread(target=writer.run, name="writer")
        self.thread.start()

    def stop(self) -> None:
        self.writer.stop()
        self.thread.join(timeout=60)
        # A kept-alive HTTP connection keeps a live-server thread, and its
        # database session, open: PostgreSQL would not drop the test database.
        self.writer.api.session.close()
        assert not self.thread.is_alive(), "the writer did not stop"


@pytest.fixture
def host(live_server, tmp_path, loop_card_slots):
    # Asks for loop_card_slots so that the writers stop before the devices go.
    world = World()
    files = make_image(tmp_path / "built")
    cards = tmp_path / "cards"
    cards.mkdir()
    running: list[Running] = []
    host = Host(live_server.url, world, files, tmp_path / "images", cards)
    original = host.writer

    def writer(*args, **kwargs):
        running.append(original(*args, **kwargs))
        return running[-1]

    host.writer = writer
    yield host
    for each in running:
        each.stop()


def slot_state(name: str) -> str:
    return Slot.objects.get(worker__host="host-1", name=name).state


def holds_the_image(card: Path, files: ImageFiles) -> bool:
    """Every block the bmap maps is on the card, and the first MiB with it."""
    bmap = load_bmap(files.bmap)
    want = files.image.read_bytes()
    got = head(card, len(want))
    return all(got[s:e] == want[s:e] for s, e, _ in bmap.byte_ranges())


@pytest.mark.parametrize("kind", [pytest.param("loop", marks=needs_loop), "file"])
def test_pulling_a_card_mid_write_fails_that_card_and_the_next_card_completes_it(
    host, loop_card_slots, tmp_path, kind
):
    _order, [task] = host.order_with_copies(1)
    # Pulling is losetup -d for a loop device (it loses its medium), and the
    # link going away for a file slot.
    slot = (
        loop_card_slots() if kind == "loop" else FileCardSlot(tmp_path / "slots" / "s1")
    )
    first, second = host.card("first"), host.card("second")
    pulled = []

    class PullingWriter(Writer):
        def on_progress(self, writing_slot, phase, done, total):
            # The operator pulls the first card once 4 MiB are written.
            if phase == "writing" and done >= 4 * MiB and not pulled:
                slot.remove()
                pulled.append(done)

    host.writer({"slot-1": slot}, cls=PullingWriter)
    slot.insert(first)

    # The API applies an event, then records it: wait for the record.
    failure = wait_for(
        lambda: TaskEvent.objects.filter(task=task, type="card_failed").first(),
        "the card failure",
    )
    assert Task.objects.get(pk=task.pk).card_failures == 1
    assert failure.data["reason"] == "removed"
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
    wait_for(lambda: slot_state("slot-1") == "empty", "the slot to be empty")
    # The first MiB is written last: the pulled card cannot look bootable.
    assert head(first, MiB) == OLD * MiB

    slot.insert(second)

    done = wait_for(
        lambda: Task.objects.filter(pk=task.pk, status=TaskStatus.SUCCEEDED).first(),
        "the copy on the second card",
    )
    assert done.card_failures == 1
    assert done.result["card_serial"] == str(second)
    assert done.result["bytes_verified"] == load_bmap(host.files.bmap).mapped_bytes
    assert holds_the_image(second, host.files)
    card = slot.device if kind == "loop" else second
    assert verify(card, host.files.bmap) == done.result["bytes_verified"]
    wait_for(lambda: slot_state("slot-1") == "done", "the slot to say done")
    slot_row = Slot.objects.get(name="slot-1")
    assert "remove the card" in slot_row.message
    assert pulled


@needs_loop
def test_two_slots_write_two_copies_at_the_same_time(host, loop_card_slots):
    order, tasks = host.order_with_copies(2)
    slots = {"slot-1": loop_card_slots(), "slot-2": loop_card_slots()}
    cards = {name: host.card(name) for name in slots}
    both_writing = threading.Barrier(2, timeout=30)
    met: dict[str, int] = {}

    class MeetingWriter(Writer):
        def on_progress(self, slot, phase, done, total):
            # Neither copy goes past its first piece before the other started.
            if phase == "writing" and done > 0 and slot.name not in met:
                met[slot.name] = both_writing.wait()

    for name, slot in slots.items():
        slot.insert(cards[name])
    host.writer(slots, cls=MeetingWriter)

    wait_for(
        lambda: all(
            t.status == TaskStatus.SUCCEEDED
            for t in Task.objects.filter(pk__in=[t.pk for t in tasks])
        ),
        "both copies",
    )
    assert sorted(met) == ["slot-1", "slot-2"]
    written = Task.objects.filter(pk__in=[t.pk for t in tasks])
    assert sorted(t.result["slot"] for t in written) == ["slot-1", "slot-2"]
    for card in cards.values():
        assert holds_the_image(card, host.files)
    # The order moves on just after the last copy's report is applied.
    wait_for(
        lambda: type(order).objects.get(pk=order.pk).status == "pending_shipment",
        "the order to wait for shipment",
    )


@needs_loop
def test_a_finished_card_is_not_written_again_until_it_is_taken_out(
    host, loop_card_slots
):
    _order, tasks = host.order_with_copies(2)
    slot = loop_card_slots()
    host.writer({"slot-1": slot})
    slot.insert(host.card("one"))

    wait_for(lambda: slot_state("slot-1") == "done", "the first copy")
    # The card stays in: a few polls later the second copy still waits.
    time.sleep(1.5)
    pending = Task.objects.filter(pk__in=[t.pk for t in tasks], status="pending")
    assert pending.count() == 1

    slot.remove()
    wait_for(lambda: slot_state("slot-1") == "empty", "the slot to be empty")
    slot.insert(host.card("two"))

    wait_for(
        lambda: (
            not Task.objects.exclude(status=TaskStatus.SUCCEEDED)
            .filter(pk__in=[t.pk for t in tasks])
            .exists()
        ),
        "the second copy",
    )


@needs_loop
def test_a_card_smaller_than_the_image_gets_no_copy_and_the_slot_says_why(
    host, loop_card_slots
):
    _order, [task] = host.order_with_copies(1)
    slot = loop_card_slots()
    small = make_card(host.cards / "small.raw", 32 * MiB, capacity=32 * MiB)
    host.writer({"slot-1": slot})

    slot.insert(small)

    wait_for(lambda: slot_state("slot-1") == "failed", "the slot to refuse the card")
    row = Slot.objects.get(name="slot-1")
    assert "too small" in row.message and "bigger card" in row.message
    assert row.card_capacity == 32 * MiB
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
    assert small.read_bytes() == OLD * (32 * MiB)


#: what a real 128 GB card reports (a SanDisk Extreme): less than 128 * 10**9
CARD_128_GB = 127_865_454_592


@needs_loop
def test_a_128_gb_order_refuses_an_8_gb_card_and_is_written_onto_a_128_gb_card(
    host, loop_card_slots
):
    # Issue 12: the image is sized to its content (64 MiB here, as an 8 GB
    # order of the same content would get), but the client ordered 128 GB
    # cards, so each copy asks for one. Both cards are sparse files: only the
    # image's mapped blocks are ever written or read.
    _order, [task] = host.order_with_copies(1, card_size_gb=128)
    assert task.needed_bytes == usable_bytes(128) > host.files.size
    slot = loop_card_slots()
    host.writer({"slot-1": slot})

    eight = host.card("eight")  # make_card's default: a nominal 8 GB card
    slot.insert(eight)
    wait_for(
        lambda: "Card too small" in Slot.objects.get(name="slot-1").message,
        "the slot to say the 8 GB card is too small for the order",
    )
    row = Slot.objects.get(name="slot-1")
    assert row.state == "card_present"
    assert str(usable_bytes(128)) in row.message
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
    assert head(eight, MiB) == OLD * MiB  # nothing was written to it

    slot.remove()
    wait_for(lambda: slot_state("slot-1") == "empty", "the slot to be empty")
    card = make_card(host.cards / "128.raw", capacity=CARD_128_GB)
    slot.insert(card)

    done = wait_for(
        lambda: Task.objects.filter(pk=task.pk, status=TaskStatus.SUCCEEDED).first(),
        "the copy on the 128 GB card",
    )
    mapped = load_bmap(host.files.bmap).mapped_bytes
    assert done.result["card_capacity"] == CARD_128_GB
    assert done.result["bytes_verified"] == mapped
    assert holds_the_image(card, host.files)
    # Checked again here, apart from the writer's own verification.
    assert verify(card, host.files.bmap) == mapped
    wait_for(lambda: slot_state("slot-1") == "done", "the slot to say done")


@needs_loop
def test_an_order_canceled_mid_write_stops_the_copy_and_asks_for_the_card(
    host, loop_card_slots
):
    order, [task] = host.order_with_copies(1)
    slot = loop_card_slots()
    writing, canceled = threading.Event(), threading.Event()

    class CancelingWriter(Writer):
        lease_interval = 0.2

        def on_progress(self, writing_slot, phase, done, total):
            if phase == "writing" and not writing.is_set():
                writing.set()
                canceled.wait(30)  # the test cancels the order meanwhile
                time.sleep(1)  # a few renewals: the writer hears of it

    host.writer({"slot-1": slot}, cls=CancelingWriter)
    slot.insert(host.card("one"))
    assert writing.wait(30), "the writer did not start writing"
    cancel_order(order=order, actor=host.world.manager)
    canceled.set()

    wait_for(
        lambda: Task.objects.get(pk=task.pk).status == TaskStatus.CANCELED,
        "the copy to be canceled",
    )
    wait_for(lambda: slot_state("slot-1") == "failed", "the slot to ask for the card")
    assert "canceled" in Slot.objects.get(name="slot-1").message
    wait_for(
        lambda: TaskEvent.objects.filter(task=task, type="canceled").exists(),
        "the cancel to be acknowledged",
    )
    assert not TaskEvent.objects.filter(task=task, type="succeeded").exists()


# -- file slots: no root needed -------------------------------------------------


class Reader:
    """A card reader slot whose device does not exist: no card, ever."""

    device = "/dev/disk/by-path/no-such-reader"


def test_a_card_file_in_a_file_slot_gets_its_copy_written_and_verified(host, tmp_path):
    _order, [task] = host.order_with_copies(1)
    slot = FileCardSlot(tmp_path / "slots" / "slot-1")
    card = host.card("first")
    # A reader slot beside it: the udev monitor watches that one alone.
    host.writer({"slot-1": slot, "reader": Reader()})
    wait_for(lambda: slot_state("slot-1") == "empty", "the file slot to be empty")

    slot.insert(card)

    done = wait_for(
        lambda: Task.objects.filter(pk=task.pk, status=TaskStatus.SUCCEEDED).first(),
        "the copy on the card file",
    )
    assert done.result["slot"] == "slot-1"
    assert done.result["card_serial"] == str(card)
    assert done.result["card_capacity"] == card.stat().st_size
    assert done.result["bytes_verified"] == load_bmap(host.files.bmap).mapped_bytes
    assert holds_the_image(card, host.files)
    # A hole of the image keeps what the card held: only mapped blocks are written.
    ranges = list(load_bmap(host.files.bmap).byte_ranges())
    start, end = next(
        (a[1], b[0]) for a, b in itertools.pairwise(ranges) if a[1] < b[0]
    )
    assert head(card, end)[start:end] == OLD * (end - start)
    assert verify(card, host.files.bmap) == done.result["bytes_verified"]
    wait_for(lambda: slot_state("slot-1") == "done", "the slot to say done")
    row = Slot.objects.get(worker__host="host-1", name="slot-1")
    assert row.device_path == slot.device
    assert row.card_serial == str(card)
    assert "remove the card" in row.message
    assert slot_state("reader") == "empty"

    slot.remove()
    wait_for(lambda: slot_state("slot-1") == "empty", "the slot to be empty again")


def test_a_card_file_the_engine_could_not_write_fails_in_the_slot_not_the_copy(
    host, tmp_path
):
    _order, [task] = host.order_with_copies(1)
    slot = FileCardSlot(tmp_path / "slots" / "slot-1")
    odd = tmp_path / "cards" / "odd.raw"
    odd.write_bytes(OLD * (64 * MiB + 512))  # O_DIRECT needs whole 4096-byte blocks
    host.writer({"slot-1": slot})

    slot.insert(odd)

    wait_for(lambda: slot_state("slot-1") == "failed", "the slot to refuse the card")
    row = Slot.objects.get(name="slot-1")
    assert f"not a multiple of {FILE_SECTOR}" in row.message
    task = Task.objects.get(pk=task.pk)
    assert task.status == TaskStatus.PENDING
    assert task.card_failures == 0
    assert odd.read_bytes() == OLD * (64 * MiB + 512)

    # A good card in its place is a new card: it gets the copy.
    slot.remove()
    wait_for(lambda: slot_state("slot-1") == "empty", "the slot to be empty")
    slot.insert(host.card("good"))
    wait_for(
        lambda: Task.objects.get(pk=task.pk).status == TaskStatus.SUCCEEDED,
        "the copy on the good card",
    )
