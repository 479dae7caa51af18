"""image-creator's YAML as the creator reads it: what offspot-config's
ConfigBuilder renders is accepted, and each key or value the format does not
have, or the creator cannot honour, is refused with one line naming it before
anything is made."""

import copy
import re

import pytest
import yaml
from offspot_config.builder import ConfigBuilder
from offspot_config.inputs.base import BaseConfig
from offspot_config.inputs.checksum import Checksum
from offspot_config.packages import FilesPackage, ZimPackage
from offspot_config.utils.misc import b64_encode

from workers.creator import cli
from workers.creator.recipe import RecipeError, parse_recipe

VALID = {
    "base": {"source": "/srv/base.img", "rootfs_size": "32MiB"},
    "output": {"size": "auto"},
    "files": [
        {"to": "/data/contents/a.txt", "content": "a"},
        {"to": "/data/contents/pkg", "url": "https://example.org/p.zip", "via": "zip"},
    ],
    "oci_images": [
        {"ident": "ghcr.io/offspot/tiny:1.0", "filesize": 10, "fullsize": 10}
    ],
    "offspot": {"timezone": "UTC"},
}


def rendered() -> str:
    builder = ConfigBuilder(
        base=BaseConfig(source="/srv/base.img", rootfs_size=33554432),
        name="Test",
        domain="test",
        ssid="Test",
        environ={"ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": "secret"},
        write_config=True,
    )
    builder.add_dashboard()
    builder.add_zim(
        ZimPackage(
            kind="zim",
            ident="imager:wiki1:",
            name="wiki1",
            title="Wiki 1",
            description="demo",
            languages=["eng"],
            tags=[],
            flavour="",
            version="2024-01",
            download_size=1000,
            download_url="https://example.org/wiki1.zim",
            download_checksum=Checksum(algo="sha-256", value="a" * 64),
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
            download_url="https://example.org/docs.zip",
            download_size=500,
        )
    )
    builder.add_file(
        url_or_content=b64_encode(b"PNG"),
        to="/data/contents/branding/square-logo-light.png",
        via="base64",
        size=3,
        is_url=False,
    )
    return builder.render()


def test_what_config_builder_renders_is_read_whole():
    text = rendered()
    recipe = parse_recipe(text)

    document = yaml.safe_load(text)
    assert recipe.size is None
    assert recipe.base.rootfs_size == 33554432
    assert [i.ident for i in recipe.images] == [
        i["ident"] for i in document["oci_images"]
    ]
    assert [f"/data/{f.to}" for f in recipe.files] == [
        *(f["to"] for f in document["files"]),
        "/data/image.yaml",  # write_config
    ]
    zim = next(f for f in recipe.files if f.to.name == "imager_wiki1_.zim")
    assert (zim.checksum.algo, zim.checksum.value) == ("sha256", "a" * 64)
    assert next(f for f in recipe.files if f.via == "zip").size == 500
    logo = next(f for f in recipe.files if f.to.name == "square-logo-light.png")
    assert logo.payload() == b"PNG"
    assert recipe.offspot == document["offspot"]
    assert recipe.files[-1].content == text.strip()


@pytest.mark.parametrize(
    ("text", "size"),
    [("8G", 8 * 10**9), ("8GiB", 8 * 2**30), (1000, 1024), ("auto", None)],
)
def test_output_size_is_read_as_offspot_config_reads_it(text, size):
    recipe = parse_recipe(yaml.safe_dump({**VALID, "output": {"size": text}}))

    assert recipe.size == size


def test_a_base_version_names_kiwix_s_published_base_image():
    recipe = parse_recipe(
        yaml.safe_dump({**VALID, "base": {"source": "1.4.1", "rootfs_size": "5G"}})
    )

    assert recipe.base.source == (
        "https://drive.hotspot.kiwix.org/base/offspot-base-arm64-1.4.1.img"
    )


def change(path, value):
    """A copy of VALID with the key at `path` (dotted, with list indexes) set,
    or removed when `value` is REMOVE."""

    def apply(document):
        *parents, last = path
        node = document
        for key in parents:
            node = node[key]
        if value is REMOVE:
            del node[last]
        else:
            node[last] = value
        return document

    return apply


REMOVE = object()
REFUSED = [
    (change(["colour"], "blue"), "unknown key colour"),
    (change(["base"], REMOVE), "base: missing"),
    (change(["base", "source"], "ftp://x/base.img"), "base.source: ftp://"),
    (change(["base", "rootfs_size"], "lots"), "base.rootfs_size: 'lots'"),
    (change(["base", "size"], 3), "unknown key base.size"),
    (change(["output", "size"], "huge"), "output.size: 'huge'"),
    (change(["output", "compress"], True), "output.compress: only false"),
    (change(["output", "size"], "1M"), "output.size: 1000448 bytes is less"),
    (
        change(["oci_images", 0, "ident"], "ghcr.io/x/y@sha256:" + "a" * 64),
        "oci_images[0].ident: .* has no tag",
    ),
    (change(["oci_images", 0, "ident"], "a/b/c/d:1"), "oci_images[0].ident"),
    (change(["oci_images", 0, "filesize"], "big"), "oci_images[0].filesize"),
    (change(["oci_images", 0, "registry"], "x"), "unknown key oci_images[0].registry"),
    (change(["oci_images", 0, "fullsize"], REMOVE), "oci_images[0].fullsize: missing"),
    (change(["files"], {"to": "/data/x"}), "files: must be a list"),
    (change(["files", 0, "mode"], "0644"), "unknown key files[0].mode"),
    (change(["files", 0, "to"], REMOVE), "files[0].to: missing"),
    (change(["files", 1, "via"], "rar"), "files[1].via: 'rar' is not supported"),
    (change(["files", 0, "to"], "/etc/passwd"), "files[0].to: '/etc/passwd'"),
    (change(["files", 0, "to"], "/data/../etc/x"), "files[0].to: .*without '..'"),
    (change(["files", 0, "to"], "data/x"), "files[0].to: 'data/x'"),
    (change(["files", 0, "to"], "/data/x\0y"), "files[0].to: contains a NUL"),
    (change(["files", 0, "to"], "/data"), "files[0].to: /data is a folder"),
    (change(["files", 0, "content"], REMOVE), "files[0]: give url or content"),
    (change(["files", 1, "url"], "ftp://x/p.zip"), "files[1].url: 'ftp://x/p.zip'"),
    (change(["files", 1, "url"], "p.zip"), "files[1].url: 'p.zip'"),
    (change(["files", 1, "via"], "base64"), "files[1].via: base64 decodes"),
    (change(["files", 0, "via"], "zip"), "files[0].via: zip expands"),
    (change(["files", 0, "via"], "base64"), "files[0].content: not valid base64"),
    (change(["files", 1, "size"], "wide"), "files[1].size: 'wide'"),
    (
        change(["files", 1, "checksum"], {"algo": "sha-3", "value": "ab"}),
        "files[1].checksum.algo: 'sha-3' is not supported",
    ),
    (
        change(["files", 1, "checksum"], {"algo": "md5", "value": "xyz"}),
        "files[1].checksum.value: not a md5 digest",
    ),
    (
        change(["files", 1, "checksum"], {"algo": "md5", "value": "a", "kind": "x"}),
        "files[1].checksum.kind: 'x'",
    ),
    (
        change(["files", 1, "checksum"], {"algo": "md5", "value": "a", "kind": "url"}),
        "files[1].checksum.value: kind url needs",
    ),
    (change(["files", 1, "to"], "/data/contents/a.txt"), "files[1].to: .*files[0]'s"),
    (
        change(["files", 1, "to"], "/data/contents/a.txt/p"),
        "files[1].to: .*inside /data/contents/a.txt, a file of files[0]",
    ),
    (
        change(["files", 1], {"to": "/data/z/", "url": "https://x.org/"}),
        "files[1].to: the URL gives no usable file name",
    ),
    (change(["write_config"], "yes"), "write_config: must be true or false"),
    (change(["offspot"], ["timezone"]), "offspot: must be a mapping"),
]


@pytest.mark.parametrize(("edit", "message"), REFUSED)
def test_a_refused_key_or_value_stops_the_build_with_one_line_naming_it(
    tmp_path, capsys, edit, message
):
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(edit(copy.deepcopy(VALID))))
    work = tmp_path / "work"
    work.mkdir()

    code = cli.main(
        [
            str(config),
            str(tmp_path / "out.img"),
            "--work-dir",
            str(work),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m workers.creator build: ")
    with pytest.raises(RecipeError, match=message.replace("[", r"\[")):
        raise RecipeError(lines[0])
    assert list(work.iterdir()) == []
    assert not (tmp_path / "out.img").exists()
    assert not (tmp_path / "out.img.bmap").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: [unclosed", "the recipe is not valid YAML (line 1)"),
        ("- just\n- a list\n", "the recipe: must be a mapping"),
    ],
)
def test_a_recipe_that_is_not_a_mapping_is_refused(text, message):
    with pytest.raises(RecipeError, match=re.escape(message)) as error:
        parse_recipe(text)

    assert "\n" not in str(error.value)
