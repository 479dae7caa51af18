"""Slots on real loop devices: what /sys says about a card, and which udev events
pyudev delivers when a card goes in and out. File slots, which need no root: a
card is in while the slot's path is a non-empty regular file."""

import os
import queue

import pytest

from demo.cards import CardSlotError, FileCardSlot
from workers.writer.slots import SlotMonitor, card_in, parse_slots
from workers.writer.tests.loopcards import MiB, make_card, needs_loop
from workers.writer.tests.loopcards import loop_card_slots as loop_card_slots  # fixture


def events_of(monitor_slots):
    """A started SlotMonitor and the queue its events land in."""
    seen: queue.Queue = queue.Queue()
    monitor = SlotMonitor(monitor_slots, lambda name, action: seen.put((name, action)))
    monitor.start()
    return monitor, seen


def next_event(seen: queue.Queue, timeout: float = 10) -> tuple[str, str]:
    try:
        return seen.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"pyudev reported no event in {timeout} s")


def drain(seen: queue.Queue, wait: float = 0.3) -> list:
    found = []
    try:
        while True:
            found.append(seen.get(timeout=wait))
    except queue.Empty:
        return found


@needs_loop
def test_pyudev_sees_a_card_go_in_and_out_of_its_slot(loop_card_slots, tmp_path):
    slot = loop_card_slots()
    card = make_card(tmp_path / "card.raw", 16 * MiB)
    monitor, seen = events_of({"slot-1": slot.device})
    try:
        slot.insert(card)
        assert next_event(seen) == ("slot-1", "change")
        drain(seen)

        slot.remove()
        assert next_event(seen) == ("slot-1", "change")
    finally:
        monitor.stop()


@needs_loop
def test_events_of_other_devices_do_not_wake_a_slot(loop_card_slots, tmp_path):
    ours, other = loop_card_slots(), loop_card_slots()
    monitor, seen = events_of({"slot-1": ours.device})
    try:
        other.insert(make_card(tmp_path / "other.raw", 8 * MiB))
        other.remove()
        ours.insert(make_card(tmp_path / "ours.raw", 8 * MiB))

        # The first event we get is our own: the other device's came before it.
        assert next_event(seen) == ("slot-1", "change")
    finally:
        monitor.stop()


@needs_loop
def test_a_card_is_present_with_its_capacity_only_while_attached(
    loop_card_slots, tmp_path
):
    slot = loop_card_slots()
    card = make_card(tmp_path / "card.raw", 24 * MiB, capacity=24 * MiB)

    assert card_in(slot.device) is None  # a loop device without a file: size 0
    slot.insert(card)
    present = card_in(slot.device)
    slot.remove()

    assert present is not None
    assert present.capacity == 24 * MiB
    assert present.device == slot.device
    assert present.serial == str(card)  # a loop "card" is known by its file
    assert card_in(slot.device) is None


@needs_loop
def test_a_slot_path_that_is_a_symlink_is_followed(loop_card_slots, tmp_path):
    slot = loop_card_slots()
    stable = tmp_path / "by-path-usb-0:1"
    stable.symlink_to(slot.device)
    slot.insert(make_card(tmp_path / "card.raw", 8 * MiB))

    present = card_in(str(stable))

    assert present is not None and present.device == slot.device


def test_a_slot_whose_device_does_not_exist_holds_no_card():
    assert card_in("/dev/disk/by-path/no-such-reader") is None


def test_slots_are_read_from_repeated_options_and_comma_lists():
    assert parse_slots(["a=/dev/loop1", "b=/dev/x, c=/dev/disk/by-path/y"]) == {
        "a": "/dev/loop1",
        "b": "/dev/x",
        "c": "/dev/disk/by-path/y",
    }


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("slot-1", "NAME=/dev/"),
        ("=/dev/sdb", "NAME=/dev/"),
        ("slot 1=/dev/sdb", "letters, digits"),
        ("slot-1=sdb", "under /dev/"),
        ("a=/dev/x,a=/dev/y", "given twice"),
        ("slot-1=file:cards/slot-1", "needs an absolute path"),
        ("slot-1=file:", "needs an absolute path"),
        ("slot-1=file:/dev/sdb", "write slot-1=/dev/sdb for a card reader"),
        ("a=file:/srv/a,a=/dev/y", "given twice"),
    ],
)
def test_bad_slot_options_say_what_to_write(spec, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_slots([spec])


def test_file_slots_are_read_beside_device_slots_and_keep_their_prefix():
    assert parse_slots(["a=file:/srv/cards/a", "b=/dev/x,c=file:/srv/cards/../c"]) == {
        "a": "file:/srv/cards/a",
        "b": "/dev/x",
        "c": "file:/srv/c",
    }


def test_a_file_slot_holds_the_card_file_its_path_points_to(tmp_path):
    slot = FileCardSlot(tmp_path / "slots" / "slot-1")
    card = make_card(tmp_path / "card.raw", 8 * MiB, capacity=8 * MiB)

    assert card_in(slot.device) is None  # the path does not exist
    slot.insert(card)
    present = card_in(slot.device)
    slot.remove()

    assert present is not None
    assert present.capacity == 8 * MiB
    assert present.device == str(card)  # the symlink is followed
    assert present.serial == str(card)
    assert present.rdev == card.stat().st_ino
    assert card_in(slot.device) is None
    assert card.exists()  # taking a card out leaves the card


def test_a_card_file_put_in_the_place_of_another_is_another_card(tmp_path):
    slot = tmp_path / "slot-1"
    make_card(slot, 8 * MiB)
    before = card_in(f"file:{slot}")
    replacement = make_card(tmp_path / "new.raw", 8 * MiB)

    os.replace(replacement, slot)

    after = card_in(f"file:{slot}")
    assert before is not None and after is not None
    assert after != before  # same name and size, another inode


def test_an_empty_file_a_folder_or_a_dangling_link_is_no_card(tmp_path):
    (tmp_path / "empty").touch()
    (tmp_path / "folder").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")

    for name in ("empty", "folder", "dangling", "missing"):
        assert card_in(f"file:{tmp_path / name}") is None, name


def test_a_long_card_path_gives_a_serial_of_its_last_100_characters(tmp_path):
    folder = tmp_path / ("x" * 120)
    folder.mkdir()
    card = make_card(folder / "card.raw", MiB)

    present = card_in(f"file:{card}")

    assert present is not None
    assert present.serial == str(card)[-100:]
    assert present.serial.endswith("/card.raw")


def test_a_file_slot_takes_one_card_at_a_time(tmp_path):
    slot = FileCardSlot(tmp_path / "slot-1")
    slot.insert(make_card(tmp_path / "one.raw", MiB))

    with pytest.raises(CardSlotError, match="holds a card already"):
        slot.insert(make_card(tmp_path / "two.raw", MiB))
    with pytest.raises(CardSlotError, match="no such file"):
        FileCardSlot(tmp_path / "slot-2").insert(tmp_path / "none.raw")
    slot.close()
    assert not (tmp_path / "slot-1").exists()
