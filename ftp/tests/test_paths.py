"""Virtual paths: normalisation, classification, and staying inside the root."""

import os

import pytest

from ftp import paths
from ftp.paths import Kind

ORDER = "0b7e4c1e-2f7a-4d61-9a55-8a4c3f0e9d12"


@pytest.mark.parametrize(
    ("cwd", "arg", "expected"),
    [
        ("/", "orders", "/orders"),
        ("/orders", "x.img", "/orders/x.img"),
        ("/orders", "/quarantine", "/quarantine"),
        ("/", "../../../etc/passwd", "/etc/passwd"),
        ("/orders/a", "../../..", "/"),
        ("/", "orders//./a/../b/", "/orders/b"),
        ("/orders", "", "/orders"),
    ],
)
def test_paths_are_normalised_without_ever_climbing_above_the_root(cwd, arg, expected):
    assert paths.normalize(cwd, arg) == expected


@pytest.mark.parametrize("arg", ["a\x00b", "line\nbreak", "tab\there"])
def test_control_characters_are_refused(arg):
    with pytest.raises(paths.BadPath):
        paths.normalize("/", arg)


@pytest.mark.parametrize(
    ("path", "kind", "order", "name"),
    [
        ("/", Kind.ROOT, "", ""),
        ("/orders", Kind.ORDERS, "", ""),
        (f"/orders/{ORDER}", Kind.ORDER, ORDER, ""),
        (f"/orders/{ORDER}/a.img", Kind.ORDER_FILE, ORDER, "a.img"),
        (f"/orders/{ORDER}/a/b.img", Kind.OTHER, "", ""),
        ("/orders/not-a-uuid/a.img", Kind.OTHER, "", ""),
        ("/orders/" + ORDER.upper(), Kind.OTHER, "", ""),
        ("/quarantine/x/y", Kind.QUARANTINE, "", "y"),
        ("/.warehouse/spool/a.json", Kind.INTERNAL, "", ""),
        ("/etc/passwd", Kind.OTHER, "", ""),
    ],
)
def test_a_path_says_what_it_designates(path, kind, order, name):
    where = paths.classify(path)
    assert (where.kind, where.order, where.name) == (kind, order, name)


@pytest.mark.parametrize(
    ("name", "valid", "part"),
    [
        ("disk.img", True, False),
        ("disk.bmap", True, False),
        ("disk.img.part", True, True),
        ("notes.txt", False, False),
        (".img", False, False),
        ("-x.img", False, False),
        ("été.img", False, False),
    ],
)
def test_only_image_and_block_map_names_are_valid(name, valid, part):
    where = paths.classify(f"/orders/{ORDER}/{name}")
    assert (where.valid_name, where.is_part) == (valid, part)


def test_api_paths_must_name_an_image_file_of_an_order():
    where = paths.parse_api_path(f"orders/{ORDER}/disk.img")
    assert (where.order, where.name, where.api_path) == (
        ORDER,
        "disk.img",
        f"orders/{ORDER}/disk.img",
    )
    for bad in (
        f"orders/{ORDER}/../../etc/passwd",
        f"orders/{ORDER}/disk.img.part",
        "quarantine/x/disk.img",
        f"orders/{ORDER}/notes.txt",
    ):
        with pytest.raises(paths.BadPath):
            paths.parse_api_path(bad)


def test_no_symlink_below_the_root_is_followed(tmp_path):
    root = tmp_path / "root"
    (root / "orders").mkdir(parents=True)
    (root / ".warehouse").mkdir()
    (tmp_path / "secret").write_text("x")
    (root / "orders" / "inside.img").write_text("y")
    (root / "orders" / "out.img").symlink_to(tmp_path / "secret")
    (root / "orders" / "in.img").symlink_to(root / "orders" / "inside.img")
    (root / "orders" / "state").symlink_to(root / ".warehouse")
    (root / "up").symlink_to(tmp_path)
    assert paths.within(str(root), str(root / "orders" / "inside.img"))
    assert paths.within(str(root), str(root))
    # Out of the root, or inside it: a link lets the policy judge one path and
    # the disk serve another, so none is followed.
    assert not paths.within(str(root), str(root / "orders" / "out.img"))
    assert not paths.within(str(root), str(root / "orders" / "in.img"))
    assert not paths.within(str(root), str(root / "orders" / "state" / "spool"))
    assert not paths.within(str(root), str(root / "up" / "secret"))
    assert not paths.within(str(root), str(tmp_path / "rootless"))
    assert not paths.within(str(root), str(root / "orders" / "a\0b"))


def test_a_storage_root_that_is_itself_a_link_works(tmp_path):
    disk = tmp_path / "disk"
    (disk / "orders").mkdir(parents=True)
    (disk / "orders" / "x.img").write_text("y")
    root = tmp_path / "root"
    root.symlink_to(disk)
    assert paths.within(str(root), str(root / "orders" / "x.img"))


def test_real_and_virtual_paths_map_both_ways(tmp_path):
    root = str(tmp_path)
    real = paths.to_real(root, "/orders/x.img")
    assert real == os.path.join(root, "orders", "x.img")
    assert paths.to_virtual(root, real) == "/orders/x.img"
    assert paths.to_virtual(root, root) == "/"
    assert paths.to_virtual(root, os.path.dirname(root)) == "/"
