"""Hashing while receiving, resuming a hash, and writing .part files."""

import errno
import hashlib
import os

import pytest

from ftp.hashing import (
    ROOM_CHECK_EVERY,
    HashingFile,
    HashStates,
    open_part,
)

DATA = os.urandom(3 * 1024 * 1024 + 17)


def receive(path, chunks, offset=0, hasher=None, **options) -> HashingFile:
    raw = open_part(str(path), offset, truncate=offset == 0)
    stream = HashingFile(raw, str(path), hasher or hashlib.sha256(), offset, **options)
    for chunk in chunks:
        stream.write(chunk)
    stream.close()
    return stream


def chunks(data, size=65536):
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("background", [True, False])
def test_the_hash_of_received_chunks_is_the_file_s_sha256(tmp_path, background):
    part = tmp_path / "x.img.part"
    stream = receive(part, chunks(DATA), background=background)
    assert stream.hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert (stream.size, stream.received) == (len(DATA), len(DATA))
    assert part.read_bytes() == DATA
    assert stream.closed


def test_a_resume_goes_on_with_the_kept_hash_without_reading_the_file(tmp_path):
    part = tmp_path / "x.img.part"
    cut = 1_000_003
    states = HashStates()
    first = receive(part, chunks(DATA[:cut]))
    states.keep(str(part), first.size, first.hasher)
    # Spoil the kept prefix on disk: a resume that re-read it would notice.
    with open(part, "r+b") as stream:
        stream.write(b"\0" * 16)
    hasher = states.resume(str(part), cut)
    second = receive(part, chunks(DATA[cut:]), offset=cut, hasher=hasher)
    assert second.hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert second.size == len(DATA)


def test_without_a_kept_hash_the_prefix_is_read_once(tmp_path):
    part = tmp_path / "x.img.part"
    cut = 2_000_000
    receive(part, chunks(DATA[:cut]))
    hasher = HashStates().resume(str(part), cut)
    second = receive(part, chunks(DATA[cut:]), offset=cut, hasher=hasher)
    assert second.hexdigest() == hashlib.sha256(DATA).hexdigest()


def test_a_kept_hash_of_another_size_is_not_used(tmp_path):
    part = tmp_path / "x.img.part"
    receive(part, [DATA[:5000]])
    states = HashStates()
    states.keep(str(part), 4000, hashlib.sha256(DATA[:4000]))
    assert states.take(str(part), 5000) is None
    assert states.take(str(part), 4000) is None  # taken or dropped: gone
    assert states.resume(str(part), 0).hexdigest() == hashlib.sha256().hexdigest()


def test_kept_hashes_are_bounded(tmp_path):
    states = HashStates(limit=2)
    for name in "abc":
        states.keep(name, 1, hashlib.sha256(b"x"))
    assert states.take("a", 1) is None
    assert states.take("c", 1) is not None


def test_a_restart_at_an_offset_cuts_what_followed(tmp_path):
    part = tmp_path / "x.img.part"
    part.write_bytes(DATA[:5000])
    hasher = HashStates().resume(str(part), 1000)
    stream = receive(part, [DATA[1000:2000]], offset=1000, hasher=hasher)
    assert part.read_bytes() == DATA[:2000]
    assert stream.hexdigest() == hashlib.sha256(DATA[:2000]).hexdigest()


def test_a_part_that_is_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me")
    (tmp_path / "x.img.part").symlink_to(target)
    with pytest.raises(OSError) as error:
        open_part(str(tmp_path / "x.img.part"), 0, truncate=True)
    assert error.value.errno == errno.ELOOP
    assert target.read_bytes() == b"keep me"


def test_writing_stops_when_the_disk_reserve_is_reached(tmp_path):
    part = tmp_path / "x.img.part"
    raw = open_part(str(part), 0, truncate=True)
    stream = HashingFile(raw, str(part), hashlib.sha256(), 0, has_room=lambda: False)
    block = b"x" * (1 << 20)
    with pytest.raises(OSError) as error:
        for _ in range(ROOM_CHECK_EVERY // len(block) + 1):
            stream.write(block)
    stream.close()
    assert error.value.errno == errno.ENOSPC
    assert "reserve" in str(error.value)


@pytest.mark.parametrize("background", [True, False])
def test_receiving_into_reused_buffers_hashes_every_byte_in_order(tmp_path, background):
    part = tmp_path / "x.img.part"
    raw = open_part(str(part), 0, truncate=True)
    stream = HashingFile(raw, str(part), hashlib.sha256(), 0, background=background)
    seen = set()
    for start in range(0, len(DATA), 300_000):
        piece = DATA[start : start + 300_000]
        buffer = stream.buffer()
        seen.add(id(buffer))
        buffer[: len(piece)] = piece
        stream.write_from(buffer, len(piece))
    spare = stream.buffer()
    stream.give_back(spare)
    stream.close()
    assert part.read_bytes() == DATA
    assert stream.hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert len(seen) <= 4  # a few buffers, reused
