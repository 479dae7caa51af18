"""``whost slots`` on this machine's real udev: loop devices stand for card
readers (their sysfs path is their stable path) and their kernel uevents reach
whost through pyudev, as a USB reader's would."""

from pathlib import Path

import pytest

from whost import config as cfg
from whost.tests.cards import Session, needs_loop, whost
from whost.tests.cards import readers as readers  # fixture
from workers.writer.tests.loopcards import make_card

pytestmark = needs_loop


@pytest.fixture
def root(tmp_path) -> Path:
    done = whost(
        "init", "--root", str(tmp_path), "--api", "http://127.0.0.1:9",
        "--username", "host-1", "--host", "host-1", "--password-stdin", "--no-check",
        input="pw\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp_path


def saved(root: Path) -> cfg.Config:
    return cfg.load(root / "etc/whost/whost.toml")


def test_identify_names_each_slot_after_the_loop_device_its_card_went_into(
    root, readers, tmp_path
):
    one, two, stranger = readers(), readers(), readers()
    card = make_card(tmp_path / "card.raw", 4 * 1024 * 1024, capacity=4 * 1024 * 1024)
    session = Session(
        "slots", "identify", "slot-1", "slot-2", "--root", str(root),
        "--loop", one.device, "--loop", two.device, "--timeout", "30",
    )  # fmt: skip

    session.expect("Insert a card in the reader of slot-1")
    # A card in a loop device whost was not told about is no reader's: ignored.
    stranger.insert(card)
    two.insert(card)
    session.expect("slot-1 = ")
    session.expect("Take the card out.")
    two.remove()
    session.expect("Insert a card in the reader of slot-2")
    one.insert(card)
    code, errors = session.finish()

    assert (code, errors) == (0, "")
    named = saved(root).slots
    assert {name: slot.device for name, slot in named.items()} == {
        "slot-1": two.device,
        "slot-2": one.device,
    }
    assert named["slot-1"].path == f"/devices/virtual/block/{Path(two.device).name}"
    assert session.lines[-1].startswith("named 2 slot(s) in ")


def test_list_check_rename_and_remove_work_on_the_named_slots(root, readers, tmp_path):
    one, two = readers(), readers()
    config = saved(root)
    for name, reader in (("a", one), ("b", two)):
        path = f"/devices/virtual/block/{Path(reader.device).name}"
        config.slots[name] = cfg.SlotEntry(name, path, model="loop device")
    cfg.save(config, root / "etc/whost/whost.toml")
    one.insert(
        make_card(tmp_path / "card.raw", 8 * 1024 * 1024, capacity=8 * 1024 * 1024)
    )
    where = ("--root", str(root))

    listing = whost("slots", "list", *where)
    checked = whost("slots", "check", *where)

    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0] == ["slot", "reader", "stable", "path", "card"]
    assert rows[1][0] == "a" and rows[1][-3:] == ["card", "0.0", "GB"]
    assert rows[2][0] == "b" and rows[2][-2:] == ["no", "card"]
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [line.split()[:2] for line in checked.stdout.splitlines()] == [
        ["ok", "a:"],
        ["ok", "b:"],
    ]

    two.close()  # the reader is unplugged
    after = whost("slots", "check", *where)
    assert after.returncode == 1
    assert after.stdout.splitlines()[1].startswith("MISSING b missing: no reader at ")

    assert whost("slots", "rename", "a", "left", *where).returncode == 0
    assert whost("slots", "remove", "b", *where).returncode == 0
    assert list(saved(root).slots) == ["left"]
    assert saved(root).slots["left"].device == one.device
    refused = whost("slots", "rename", "nope", "x", *where)
    assert (refused.returncode, refused.stderr) == (
        1,
        "whost: there is no slot nope (whost slots list)\n",
    )


def test_identify_gives_up_after_the_timeout_in_one_line(root, readers):
    one = readers()

    done = whost(
        "slots", "identify", "slot-1", "--root", str(root), "--loop", one.device,
        "--timeout", "1",
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "whost: no card arrived in a reader for slot-1: check that the reader is "
        "plugged in (whost slots list shows the readers), then run whost slots "
        "identify slot-1"
    ]
    assert saved(root).slots == {}
