"""``python -m workers.creator build`` on what Kiwix's ConfigBuilder renders
(dashboard, two ZIM files, a files package, branding, OCI images from a local
registry), checked with tools nobody here wrote: sfdisk, fsck.ext4, debugfs,
mtools and bmaptool."""

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from offspot_config.builder import ConfigBuilder
from offspot_config.inputs.base import BaseConfig
from offspot_config.inputs.checksum import Checksum
from offspot_config.inputs.mainconfig import MainConfig
from offspot_config.packages import FilesPackage, ZimPackage
from offspot_config.utils.misc import b64_encode
from offspot_config.utils.sizes import get_min_image_size

from demo.catalog import ContentServer
from workers.common.hashing import sha256_file
from workers.creator import cli
from workers.creator.oci import export_name
from workers.creator.tests.conftest import (
    BASE_ROOTFS_SIZE,
    TINY_IMAGE,
    png_48x48,
    publish,
    run,
)

REPO = Path(__file__).resolve().parents[3]
MIB = 1024 * 1024
PACKAGE = {"index.html": b"<h1>Docs</h1>", "guide/en.txt": b"read me\n" * 100}


def creator_build(recipe: Path, output: Path, folder: Path, *extra, **popen):
    command = [
        sys.executable, "-m", "workers.creator", "build", str(recipe), str(output),
        "--work-dir", str(folder / "work"), "--cache-dir", str(folder / "cache"),
        "--progress", "log",
        # The content server and the registry are on loopback.
        "--outbound-allow", "127.0.0.0/8", *extra,
    ]  # fmt: skip
    if popen:
        return subprocess.Popen(command, cwd=REPO, text=True, **popen)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def zip_package(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in PACKAGE.items():
            archive.writestr(name, data)
    return path


def render(base: Path, zims: list[str], sizes: list[int], url: str, digest: str):
    """The YAML Kiwix's ConfigBuilder renders for a small hotspot."""
    builder = ConfigBuilder(
        base=BaseConfig(source=str(base), rootfs_size=BASE_ROOTFS_SIZE),
        name="École Hotspot",
        domain="ecole",
        ssid="École 42",
        passphrase="wifi-secret",
        environ={"ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": "admin-pass"},
        write_config=True,
    )
    builder.add_dashboard()
    checksums = [
        Checksum(algo="sha-256", value=digest),
        Checksum(algo="md5", value=f"{url}/{zims[1]}.md5", kind="url"),
    ]
    for number, (name, size, checksum) in enumerate(
        zip(zims, sizes, checksums, strict=True), 1
    ):
        builder.add_zim(
            ZimPackage(
                kind="zim",
                ident=f"imager:wiki{number}:",
                name=f"wiki{number}",
                title=f"Wiki {number}",
                description="demo",
                languages=["fra"],
                tags=[],
                flavour="",
                version="2024-01",
                download_size=size,
                download_url=f"{url}/{name}",
                download_checksum=checksum,
            )
        )
    builder.add_files_package(
        FilesPackage(
            kind="files",
            ident="docs",
            domain="docs",
            title="Docs",
            description="demo",
            via="zip",
            download_url=f"{url}/docs.zip",
            download_size=sum(len(data) for data in PACKAGE.values()),
        )
    )
    logo = png_48x48()
    builder.add_file(
        url_or_content=b64_encode(logo),
        to="/data/contents/branding/square-logo-light.png",
        via="base64",
        size=len(logo),
        is_url=False,
    )
    return builder.render()


@pytest.fixture(scope="module")
def hotspot(tmp_path_factory, base_image, zim_files, registry):
    """A ConfigBuilder recipe built by the command line into out.img."""
    folder = tmp_path_factory.mktemp("hotspot")
    www = folder / "www"
    www.mkdir()
    for zim in zim_files[:2]:
        (www / zim.name).write_bytes(zim.read_bytes())
    second = zim_files[1].read_bytes()
    (www / f"{zim_files[1].name}.md5").write_text(
        hashlib.md5(second).hexdigest() + f"  {zim_files[1].name}\n"  # noqa: S324
    )
    zip_package(www / "docs.zip")
    server = ContentServer(www)
    text = render(
        base_image,
        [zim.name for zim in zim_files[:2]],
        [zim.stat().st_size for zim in zim_files[:2]],
        server.url,
        hashlib.sha256(zim_files[0].read_bytes()).hexdigest(),
    )
    document = yaml.safe_load(text)
    # The one small image of the registry, under every name the builder uses.
    registry.stand_in_for([i["ident"] for i in document["oci_images"]], registry.layout)
    recipe = folder / "recipe.yaml"
    recipe.write_text(text)
    output = folder / "out.img"
    done = creator_build(
        recipe, output, folder, "--registry-mirror", f"ghcr.io={registry.url}"
    )
    assert done.returncode == 0, done.stderr
    table = json.loads(run("sfdisk", "-J", str(output)).stdout)["partitiontable"]
    yield {
        "folder": folder,
        "text": text,
        "document": document,
        "image": output,
        "table": table,
        "data": table["partitions"][2]["start"] * 512,
        "boot": table["partitions"][0]["start"] * 512,
        "www": www,
        "stdout": done.stdout,
    }
    server.close()


def debugfs_dump(image: Path, offset: int, inside: str, out: Path) -> bytes:
    out.unlink(missing_ok=True)
    run("debugfs", "-R", f"dump {inside} {out}", f"{image}?offset={offset}")
    return out.read_bytes()


def test_the_image_is_sized_as_offspot_config_sizes_it(hotspot, base_image):
    image = hotspot["image"]
    minimum = get_min_image_size(MainConfig.read_from(hotspot["text"]))

    assert image.stat().st_size == -(-minimum // (4 * MIB)) * 4 * MIB
    assert Path(f"{image}.bmap").is_file()
    assert f"{image}: {image.stat().st_size} bytes" in hotspot["stdout"]
    assert list((hotspot["folder"] / "work").iterdir()) == []


def test_sfdisk_reads_the_base_s_partitions_and_a_data_partition_to_the_end(
    hotspot, base_image
):
    table, image = hotspot["table"], hotspot["image"]
    base = json.loads(run("sfdisk", "-J", str(base_image)).stdout)["partitiontable"]

    assert table["id"] == base["id"]
    assert [(p["start"], p["type"]) for p in table["partitions"]] == [
        (p["start"], p["type"]) for p in base["partitions"]
    ]
    data = table["partitions"][2]
    assert (data["start"] + data["size"]) * 512 == image.stat().st_size


def test_fsck_finds_the_data_filesystem_clean(hotspot):
    check = subprocess.run(
        ["fsck.ext4", "-fn", f"{hotspot['image']}?offset={hotspot['data']}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"/usr/sbin:/sbin:{os.environ['PATH']}"},
        check=False,
    )

    assert check.returncode == 0, check.stdout + check.stderr


def test_every_file_is_where_image_creator_puts_it_with_its_bytes(
    hotspot, zim_files, tmp_path
):
    image, offset, www = hotspot["image"], hotspot["data"], hotspot["www"]
    out = tmp_path / "dumped"
    checked = 0
    for entry in hotspot["document"]["files"]:
        inside = entry["to"].removeprefix("/data")
        if entry.get("via") == "zip":
            for name, data in PACKAGE.items():
                assert debugfs_dump(image, offset, f"{inside}/{name}", out) == data
                checked += 1
            continue
        if "url" in entry:
            expected = (www / entry["url"].rsplit("/", 1)[-1]).read_bytes()
        elif entry.get("via") == "base64":
            expected = base64.standard_b64decode(entry["content"])
        else:
            expected = entry["content"].strip().encode()
        dumped = debugfs_dump(image, offset, inside, out)
        assert len(dumped) == len(expected), inside
        assert hashlib.sha256(dumped).digest() == hashlib.sha256(expected).digest()
        checked += 1
    assert checked == len(hotspot["document"]["files"]) + len(PACKAGE) - 1
    # write_config: the recipe itself, where offspot-config puts it.
    copy = debugfs_dump(image, offset, "/image.yaml", out).decode()
    assert copy == hotspot["text"].strip()
    # The base's data partition is kept: the card grows it at first boot.
    assert debugfs_dump(image, offset, "/master_fs", out) == b""


def test_every_oci_image_is_in_the_images_folder_as_docker_export_names_it(
    hotspot, tmp_path
):
    image, offset = hotspot["image"], hotspot["data"]
    listing = run("debugfs", "-R", "ls -p /images", f"{image}?offset={offset}")
    names = {line.split("/")[5] for line in listing.stdout.splitlines() if line}

    idents = [entry["ident"] for entry in hotspot["document"]["oci_images"]]
    assert names == {".", "..", *(export_name(ident) for ident in idents)}
    for ident in idents:
        dumped = debugfs_dump(
            image, offset, f"/images/{export_name(ident)}", tmp_path / "x"
        )
        with tarfile.open(fileobj=io.BytesIO(dumped)) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))
            config = json.load(archive.extractfile(manifest[0]["Config"]))
        assert manifest[0]["RepoTags"] == [ident]
        assert config["architecture"] == "arm64"


def test_the_files_are_root_s_and_readable_by_the_hotspot_s_services(hotspot):
    image, offset = hotspot["image"], hotspot["data"]
    for inside in ("/contents", "/contents/zims/imager_wiki1_.zim", "/images"):
        stat = run("debugfs", "-R", f"stat {inside}", f"{image}?offset={offset}").stdout
        assert "User:     0   Group:     0" in stat, stat
        mode = int(stat.split("Mode:")[1].split()[0], 8)
        assert mode & 0o444 == 0o444


def test_offspot_yaml_on_the_boot_partition_is_the_recipe_s_offspot(hotspot):
    text = subprocess.run(
        ["mtype", "-i", f"{hotspot['image']}@@{hotspot['boot']}", "::/offspot.yaml"],
        capture_output=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout.decode()

    assert yaml.safe_load(text) == hotspot["document"]["offspot"]


def test_bmaptool_copies_the_image_through_its_block_map(hotspot, tmp_path):
    image = hotspot["image"]
    card = tmp_path / "card.img"

    subprocess.run(
        ["bmaptool", "copy", "--bmap", f"{image}.bmap", str(image), str(card)],
        capture_output=True,
        check=True,
    )

    assert card.stat().st_size == image.stat().st_size
    assert sha256_file(card) == sha256_file(image)


def test_a_fixed_output_size_is_honoured(hotspot, tmp_path):
    document = dict(hotspot["document"], output={"size": "1GiB"}, oci_images=[])
    recipe = tmp_path / "fixed.yaml"
    recipe.write_text(yaml.safe_dump(document))
    output = tmp_path / "fixed.img"

    done = creator_build(recipe, output, hotspot["folder"])

    assert done.returncode == 0, done.stderr
    assert output.stat().st_size == 2**30
    table = json.loads(run("sfdisk", "-J", str(output)).stdout)["partitiontable"]
    data = table["partitions"][2]
    assert (data["start"] + data["size"]) * 512 == 2**30


def test_an_existing_output_is_kept_unless_overwrite_is_asked(hotspot, tmp_path):
    done = creator_build(tmp_path / "absent.yaml", hotspot["image"], tmp_path)
    assert done.returncode == 2
    assert "cannot read the recipe" in done.stderr

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(hotspot["text"])
    done = creator_build(recipe, hotspot["image"], tmp_path)

    assert done.returncode == 2
    assert done.stderr.strip().endswith("exists: remove it or pass --overwrite")


def test_a_build_stopped_by_sigterm_leaves_nothing_behind(
    tmp_path, base_image, zim_files, http_server
):
    url, state = http_server
    path = publish(state, zim_files[2])
    state.delay = 0.2  # slow: the signal lands during the download
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "base": {"source": str(base_image), "rootfs_size": BASE_ROOTFS_SIZE},
                "files": [{"to": "/data/contents/zims/slow.zim", "url": url + path}],
            }
        )
    )
    output = tmp_path / "out.img"
    child = creator_build(
        recipe, output, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not state.gets(path):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)

    assert child.returncode == 130, err
    assert "canceled" in err
    assert not output.exists()
    assert not Path(f"{output}.bmap").exists()
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="already not root: every test here is")
def test_a_user_without_root_builds_a_recipe_with_an_oci_image(base_image, registry):
    nobody = 65534
    folder = Path(tempfile.mkdtemp(prefix="creator-nobody-"))
    try:
        os.chmod(folder, 0o755)  # noqa: S103 - nobody must reach its files
        os.chown(folder, nobody, nobody)
        base = folder / "base.img"
        base.write_bytes(base_image.read_bytes())
        recipe = folder / "recipe.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "base": {"source": str(base), "rootfs_size": BASE_ROOTFS_SIZE},
                    "oci_images": [
                        {"ident": TINY_IMAGE, "filesize": 20480, "fullsize": 10240}
                    ],
                    "files": [{"to": "/data/contents/a.txt", "content": "hello"}],
                    "offspot": {"timezone": "UTC"},
                }
            )
        )
        output = folder / "out.img"
        pid = os.fork()
        if pid == 0:  # the child drops root for good, builds, reports by exit code
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody)
                os.setuid(nobody)
                os.environ["HOME"] = "/nonexistent"  # as a service account's
                code = cli.main(
                    [
                        str(recipe), str(output),
                        "--work-dir", str(folder / "work"),
                        "--cache-dir", str(folder / "cache"),
                        "--registry-mirror", f"ghcr.io={registry.url}",
                        "--outbound-allow", "127.0.0.0/8",
                        "--log-level", "ERROR",
                    ]
                )  # fmt: skip
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        assert output.stat().st_uid == nobody
        table = json.loads(run("sfdisk", "-J", str(output)).stdout)["partitiontable"]
        data = f"{output}?offset={table['partitions'][2]['start'] * 512}"
        stat = run("debugfs", "-R", f"stat /images/{export_name(TINY_IMAGE)}", data)
        assert "User:     0   Group:     0" in stat.stdout
    finally:
        shutil.rmtree(folder)
