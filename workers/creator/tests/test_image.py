"""The image itself: a sparse copy of the base grown to its size, the data
partition grown with sfdisk and made by mke2fs from a staging tree, the boot
partition's files written with mtools; no root, mount or loop device."""

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
from workers.creator.filesystem import link_or_copy, make_folders, tree_usage
from workers.creator.image import (
    PHASES,
    BuildCanceled,
    BuildError,
    build_image,
)
from workers.creator.tests.conftest import (
    allocated,
    make_base_image,
    run,
)

MIB = 1024 * 1024
IMAGE_BYTES = 1024 * MIB
BIG_IMAGE_BYTES = 2048 * MIB
OFFSPOT = {"timezone": "Africa/Dakar", "ap": {"ssid": "École 42"}}


def content_of(zim_files):
    return [
        (zim_files[0], "zims/wiki1.zim"),
        (zim_files[1], "zims/more/wiki2.zim"),
        (zim_files[2], "wiki3.zim"),
    ]


def staged(folder: Path, files) -> Path:
    """A staging tree with `files` ((source, path) pairs) linked in."""
    staging = folder / "staging"
    staging.mkdir(parents=True)
    for src, dest in files:
        dest = Path(dest)
        make_folders(staging, dest.parent)
        link_or_copy(Path(src), staging / dest)
    return staging


def offspot_yaml(folder: Path) -> Path:
    path = folder / "offspot.yaml"
    path.write_text(yaml.safe_dump(OFFSPOT))
    return path


def build(folder: Path, base: Path, files, size=IMAGE_BYTES, **extra):
    staging = staged(folder, files)
    arguments = {
        "base_image": base,
        "output": folder / "out" / "order.img",
        "image_size": size,
        "staging": staging,
        "usage": tree_usage(staging),
        "work_dir": folder / "work",
        "boot_files": [(offspot_yaml(folder), "offspot.yaml")],
    }
    return build_image(**{**arguments, **extra})


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
    """One 1 GiB image built from the small base and three ZIM files."""
    folder = tmp_path_factory.mktemp("built")
    links = []

    def progress(phase, percent):
        reports.append((phase, percent))
        if phase == "building filesystem":
            links.append(zim_files[0].stat().st_nlink)

    reports = []
    result = build(folder, base_image, content_of(zim_files), progress=progress)
    return result, reports, links, folder


def test_the_image_has_the_size_it_was_given(built):
    result, *_ = built

    assert result.size == IMAGE_BYTES
    assert result.path.stat().st_size == IMAGE_BYTES
    assert result.path.name == "order.img"


def test_the_data_partition_is_grown_to_the_end_after_boot_and_root(built, base_image):
    result, *_ = built
    table = sfdisk_table(result.path)
    base = sfdisk_table(base_image)

    starts = [p["start"] * 512 for p in table["partitions"]]
    sizes = [p["size"] * 512 for p in table["partitions"]]
    assert len(starts) == 3
    assert table["id"] == base["id"]  # the PARTUUIDs of cmdline.txt and fstab
    assert table["partitions"][:2] == [
        {**p, "node": p["node"].replace(str(base_image), str(result.path))}
        for p in base["partitions"][:2]
    ]
    assert table["partitions"][2]["start"] == base["partitions"][2]["start"]
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


def test_the_boot_files_are_on_the_boot_partition_beside_the_bases(built):
    result, *_ = built
    boot = f"{result.path}@@{result.boot_offset}"

    config = yaml.safe_load(run("mtype", "-i", boot, "::/offspot.yaml").stdout)

    assert config == OFFSPOT  # the base's own offspot.yaml replaced
    assert "console=serial0" in run("mtype", "-i", boot, "::/cmdline.txt").stdout


def test_the_image_is_sparse(built, zim_files, base_image):
    result, *_ = built
    content = sum(src.stat().st_size for src in zim_files)

    assert allocated(result.path) < result.size // 10
    # Content, the base's data, the zeroed journal and a little metadata.
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


def test_a_base_without_data_partition_gets_one_after_its_root(tmp_path, zim_files):
    base = make_base_image(tmp_path / "base2.img", data_partition=False)
    root = sfdisk_table(base)["partitions"][1]

    result = build(tmp_path, base, content_of(zim_files)[:1])

    data = sfdisk_table(result.path)["partitions"][2]
    root_end = (root["start"] + root["size"]) * 512
    assert data["start"] * 512 == -(-root_end // (4 * MIB)) * 4 * MIB
    assert (data["start"] + data["size"]) * 512 == IMAGE_BYTES
    assert "zims" in debugfs_ls(result.path, result.data_offset, "/")


def test_a_gpt_base_image_gets_its_backup_header_at_the_new_end(tmp_path, zim_files):
    base = make_base_image(tmp_path / "gpt.img", label="gpt")

    result = build(tmp_path, base, content_of(zim_files), size=BIG_IMAGE_BYTES)

    table = sfdisk_table(result.path)
    sectors = BIG_IMAGE_BYTES // 512
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
        build(
            tmp_path,
            base_image,
            content_of(zim_files),
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
        build(
            tmp_path,
            base_image,
            content_of(zim_files),
            progress=progress,
            cancel=cancel,
        )

    assert time.monotonic() - started[0] < 10
    assert leftovers(tmp_path / "work") == []
    assert leftovers(tmp_path / "out") == []


def test_a_failing_tool_fails_the_build_and_removes_the_half_built_image(
    tmp_path, base_image, zim_files, fake_tool
):
    fake_tool("mcopy", "echo 'disk full' >&2; exit 1")

    with pytest.raises(BuildError, match=r"could not write offspot.yaml .*disk full"):
        build(tmp_path, base_image, content_of(zim_files))

    assert leftovers(tmp_path / "work") == []
    assert leftovers(tmp_path / "out") == []


def test_missing_tools_are_named_with_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "SBIN", ())

    with pytest.raises(BuildError, match=r"sfdisk, mke2fs, debugfs, mcopy not found"):
        tools.check_tools()
    with pytest.raises(
        BuildError, match=r"skopeo not found .*apt-get install .*skopeo"
    ):
        tools.check_tools(oci=True)


def test_the_tools_are_found_in_sbin_when_path_lacks_it(tmp_path, monkeypatch):
    # An ordinary Debian user's PATH: sfdisk and mke2fs are in /usr/sbin.
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")

    base = make_base_image(tmp_path / "base.img")
    table = image_module.read_partition_table(base)

    assert len(table.partitions) == 3
    tools.check_tools()


def sparse_file(path: Path, size: int) -> Path:
    with path.open("wb") as stream:
        stream.truncate(size)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": IMAGE_BYTES + 1}, "not whole 512-byte sectors"),
        ({"files": [("HUGE", "huge.zim")]}, "give a bigger output.size"),
        ({"base_image": "HUGE"}, "is bigger than the image may be"),
        ({"base_image": "MISSING"}, "does not exist"),
        ({"boot_files": [("ZIM", "sub/logo.png")]}, "plain file name"),
    ],
)
def test_bad_requests_are_refused_before_any_file_is_written(
    tmp_path, base_image, zim_files, change, message
):
    huge = sparse_file(tmp_path / "huge", 2 * IMAGE_BYTES)
    named = {"ZIM": zim_files[0], "MISSING": tmp_path / "missing", "HUGE": huge}
    files = [
        (named.get(s, s), d) for s, d in change.pop("files", content_of(zim_files))
    ]
    extra = {
        key: named.get(value, value) if isinstance(value, str) else value
        for key, value in change.items()
    }
    if "boot_files" in extra:
        extra["boot_files"] = [(named[s], n) for s, n in extra["boot_files"]]
    base = extra.pop("base_image", base_image)

    with pytest.raises(BuildError, match=message):
        build(tmp_path, base, files, **extra)

    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "work").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="already not root: every test here is")
def test_an_image_is_built_by_a_user_without_root_with_root_s_files(
    base_image, zim_files
):
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
                build(
                    folder,
                    folder / "base.img",
                    [(s, f"zims/{s.name}") for s in sources],
                )
                code = 0
            except BaseException:
                log.write_text(traceback.format_exc())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)

        details = log.read_text() if log.exists() else ""
        assert os.waitstatus_to_exitcode(status) == 0, details
        image = folder / "out" / "order.img"
        assert image.stat().st_uid == nobody
        data_offset = sfdisk_table(image)["partitions"][2]["start"] * 512
        run("e2fsck", "-fn", f"{image}?offset={data_offset}")
        # As image-creator (root) writes them: root's, not the builder's.
        for inside in ("/zims", "/zims/content0.zim"):
            stat = run(
                "debugfs", "-R", f"stat {inside}", f"{image}?offset={data_offset}"
            )
            assert "User:     0   Group:     0" in stat.stdout, stat.stdout
    finally:
        shutil.rmtree(folder)
