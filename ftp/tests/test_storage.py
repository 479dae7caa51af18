"""The storage root, the disk reserve, quarantine, deletions and the spool."""

import json
import os

import pytest

from ftp.paths import BadPath
from ftp.reporter import Report, Spool
from ftp.storage import Identity, Storage

ORDER = "0b7e4c1e-2f7a-4d61-9a55-8a4c3f0e9d12"
IMG = f"orders/{ORDER}/disk.img"


@pytest.fixture
def storage(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    storage.prepare()
    return storage


def put(storage, api_path, data=b"data") -> str:
    real = storage.real(api_path)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real, "wb") as stream:
        stream.write(data)
    return real


def test_the_root_gets_its_folders_and_a_private_state_folder(storage):
    for folder in ("orders", "quarantine", ".warehouse/spool"):
        assert os.path.isdir(os.path.join(storage.root, folder))
    assert os.stat(storage.internal).st_mode & 0o077 == 0


def test_the_reserve_refuses_what_would_eat_into_it(storage):
    capacity, free = storage.usage()
    assert 0 < free <= capacity
    assert storage.room_for(0) and storage.refusal(0) == ""
    storage.reserve = free + (1 << 40)
    assert not storage.room_for(0)
    assert "must stay free" in storage.refusal(0)
    storage.reserve = 0
    message = storage.refusal(free + (1 << 40))
    assert f"needs {free + (1 << 40)} more" in message


def test_a_rejected_file_is_moved_aside(storage):
    data = b"corrupted bytes"
    put(storage, IMG, data)
    moved = storage.set_aside(IMG)
    assert not os.path.exists(storage.real(IMG))
    assert moved.startswith(os.path.join(storage.quarantine, ORDER, "disk.img."))
    with open(moved, "rb") as stream:
        assert stream.read() == data


def test_deleting_an_image_removes_it_its_part_and_the_empty_folder(storage):
    real = put(storage, IMG)
    put(storage, IMG.replace(".img", ".bmap"))
    with open(real + ".part", "wb") as stream:
        stream.write(b"half")
    assert storage.delete(IMG)
    assert not os.path.exists(real) and not os.path.exists(real + ".part")
    assert os.path.isdir(os.path.dirname(real))  # the block map is still there
    assert storage.delete(IMG.replace(".img", ".bmap"))
    assert not os.path.exists(os.path.dirname(real))
    assert not storage.delete(IMG)  # already gone: fine


def test_paths_from_the_api_cannot_leave_the_orders_tree(storage, tmp_path):
    for bad in (
        "../outside.img",
        f"orders/{ORDER}/../../../outside.img",
        "quarantine/x.img",
    ):
        with pytest.raises(BadPath):
            storage.delete(bad)
    os.symlink(tmp_path, os.path.join(storage.orders, ORDER))
    (tmp_path / "disk.img").write_bytes(b"not yours")
    with pytest.raises(BadPath, match="outside"):
        storage.delete(IMG)
    assert (tmp_path / "disk.img").exists()


def test_identity_tells_a_replaced_file_apart(storage):
    real = put(storage, IMG, b"one")
    first = Identity.of(real)
    assert Identity.of(real) == first
    replacement = real + ".new"
    with open(replacement, "wb") as stream:
        stream.write(b"two")
    os.replace(replacement, real)
    assert Identity.of(real) != first


def report(path=IMG, size=4) -> Report:
    return Report(path=path, size=size, sha256="0" * 64, inode=1, mtime_ns=2)


def test_the_spool_survives_a_restart_and_marks_files_pending(storage):
    spool = Spool(storage.spool)
    spool.add(report())
    spool.add(report(IMG.replace(".img", ".bmap")))
    assert spool.pending(IMG)
    again = Spool(storage.spool)
    assert again.load() == 2
    assert again.pending(IMG)
    [entry] = [r for r in again.all() if r.path == IMG]
    again.remove(entry)
    assert not again.pending(IMG)
    assert Spool(storage.spool).load() == 1


def test_a_newer_report_of_the_same_file_is_not_removed_by_the_old_one(storage):
    spool = Spool(storage.spool)
    old, new = report(size=1), report(size=2)
    spool.add(old)
    spool.add(new)
    spool.remove(old)
    assert spool.pending(IMG)
    assert Spool(storage.spool).load() == 1
    spool.forget(IMG)
    assert not spool.pending(IMG)


def test_an_unreadable_spool_entry_is_skipped(storage):
    with open(os.path.join(storage.spool, "bad.json"), "w") as stream:
        stream.write("{not json")
    with open(os.path.join(storage.spool, "odd.json"), "w") as stream:
        json.dump({"path": IMG}, stream)
    assert Spool(storage.spool).load() == 0
