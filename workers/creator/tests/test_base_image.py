import subprocess

import pytest

from workers.common.hashing import sha256_file
from workers.creator.base_image import compression_of, prepare_base_image
from workers.creator.cache import ContentCache
from workers.creator.download import ContentError
from workers.creator.tests.conftest import LOOPBACK, allocated, publish, sha256_of


@pytest.fixture
def cache(tmp_path):
    with ContentCache(tmp_path / "cache", 10**9, allowed=LOOPBACK) as cache:
        yield cache


def compress(tmp_path, base_image, tool: str, suffix: str):
    target = tmp_path / f"base.img{suffix}"
    with target.open("wb") as out:
        subprocess.run([tool, "-c", str(base_image)], stdout=out, check=True)
    return target


def test_xz_and_zst_base_images_decompress_to_the_same_sparse_raw_image(
    tmp_path, cache, base_image, http_server
):
    url, state = http_server
    xz = compress(tmp_path, base_image, "xz", ".xz")
    zst = compress(tmp_path, base_image, "zstd", ".zst")
    assert (compression_of(xz), compression_of(zst)) == ("xz", "zstd")

    raws = [prepare_base_image(url + publish(state, f), cache=cache) for f in (xz, zst)]

    expected = sha256_file(base_image)
    for raw in raws:
        assert raw.stat().st_size == base_image.stat().st_size
        assert sha256_file(raw) == expected
        # The image is mostly empty: only written blocks may take disk space.
        assert allocated(raw) < raw.stat().st_size // 8
        assert allocated(raw) <= allocated(base_image) + 1024 * 1024
    assert raws[0] != raws[1]
    assert sha256_of(raws[0]) == expected


def test_a_local_compressed_base_image_is_decompressed_once(
    tmp_path, cache, base_image
):
    gz = compress(tmp_path, base_image, "gzip", ".gz")
    phases = []

    first = prepare_base_image(gz, cache=cache, progress=lambda p, _: phases.append(p))
    again = prepare_base_image(gz, cache=cache, progress=lambda p, _: phases.append(p))

    assert first == again
    assert first.name.endswith("base.img")
    assert sha256_file(first) == sha256_file(base_image)
    assert phases.count("decompressing base") >= 1
    assert phases[-1] == "downloading base"  # the second call found it cached


def test_an_uncompressed_base_image_is_used_where_it_is(cache, base_image):
    assert prepare_base_image(base_image, cache=cache) == base_image
    assert prepare_base_image(f"file://{base_image}", cache=cache) == base_image


def test_a_downloaded_raw_base_image_is_returned_pinned(cache, base_image, http_server):
    url, state = http_server

    raw = prepare_base_image(url + publish(state, base_image), cache=cache)

    assert sha256_of(raw) == sha256_of(base_image)
    assert cache.is_pinned(raw)


def test_a_corrupt_base_image_raises_and_leaves_no_raw_file(
    tmp_path, cache, base_image
):
    xz = compress(tmp_path, base_image, "xz", ".xz")
    data = bytearray(xz.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    xz.write_bytes(bytes(data))

    with pytest.raises(ContentError, match=f"{xz}: corrupt xz data"):
        prepare_base_image(xz, cache=cache)

    assert cache.entries() == []
    assert list((cache.root / "tmp").iterdir()) == []


def test_a_base_image_with_a_wrong_checksum_is_refused(
    tmp_path, cache, base_image, http_server
):
    url, state = http_server
    path = publish(state, compress(tmp_path, base_image, "zstd", ".zst"))

    with pytest.raises(ContentError, match=f"{url}{path}: sha256 checksum mismatch"):
        prepare_base_image(url + path, cache=cache, checksums={"sha256": "c" * 64})

    assert cache.entries() == []
