"""One sha256 of files for every process: sparse files, prefixes, progress."""

import hashlib
import os

import pytest

from workers.common.hashing import hash_file, sha256_file, sha256_of

MIB = 1024 * 1024
DATA = os.urandom(3 * MIB + 17)


def sparse_file(path, size: int):
    with path.open("wb") as stream:
        stream.truncate(size)
    return path


def test_sha256_file_equals_a_plain_hash_of_a_sparse_file(tmp_path):
    path = sparse_file(tmp_path / "sparse", 64 * MIB + 123)
    with path.open("r+b") as stream:
        for offset in (0, 5 * MIB + 7, 40 * MIB, 64 * MIB + 100):
            stream.seek(offset)
            stream.write(os.urandom(3000))
    reports = []

    digest = sha256_file(path, progress=lambda *a: reports.append(a))

    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    assert reports[-1] == (size, size)
    assert (
        sha256_file(sparse_file(tmp_path / "empty", 0)) == hashlib.sha256().hexdigest()
    )


def test_sha256_of_hashes_all_or_a_prefix(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    assert sha256_of(str(path)).hexdigest() == hashlib.sha256(DATA).hexdigest()
    prefix = sha256_of(str(path), limit=12345).hexdigest()
    assert prefix == hashlib.sha256(DATA[:12345]).hexdigest()
    with pytest.raises(ValueError, match="shorter"):
        sha256_of(str(path), limit=len(DATA) + 1)


def test_a_prefix_hash_goes_on_with_what_follows(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    hasher = sha256_of(path, limit=MIB)
    hasher.update(DATA[MIB:])
    assert hasher.hexdigest() == hashlib.sha256(DATA).hexdigest()


def test_one_read_gives_every_algorithm_asked_for(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    found = hash_file(path, ("sha256", "md5"))
    assert {name: digest.hexdigest() for name, digest in found.items()} == {
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "md5": hashlib.md5(DATA).hexdigest(),  # noqa: S324 - what a checksum says
    }
