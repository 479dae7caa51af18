"""Naming and checking slots with real USB card readers, as their recorded udev
property sets show them (single-slot, two-LUN, two identical readers, sockets
sharing one LUN, a host without udevd) through the one adapter, RecordedUdev."""

import pytest

from whost.config import Config, SlotEntry
from whost.readers import disk_from_udev, readers
from whost.slots import NoCard, Refused, Watch, check, identify, table
from whost.tests.recorded import CARD, RecordedUdev, recording

SINGLE = recording("single-slot")
TWO_LUN = recording("two-lun")
TWINS = recording("identical-pair")
SHARED = recording("shared-lun")
NO_UDEVD = recording("no-udevd")


def config(**slots: SlotEntry) -> Config:
    return Config(api_url="http://127.0.0.1:8000", username="h", host="h", slots=slots)


def run(config, udev, names, timeout=5.0):
    said = []
    named = list(identify(config, Watch(udev), names, timeout=timeout, say=said.append))
    return named, said


def entry(name, record) -> SlotEntry:
    disk = disk_from_udev(record["properties"], record["size"])
    return SlotEntry(name, disk.path, disk.reader, disk.model, disk.lun)


def test_a_reader_is_known_by_its_usb_port_and_lun_not_by_its_sdx_name():
    disk = disk_from_udev(SINGLE["port-2"]["properties"], CARD)

    assert disk.node == "/dev/sdb"
    assert disk.path == "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0"
    assert disk.reader == "05e3:0751 000000001419"
    assert (disk.lun, disk.size) == ("0:0", CARD * 512)
    assert disk.describe() == "Generic STORAGE DEVICE 000000001419"


@pytest.mark.parametrize(
    "name", ["single-slot", "two-lun", "identical-pair", "shared-lun"]
)
def test_the_writer_opens_the_by_path_link_udev_makes_for_the_port(name):
    for record in recording(name).values():
        disk = disk_from_udev(record["properties"], 0)

        assert disk.device in record["properties"]["DEVLINKS"].split()


def test_each_slot_is_named_after_the_reader_its_card_went_into():
    udev = RecordedUdev(SINGLE["port-2"], TWO_LUN["lun-0"], TWO_LUN["lun-1"])
    udev.then(
        ("idle",),
        ("insert", SINGLE["port-2"]),
        ("remove", SINGLE["port-2"]),
        ("insert", TWO_LUN["lun-1"]),
        ("remove", TWO_LUN["lun-1"]),
        ("insert", TWO_LUN["lun-0"]),
    )

    named, said = run(config(), udev, ["slot-1", "micro", "sd"])

    assert [(s.name, s.path) for s in named] == [
        ("slot-1", "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0"),
        ("micro", "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:1"),
        ("sd", "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0"),
    ]
    # The two slots of one reader: one reader, told apart by their LUN.
    assert named[1].reader == named[2].reader == "05e3:0747 20120501030900000"
    assert (named[1].lun, named[2].lun) == ("0:1", "0:0")
    assert said[0] == "Insert a card in the reader of slot-1 (within 5 s)."
    assert (
        "micro = pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:1 (Generic- Micro SD M2 "
        "20120501030900000 LUN 0:1)." in said
    )
    assert said.count("Take the card out.") == 2


def test_two_identical_readers_are_told_apart_by_their_ports_with_a_warning():
    udev = RecordedUdev(TWINS["port-1.2"], TWINS["port-1.3"])
    udev.then(
        ("insert", TWINS["port-1.2"]),
        ("remove", TWINS["port-1.2"]),
        ("insert", TWINS["port-1.3"]),
    )

    named, said = run(config(), udev, ["a", "b"])

    assert [s.path.split("-usb-")[1] for s in named] == [
        "0:1.2:1.0-scsi-0:0:0:0",
        "0:1.3:1.0-scsi-0:0:0:0",
    ]
    warning = [line for line in said if line.startswith("note: the reader of b")]
    assert warning == [
        "note: the reader of b is identical to that of a (same model and serial): "
        "whost tells them apart by their USB port only. Label them and keep each in "
        "its port: whost slots check cannot see two identical readers swapped."
    ]


def test_a_second_slot_in_a_reader_whose_sockets_share_one_device_is_refused():
    udev = RecordedUdev(SHARED["sd-or-microsd"])
    udev.then(
        ("insert", SHARED["sd-or-microsd"]),  # the SD socket
        ("remove", SHARED["sd-or-microsd"]),
        ("insert", SHARED["sd-or-microsd"]),  # the microSD socket: the same device
    )
    named = []

    with pytest.raises(Refused) as refused:
        for slot in identify(config(), Watch(udev), ["sd", "microsd"], timeout=5):
            named.append(slot.name)

    assert named == ["sd"]
    assert str(refused.value).startswith(
        "the card went into the reader of sd (pci-0000:00:14.0-usb-0:4:1.0-scsi-0:0:0:0"
        ", Generic- USB3.0 CRW -SD 201506301013): whost cannot tell microsd from sd"
    )


def test_a_reader_already_named_for_another_slot_is_refused():
    udev = RecordedUdev(SINGLE["port-2"]).then(("insert", SINGLE["port-2"]))

    with pytest.raises(Refused, match=r"whost slots remove old"):
        run(config(old=entry("old", SINGLE["port-2"])), udev, ["new"])


def test_naming_a_slot_again_moves_it_to_the_reader_its_card_went_into():
    before = config(**{"slot-1": entry("slot-1", SINGLE["port-2"])})
    udev = RecordedUdev(SINGLE["port-3"]).then(("insert", SINGLE["port-3"]))

    named, _ = run(before, udev, ["slot-1"])

    assert named[0].path == "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0"


def test_identical_readers_on_a_host_without_udevd_are_refused():
    udev = RecordedUdev(NO_UDEVD["port-1.2"], NO_UDEVD["port-1.3"])
    udev.then(("insert", NO_UDEVD["port-1.3"]))

    with pytest.raises(Refused) as refused:
        run(config(), udev, ["a"])

    assert str(refused.value).startswith(
        "udev gave /dev/sdg (usb) no ID_PATH, so whost cannot name the port it is "
        "plugged into and could not tell it from another reader: is udevd running"
    )


def test_cards_in_two_readers_at_once_are_refused():
    udev = RecordedUdev(TWINS["port-1.2"], TWINS["port-1.3"])
    udev.then(("insert", TWINS["port-1.2"]))
    udev.script[0] = lambda: [
        udev.insert(TWINS["port-1.2"]),
        udev.insert(TWINS["port-1.3"]),
    ]

    with pytest.raises(Refused, match=r"at once, so whost cannot tell which is a's"):
        run(config(), udev, ["a"])


def test_no_card_in_time_says_how_to_go_on():
    udev = RecordedUdev(SINGLE["port-2"])

    with pytest.raises(NoCard, match=r"then run whost slots identify slot-9"):
        run(config(), udev, ["slot-9"], timeout=0.05)


def test_a_card_left_in_a_reader_is_pointed_out_before_naming():
    udev = RecordedUdev(SINGLE["port-2"], TWINS["port-1.2"])
    udev.insert(SINGLE["port-2"])
    udev.then(("insert", TWINS["port-1.2"]))

    named, said = run(config(), udev, ["a"])

    assert said[0] == (
        "note: /dev/sdb (Generic STORAGE DEVICE 000000001419) hold a card now; "
        "take the card out of any reader you want to name."
    )
    assert named[0].path.endswith("usb-0:1.2:1.0-scsi-0:0:0:0")


def named_pair() -> Config:
    return config(
        a=entry("a", TWINS["port-1.2"]),
        b=entry("b", TWINS["port-1.3"]),
        c=entry("c", SINGLE["port-2"]),
    )


def test_check_finds_every_reader_where_it_was_named():
    udev = RecordedUdev(TWINS["port-1.2"], TWINS["port-1.3"], SINGLE["port-2"])
    udev.insert(SINGLE["port-2"])

    findings = check(named_pair(), readers(udev))

    assert [(f.slot, f.state) for f in findings] == [
        ("a", "ok"),
        ("b", "ok"),
        ("c", "ok"),
    ]
    # The single-slot reader is the same model, with the same serial, as the
    # pair: as cheap readers are, so the three are identical.
    assert findings[2].message == (
        "c: Generic STORAGE DEVICE 000000001419 at "
        "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0, card 7.9 GB; identical to a, b: "
        "a swap of their ports cannot be seen"
    )
    assert findings[0].message.endswith(
        "no card; identical to b, c: a swap of their ports cannot be seen"
    )


def test_check_names_a_reader_replugged_into_another_port():
    udev = RecordedUdev(TWINS["port-1.2"], TWINS["port-1.3"], SINGLE["port-3"])

    findings = check(named_pair(), readers(udev))

    assert [(f.slot, f.state) for f in findings] == [
        ("a", "ok"), ("b", "ok"), ("c", "moved"),
    ]  # fmt: skip
    assert findings[2].message == (
        "c moved: its reader (Generic STORAGE DEVICE 000000001419) is now at "
        "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0, not "
        "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0. Plug it back into its port, or "
        "run whost slots identify c"
    )


def test_check_names_one_of_two_identical_readers_replugged_elsewhere():
    udev = RecordedUdev(TWINS["port-1.2"], TWINS["port-1.4"], SINGLE["port-2"])

    findings = {f.slot: f for f in check(named_pair(), readers(udev))}

    assert findings["a"].state == "ok"
    assert findings["b"].state == "moved"
    assert (
        "is now at pci-0000:00:14.0-usb-0:1.4:1.0-scsi-0:0:0:0" in findings["b"].message
    )


def test_check_names_another_reader_put_in_a_slots_port():
    # slot-1 was named with the two-slot reader in port 3; the single-slot one is
    # there now, and the two-slot reader is nowhere.
    slot = entry("slot-1", TWO_LUN["lun-0"])
    slot.path = "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0"
    udev = RecordedUdev(SINGLE["port-3"])

    [finding] = check(config(**{"slot-1": slot}), readers(udev))

    assert finding.state == "moved"
    assert finding.message.startswith(
        "slot-1 moved: another reader (Generic STORAGE DEVICE 000000001419) is in its "
        "port pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0; its own (Generic- SD MMC "
        "20120501030900000) is not plugged in."
    )


def test_check_names_a_reader_that_is_gone():
    udev = RecordedUdev(TWINS["port-1.2"], TWINS["port-1.3"])

    findings = {f.slot: f for f in check(named_pair(), readers(udev))}

    assert findings["c"].state == "missing"
    assert findings["c"].message == (
        "c missing: no reader at pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0 (Generic "
        "STORAGE DEVICE). Plug it in, or whost slots remove c"
    )


def test_the_list_shows_named_slots_then_the_readers_without_a_name():
    udev = RecordedUdev(SINGLE["port-2"], TWO_LUN["lun-0"], TWO_LUN["lun-1"])
    udev.insert(TWO_LUN["lun-1"])
    named = config(
        c=entry("c", SINGLE["port-2"]), gone=entry("gone", TWINS["port-1.3"])
    )

    rows = table(named, readers(udev))

    assert rows == [
        ("c", "Generic STORAGE DEVICE 000000001419",
         "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0", "no card"),
        ("gone", "(Generic STORAGE DEVICE)",
         "pci-0000:00:14.0-usb-0:1.3:1.0-scsi-0:0:0:0", "reader missing"),
        ("-", "Generic- SD MMC 20120501030900000",
         "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0", "no card"),
        ("-", "Generic- Micro SD M2 20120501030900000 LUN 0:1",
         "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:1", "card 7.9 GB"),
    ]  # fmt: skip
