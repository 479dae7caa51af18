import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.creator.cache import ContentCache
from workers.creator.download import ContentError
from workers.creator.tests.conftest import LOOPBACK, publish, sha256_of

REPO = Path(__file__).resolve().parents[3]


def python(code: str, **kwargs) -> subprocess.Popen:
    """Another process using the cache, as a second build would."""
    loopback = "from workers.creator.tests.conftest import LOOPBACK\n"
    return subprocess.Popen(
        [sys.executable, "-c", loopback + code],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture
def cache(tmp_path):
    with ContentCache(tmp_path / "cache", 100 * 1024 * 1024, allowed=LOOPBACK) as cache:
        yield cache


def test_fetch_downloads_a_zim_and_checks_it_against_the_published_sha256(
    cache, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[0])

    fetched = cache.fetch(url + path)

    assert fetched.read_bytes() == zim_files[0].read_bytes()
    assert fetched.parent == cache.root / "data"
    assert cache.metadata(fetched)["sha256"] == sha256_of(zim_files[0])
    assert state.gets(path + ".sha256") == [None]
    assert cache.is_pinned(fetched)


def test_a_second_fetch_is_served_from_the_cache(cache, http_server, zim_files):
    url, state = http_server
    path = publish(state, zim_files[0])
    first = cache.fetch(url + path)

    again = cache.fetch(url + path, sha256=sha256_of(zim_files[0]))

    assert again == first
    assert state.gets(path) == [None]


def test_a_download_cut_halfway_resumes_with_a_range_request(
    cache, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[1])
    state.cut_after[path] = 200_000

    fetched = cache.fetch(url + path)

    first, resumed = state.gets(path)
    assert first is None
    # Everything received before the cut is kept, except the last unfinished read.
    assert 200_000 - 65536 < int(resumed.removeprefix("bytes=").rstrip("-")) <= 200_000
    assert sha256_of(fetched) == sha256_of(zim_files[1])


def test_a_download_killed_halfway_is_resumed_by_the_next_fetch(
    tmp_path, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[2])
    state.delay = 0.05  # ~1.3 MB/s: the kill lands in the middle
    root = tmp_path / "cache"
    child = python(
        "from workers.creator.cache import ContentCache\n"
        f"ContentCache({str(root)!r}, 10**8, allowed=LOOPBACK).fetch({url + path!r})\n"
    )
    parts = root / "tmp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = list(parts.glob("*.part")) if parts.exists() else []
        if partial and partial[0].stat().st_size > 100_000:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    kept = partial[0].stat().st_size
    assert 0 < kept < zim_files[2].stat().st_size
    state.delay = 0

    with ContentCache(root, 10**8, allowed=LOOPBACK) as cache:
        fetched = cache.fetch(url + path)

    assert state.gets(path) == [None, f"bytes={kept}-"]
    assert sha256_of(fetched) == sha256_of(zim_files[2])
    assert list(parts.glob("*.part")) == []


def test_a_wrong_checksum_raises_an_error_naming_the_url_and_caches_nothing(
    cache, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[0])

    with pytest.raises(ContentError, match=f"{url}{path}: sha256 checksum mismatch"):
        cache.fetch(url + path, sha256="0" * 64)

    assert cache.entries() == []
    assert list((cache.root / "tmp").iterdir()) == []


def test_a_wrong_published_checksum_file_fails_the_same_way(
    cache, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[0])
    (state.directory / "wiki1.zim.sha256").write_text("ab" * 32 + "  wiki1.zim\n")

    with pytest.raises(ContentError, match=f"{url}{path}: sha256 checksum mismatch"):
        cache.fetch(url + path)

    assert cache.entries() == []
    assert cache.usage_bytes() == 0


def test_a_missing_file_raises_an_error_naming_the_url(cache, http_server):
    url, _ = http_server

    with pytest.raises(ContentError, match=f"{url}/nowhere.zim: not found"):
        cache.fetch(url + "/nowhere.zim", sha256="1" * 64)


def test_a_download_without_any_checksum_is_refused(cache, http_server, zim_files):
    url, state = http_server
    path = publish(state, zim_files[0])
    (state.directory / "wiki1.zim.sha256").unlink()

    with pytest.raises(ContentError, match=r"no checksum given .* pass sha256="):
        cache.fetch(url + path)


def test_an_md5_file_is_used_when_no_sha256_is_published(cache, http_server, zim_files):
    url, state = http_server
    path = publish(state, zim_files[0])
    (state.directory / "wiki1.zim.sha256").unlink()
    md5 = hashlib.md5(zim_files[0].read_bytes(), usedforsecurity=False).hexdigest()
    (state.directory / "wiki1.zim.md5").write_text(f"{md5} wiki1.zim\n")

    fetched = cache.fetch(url + path)

    assert cache.metadata(fetched)["md5"] == md5
    (state.directory / "wiki1.zim.md5").write_text("0" * 32)
    cache.unpin(fetched)
    cache.fetch(url + path)  # a cached entry is trusted: nothing asked
    assert state.gets(path + ".md5") == [None]


def test_a_size_different_from_the_expected_one_is_an_error(
    cache, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[0])

    with pytest.raises(ContentError, match=r"has \d+ bytes, expected 123"):
        cache.fetch(url + path, size=123)
    assert cache.entries() == []


def test_eviction_keeps_the_limit_and_never_evicts_a_pinned_entry(
    tmp_path, http_server, zim_files
):
    url, state = http_server
    small, medium, big = (url + publish(state, zim) for zim in zim_files)
    limit = 1_600_000
    with ContentCache(tmp_path / "cache", limit, allowed=LOOPBACK) as cache:
        kept = cache.fetch(small)  # stays pinned, as in a running build
        cache.unpin(cache.fetch(medium))
        time.sleep(0.01)  # distinct mtimes for the LRU order

        cache.fetch(big)

        assert kept in cache.entries()
        assert [p.name.split("-", 1)[1] for p in cache.entries()] == [
            "wiki1.zim",
            "wiki3.zim",
        ]
        assert cache.usage_bytes() <= limit

        with pytest.raises(ContentError, match=f"{medium}: .* raise the cache limit"):
            cache.fetch(medium)
        assert cache.usage_bytes() <= limit
        assert len(cache.entries()) == 2


def test_a_pin_held_by_another_process_prevents_eviction(
    tmp_path, http_server, zim_files
):
    url, state = http_server
    small, medium, big = (url + publish(state, zim) for zim in zim_files)
    root = tmp_path / "cache"
    holder = python(
        "import sys\n"
        "from workers.creator.cache import ContentCache\n"
        f"cache = ContentCache({str(root)!r}, 1_600_000, allowed=LOOPBACK)\n"
        f"path = cache.fetch({medium!r})\n"
        "print(path, flush=True)\n"
        "sys.stdin.read()\n"
    )
    held = Path(holder.stdout.readline().strip())
    try:
        with ContentCache(root, 1_600_000, allowed=LOOPBACK) as cache:
            assert cache.is_pinned(held)
            cache.unpin(cache.fetch(big))  # 600 KB + 900 KB fit
            cache.fetch(small)  # no room: only the big one may go

            names = [p.name.split("-", 1)[1] for p in cache.entries()]
            assert names == ["wiki2.zim", "wiki1.zim"]
            assert cache.usage_bytes() <= 1_600_000
    finally:
        holder.communicate("")

    with ContentCache(root, 1_600_000, allowed=LOOPBACK) as cache:
        assert not cache.is_pinned(held)
        cache.fetch(big)
        assert not held.exists()
        assert cache.usage_bytes() <= 1_600_000


def test_fetch_all_downloads_several_files_at_the_same_time(
    cache, http_server, zim_files
):
    url, state = http_server
    entries = [url + publish(state, zim) for zim in zim_files]
    entries[0] = {"url": entries[0], "sha256": sha256_of(zim_files[0])}
    state.delay = 0.01
    reports = []

    paths = cache.fetch_all(entries, workers=3, progress=lambda *a: reports.append(a))

    assert [sha256_of(p) for p in paths] == [sha256_of(z) for z in zim_files]
    assert state.max_active >= 2
    assert reports[-1] == ("downloading", 100.0)
    assert all(phase == "downloading" for phase, _ in reports)


def test_fetch_all_raises_the_failure_and_releases_what_it_fetched(
    cache, http_server, zim_files
):
    url, state = http_server
    good = url + publish(state, zim_files[0])

    with pytest.raises(ContentError, match=f"{url}/missing.zim: not found"):
        cache.fetch_all([good, {"url": url + "/missing.zim", "sha256": "2" * 64}])

    assert [cache.is_pinned(p) for p in cache.entries()] in ([], [False])


def test_two_processes_fetching_the_same_url_download_it_once(
    tmp_path, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[1])
    state.delay = 0.02
    code = (
        "from workers.creator.cache import ContentCache\n"
        f"cache = ContentCache({str(tmp_path / 'cache')!r}, 10**8, allowed=LOOPBACK)\n"
        f"print(cache.fetch({url + path!r}))"
    )
    children = [python(code) for _ in range(2)]
    outputs = [child.communicate(timeout=60) for child in children]

    assert [child.returncode for child in children] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert state.gets(path) == [None]
    assert sha256_of(Path(outputs[0][0].strip())) == sha256_of(zim_files[1])


def test_local_paths_and_file_urls_are_checked_and_used_in_place(
    cache, tmp_path, zim_files
):
    local = tmp_path / "local.zim"
    local.write_bytes(zim_files[0].read_bytes())
    digest = sha256_of(local)

    assert cache.fetch(local, sha256=digest) == local
    assert cache.fetch(f"file://{local}") == local
    local.with_name("local.zim.sha256").write_text("f" * 64 + "  local.zim\n")
    with pytest.raises(ContentError, match=f"{local}: sha256 checksum mismatch"):
        cache.fetch(str(local))
    with pytest.raises(ContentError, match="no such file"):
        cache.fetch(tmp_path / "absent.img")
    assert cache.entries() == []


def test_a_cache_limit_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="limit_bytes must be positive"):
        ContentCache(tmp_path, 0)


def test_an_unfinished_part_file_is_not_an_entry(cache):
    (cache.root / "tmp" / "x.part").write_bytes(os.urandom(10))

    assert cache.entries() == []
