import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import pytest
import yaml

from workers.common.bmap import unwritten_extents
from workers.creator import image as image_module
from workers.creator import tools
from workers.creator.image import (
    PHASES,
    BuildCanceled,
    BuildError,
    build_image,
)
from workers.creator.tests.conftest import (
    IMAGE_BYTES_8GB,
    IMAGE_BYTES_16GB,
    allocated,
    make_base_image,
    png_48x48,
    run,
)

MIB = 1024 * 1024
CONFIG = {
    "name": "Kiwix Hotspot",
    "ssid": "kiwix",
    "language": "fra",
    "timezone": "Africa/Dakar",
    "admin": {"login": "admin", "password": "admin-pass"},
    "wifi_password": "wifi-secret",
    "branding": {"logo": "logo.png"},
}


def content_of(zim_files):
    return [
        (zim_files[0], "zims/wiki1.zim"),
        (zim_files[1], "zims/more/wiki2.zim"),
        (zim_files[2], "wiki3.zim"),
    ]


def sfdisk_table(path: Path) -> dict:
    return json.loads(run("sfdisk", "-J", str(path)).stdout)["partitiontable"]


def dump(image: Path, offset: int, inside: str, out: Path) -> bytes:
    # debugfs reads a filesystem at an offset with the IMAGE?offset=N syntax.
    run("debugfs", "-R", f"dump {inside} {out}", f"{image}?offset={offset}")
    return out.read_bytes()


def debugfs_ls(image: Path, offset: int, inside: str) -> list[str]:
    listing = run("debugfs", "-R", f"ls -p {inside}", f"{image}?offset={offset}")
    return [line.split("/")[5] for line in listing.stdout.splitlines() if line]


def leftovers(*folders: Path) -> list[str]:
    return sorted(
        str(p) for folder in folders if folder.exists() for p in folder.iterdir()
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, base_image, zim_files):
    """One 8 GB image built from the small base and three ZIM files."""
    folder = tmp_path_factory.mktemp("built")
    logo = folder / "logo.png"
    logo.write_bytes(png_48x48())
    links = []

    def progress(phase, percent):
        reports.append((phase, percent))
        if phase == "building filesystem":
            links.append(zim_files[0].stat().st_nlink)

    reports = []
    result = build_image(
        base_image=base_image,
        output=folder / "out" / "order.img",
        image_bytes=IMAGE_BYTES_8GB,
        content_files=content_of(zim_files),
        hotspot_config=CONFIG,
        work_dir=folder / "work",
        progress=progress,
        boot_files=[(logo, "logo.png")],
    )
    return result, reports, links, folder


def test_the_image_has_the_usable_size_of_the_card(built):
    result, *_ = built

    assert result.size == IMAGE_BYTES_8GB
    assert result.path.stat().st_size == IMAGE_BYTES_8GB
    assert result.path.name == "order.img"


def test_a_data_partition_fills_the_card_after_boot_and_root(built, base_image):
    result, *_ = built
    table = sfdisk_table(result.path)
    base = sfdisk_table(base_image)

    starts = [p["start"] * 512 for p in table["partitions"]]
    sizes = [p["size"] * 512 for p in table["partitions"]]
    assert len(starts) == 3
    assert table["partitions"][:2] == [
        {**p, "node": p["node"].replace(str(base_image), str(result.path))}
        for p in base["partitions"]
    ]
    assert table["partitions"][2]["type"] == "83"
    assert starts[2] % (4 * MIB) == 0
    assert starts[2] + sizes[2] == result.size
    assert (result.boot_offset, result.data_offset, result.data_size) == (
        starts[0],
        starts[2],
        sizes[2],
    )


def test_the_data_filesystem_is_clean_for_fsck(built):
    result, *_ = built

    # e2fsck opens a filesystem at an offset with the IMAGE?offset=N syntax.
    check = subprocess.run(
        ["e2fsck", "-fn", f"{result.path}?offset={result.data_offset}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": tools.tool_path()},
        check=False,
    )

    assert check.returncode == 0, check.stdout + check.stderr
    label = run("e2label", f"{result.path}?offset={result.data_offset}").stdout
    assert label.strip() == "data"


def test_every_content_file_is_on_the_data_partition_with_its_bytes(
    built, zim_files, tmp_path
):
    result, *_ = built

    for src, dest in content_of(zim_files):
        copy = dump(result.path, result.data_offset, f"/{dest}", tmp_path / "out")
        assert (
            hashlib.sha256(copy).digest() == hashlib.sha256(src.read_bytes()).digest()
        )
    assert sorted(debugfs_ls(result.path, result.data_offset, "/")) == [
        ".",
        "..",
        "lost+found",
        "wiki3.zim",
        "zims",
    ]


def test_content_is_linked_into_the_staging_tree_not_copied(built):
    _, _, links, _ = built

    assert max(links) >= 2


def test_the_hotspot_configuration_is_on_the_boot_partition(built):
    result, *_ = built
    boot = f"{result.path}@@{result.boot_offset}"

    config = yaml.safe_load(run("mtype", "-i", boot, "::/hotspot.yaml").stdout)

    assert config == {
        **CONFIG,
        "content": [
            {"path": "zims/wiki1.zim", "size": config["content"][0]["size"]},
            {"path": "zims/more/wiki2.zim", "size": config["content"][1]["size"]},
            {"path": "wiki3.zim", "size": config["content"][2]["size"]},
        ],
    }
    assert config["content"][0]["size"] > 300_000
    logo = subprocess.run(
        ["mtype", "-i", boot, "::/logo.png"], capture_output=True, check=True
    )
    assert logo.stdout == png_48x48()  # branding files beside the configuration
    assert "console=serial0" in run("mtype", "-i", boot, "::/cmdline.txt").stdout


def test_the_image_is_sparse(built, zim_files, base_image):
    result, *_ = built
    content = sum(src.stat().st_size for src in zim_files)

    assert allocated(result.path) < result.size // 100
    # Content, the base's data, the zeroed 32 MiB journal and a little metadata.
    assert allocated(result.path) < content + allocated(base_image) + 40 * MIB


def test_no_unwritten_extent_is_left_in_the_data_partition(built):
    result, *_ = built
    fd = os.open(result.path, os.O_RDONLY)
    try:
        end = result.data_offset + result.data_size
        extents = unwritten_extents(fd, result.data_offset, end)
    finally:
        os.close(fd)

    # Unwritten extents are holes to bmaptool: they would never reach the card.
    assert extents == []


def test_progress_reports_the_four_phases_in_order(built):
    _, reports, _, _ = built

    phases = [phase for phase, _ in reports]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == list(
        PHASES
    )
    percents = [percent for _, percent in reports if percent is not None]
    assert all(0 <= percent <= 100 for percent in percents)
    assert reports[-1] == ("writing config", 100)


def test_the_work_folder_is_left_empty(built):
    _, _, _, folder = built

    assert leftovers(folder / "work") == []
    assert leftovers(folder / "out") == [str(folder / "out" / "order.img")]


def test_a_third_partition_of_the_base_is_grown_and_its_old_content_replaced(
    tmp_path, zim_files
):
    base = make_base_image(tmp_path / "base3.img", data_partition=True)
    before = sfdisk_table(base)["partitions"][2]

    result = build_image(
        base_image=base,
        output=tmp_path / "out.img",
        image_bytes=IMAGE_BYTES_16GB,
        content_files=content_of(zim_files)[:1],
        hotspot_config={"name": "grown"},
        work_dir=tmp_path / "work",
    )

    after = sfdisk_table(result.path)["partitions"][2]
    assert after["start"] == before["start"]
    assert (after["start"] + after["size"]) * 512 == IMAGE_BYTES_16GB
    names = debugfs_ls(result.path, result.data_offset, "/")
    assert "zims" in names
    assert "old.txt" not in names


def test_a_gpt_base_image_gets_its_backup_header_at_the_new_end(tmp_path, zim_files):
    base = make_base_image(tmp_path / "gpt.img", label="gpt")

    result = build_image(
        base_image=base,
        output=tmp_path / "out.img",
        image_bytes=IMAGE_BYTES_8GB,
        content_files=content_of(zim_files),
        hotspot_config={"name": "gpt"},
        work_dir=tmp_path / "work",
    )

    table = sfdisk_table(result.path)
    sectors = IMAGE_BYTES_8GB // 512
    assert table["lastlba"] == sectors - 34
    assert run("sfdisk", "--verify", str(result.path)).stdout.count("No errors") == 1
    check = subprocess.run(
        ["e2fsck", "-fn", f"{result.path}?offset={result.data_offset}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": tools.tool_path()},
        check=False,
    )
    assert check.returncode == 0


@pytest.mark.parametrize("phase", PHASES)
def test_a_cancel_in_any_phase_leaves_no_files_behind(
    tmp_path, base_image, zim_files, phase
):
    current = []

    with pytest.raises(BuildCanceled):
        build_image(
            base_image=base_image,
            output=tmp_path / "out" / "order.img",
            image_bytes=IMAGE_BYTES_8GB,
            content_files=content_of(zim_files),
            hotspot_config=CONFIG,
            work_dir=tmp_path / "work",
            progress=lambda name, _: current.append(name),
            cancel=lambda: bool(current) and current[-1] == phase,
        )

    assert current[-1] == phase
    assert leftovers(tmp_path / "out", tmp_path / "work") == []
    assert all(src.exists() for src in zim_files)


@pytest.fixture
def fake_tool(tmp_path, monkeypatch):
    """Put a shell script named like a real tool first on PATH."""
    folder = tmp_path / "fakebin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def install(name: str, script: str) -> None:
        (folder / name).write_text(f"#!/bin/sh\n{script}\n")
        (folder / name).chmod(0o755)

    return install


def test_a_cancel_while_mke2fs_runs_stops_it_at_once(
    tmp_path, base_image, zim_files, fake_tool
):
    fake_tool("mke2fs", "exec sleep 60")  # an mke2fs that takes its time
    started = []

    def cancel():
        return bool(started) and time.monotonic() - started[0] > 0.5

    def progress(phase, _):
        if phase == "building filesystem" and not started:
            started.append(time.monotonic())

    with pytest.raises(BuildCanceled):
        build_image(
            base_image=base_image,
            output=tmp_path / "out.img",
            image_bytes=IMAGE_BYTES_8GB,
            content_files=content_of(zim_files),
            hotspot_config=CONFIG,
            work_dir=tmp_path / "work",
            progress=progress,
            cancel=cancel,
        )

    assert time.monotonic() - started[0] < 10
    assert leftovers(tmp_path / "work") == []
    assert not (tmp_path / "out.img").exists()
    assert not (tmp_path / "out.img.part").exists()


def test_a_failing_tool_fails_the_build_and_removes_the_half_built_image(
    tmp_path, base_image, zim_files, fake_tool
):
    fake_tool("mcopy", "echo 'disk full' >&2; exit 1")

    with pytest.raises(BuildError, match=r"could not write hotspot.yaml .*disk full"):
        build_image(
            base_image=base_image,
            output=tmp_path / "out.img",
            image_bytes=IMAGE_BYTES_8GB,
            content_files=content_of(zim_files),
            hotspot_config=CONFIG,
            work_dir=tmp_path / "work",
        )

    assert leftovers(tmp_path / "work") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fakebin", "work"]


def test_missing_tools_are_named_with_the_package_to_install(
    tmp_path, base_image, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "SBIN", ())

    with pytest.raises(BuildError, match=r"sfdisk, mke2fs, mcopy not found .*fdisk"):
        build_image(
            base_image=base_image,
            output=tmp_path / "out.img",
            image_bytes=IMAGE_BYTES_8GB,
            content_files=[],
            hotspot_config=CONFIG,
            work_dir=tmp_path / "work",
        )


def test_the_tools_are_found_in_sbin_when_path_lacks_it(tmp_path, monkeypatch):
    # An ordinary Debian user's PATH: sfdisk and mke2fs are in /usr/sbin.
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")

    base = make_base_image(tmp_path / "base.img")
    table = image_module.read_partition_table(base)

    assert len(table.partitions) == 2
    tools.check_tools()


def sparse_file(path: Path, size: int) -> Path:
    with path.open("wb") as stream:
        stream.truncate(size)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_bytes": 12 * 10**9 + 1}, "not a whole number of 512-byte"),
        ({"content_files": [("ZIM", "../etc/passwd")]}, "must be a relative path"),
        ({"content_files": [("ZIM", "a.zim"), ("ZIM", "a.zim")]}, "used twice"),
        ({"content_files": [("ZIM", "a"), ("ZIM", "a/b.zim")]}, "inside another file"),
        ({"content_files": [("MISSING", "a.zim")]}, "does not exist"),
        ({"content_files": [("HUGE", "huge.zim")]}, "choose a bigger card"),
        ({"base_image": "HUGE"}, "is bigger than the image may be"),
        ({"hotspot_config": {"name": "x", "colour": 1}}, "unknown hotspot_config"),
        ({"hotspot_config": {"ssid": "x"}}, "needs a non-empty 'name'"),
        ({"hotspot_config": {"name": "x", "wifi_password": "short"}}, "8 to 63"),
        ({"hotspot_config": {"name": "x", "timezone": "Mars/Base"}}, "IANA name"),
        ({"hotspot_config": {"name": "x", "ssid": "s" * 33}}, "1 to 32 bytes"),
        ({"hotspot_config": {"name": "x", "admin": {"login": 1}}}, "'admin' must"),
        ({"boot_files": [("ZIM", "sub/logo.png")]}, "plain file name"),
    ],
)
def test_bad_requests_are_refused_before_any_file_is_written(
    tmp_path, base_image, zim_files, change, message
):
    huge = sparse_file(tmp_path / "huge", 8 * 10**9)
    named = {"ZIM": zim_files[0], "MISSING": tmp_path / "missing", "HUGE": huge}
    arguments = {
        "base_image": base_image,
        "output": tmp_path / "out" / "order.img",
        "image_bytes": IMAGE_BYTES_8GB,
        "content_files": content_of(zim_files),
        "hotspot_config": CONFIG,
        "work_dir": tmp_path / "work",
    }
    for key, value in change.items():
        if isinstance(value, list):
            value = [(named[src], dest) for src, dest in value]
        arguments[key] = named.get(value, value) if isinstance(value, str) else value

    with pytest.raises(BuildError, match=message):
        build_image(**arguments)

    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "work").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="already not root: every test here is")
def test_an_image_is_built_by_a_user_without_root(base_image, zim_files):
    nobody = 65534
    folder = Path(tempfile.mkdtemp(prefix="creator-nonroot-"))
    try:
        os.chmod(folder, 0o755)  # noqa: S103 - nobody must reach its files
        shutil.copyfile(base_image, folder / "base.img")
        sources = []
        for index, zim in enumerate(zim_files):
            sources.append(folder / f"content{index}.zim")
            shutil.copyfile(zim, sources[-1])
        for path in [folder, *folder.iterdir()]:
            os.chown(path, nobody, nobody)
        log = folder / "child.log"

        pid = os.fork()
        if pid == 0:  # the child drops root for good, builds, and reports by exit code
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody)
                os.setuid(nobody)
                os.environ["HOME"] = str(folder)
                build_image(
                    base_image=folder / "base.img",
                    output=folder / "out.img",
                    image_bytes=IMAGE_BYTES_8GB,
                    content_files=[(s, f"zims/{s.name}") for s in sources],
                    hotspot_config=CONFIG,
                    work_dir=folder / "work",
                )
                code = 0
            except BaseException:
                log.write_text(traceback.format_exc())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)

        details = log.read_text() if log.exists() else ""
        assert os.waitstatus_to_exitcode(status) == 0, details
        assert (folder / "out.img").stat().st_uid == nobody
        data_offset = sfdisk_table(folder / "out.img")["partitions"][2]["start"] * 512
        run("e2fsck", "-fn", f"{folder / 'out.img'}?offset={data_offset}")
    finally:
        shutil.rmtree(folder)
