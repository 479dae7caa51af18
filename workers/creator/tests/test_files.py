"""A recipe's files on their way to the data partition: fetched through the
cache with the checksum they give, decoded, expanded (never outside their
folder), laid out in image-creator's order."""

import base64
import hashlib
import io
import tarfile
import zipfile
import zlib

import pytest

from workers.creator.cache import ContentCache
from workers.creator.content import fetch_files, stage_files
from workers.creator.download import ContentError
from workers.creator.recipe import parse_recipe
from workers.creator.tests.conftest import LOOPBACK, publish


def recipe_with(files_yaml: str):
    return parse_recipe(
        "base: {source: /base.img, rootfs_size: 1G}\nfiles:\n" + files_yaml
    )


@pytest.fixture
def cache(tmp_path):
    with ContentCache(tmp_path / "cache", 10**9, allowed=LOOPBACK) as cache:
        yield cache


def stage(recipe, cache, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    fetched = fetch_files(recipe.files, cache)
    return staging, stage_files(recipe.files, fetched, staging)


def zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_every_checksum_kind_of_a_recipe_is_checked(
    cache, tmp_path, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[0])
    data = zim_files[0].read_bytes()
    sha512 = hashlib.sha512(data).hexdigest()
    (state.directory / "wiki1.zim.sha1").write_text(
        hashlib.sha1(data).hexdigest() + "  wiki1.zim\n"  # noqa: S324 - a checksum
    )
    recipe = recipe_with(
        f"""
- {{to: /data/a.zim, url: "{url}{path}", checksum: {{algo: sha-512, value: {sha512}}}}}
- to: /data/b.zim
  url: "{url}{path}"
  checksum: {{algo: adler32, value: "{zlib.adler32(data):08x}"}}
- to: /data/c.zim
  url: "{url}{path}"
  checksum: {{algo: sha-1, kind: url, value: "{url}/wiki1.zim.sha1"}}
"""
    )

    staging, brought = stage(recipe, cache, tmp_path)

    for name in ("a.zim", "b.zim", "c.zim"):
        assert (staging / name).read_bytes() == data
    assert brought == {f"files[{i}]": len(data) for i in range(3)}
    assert state.gets(path) == [None]  # one download, checked three ways


def test_a_wrong_checksum_of_a_recipe_fails_naming_the_url(
    cache, tmp_path, http_server, zim_files
):
    url, state = http_server
    path = publish(state, zim_files[0])
    recipe = recipe_with(
        f'- {{to: /data/a.zim, url: "{url}{path}", '
        f'checksum: {{algo: sha-512, value: "{"0" * 128}"}}}}\n'
    )

    with pytest.raises(ContentError, match=f"{url}{path}: sha512 checksum mismatch"):
        stage(recipe, cache, tmp_path)


def test_a_file_without_any_checksum_is_used_as_image_creator_does(
    cache, tmp_path, http_server, zim_files
):
    url, state = http_server
    (state.directory / "plain.zim").write_bytes(zim_files[0].read_bytes())

    staging, _ = stage(
        recipe_with(f'- {{to: /data/plain.zim, url: "{url}/plain.zim"}}\n'),
        cache,
        tmp_path,
    )

    assert (staging / "plain.zim").read_bytes() == zim_files[0].read_bytes()
    assert state.gets("/plain.zim.sha256") == [None]  # looked for, not found


def test_a_percent_encoded_name_lands_decoded_in_a_folder_to(
    cache, tmp_path, http_server, zim_files
):
    url, state = http_server
    name = "Wikipédia #1 & co.zim"
    (state.directory / name).write_bytes(zim_files[0].read_bytes())
    encoded = "Wikip%C3%A9dia%20%231%20%26%20co.zim"

    staging, _ = stage(
        recipe_with(f'- {{to: /data/contents/zims/, url: "{url}/{encoded}"}}\n'),
        cache,
        tmp_path,
    )

    assert [p.name for p in (staging / "contents" / "zims").iterdir()] == [name]
    # The cache keeps safe file names of its own.
    assert all(
        " " not in p.name and "#" not in p.name and "&" not in p.name
        for p in (cache.root / "data").iterdir()
    )


def test_content_is_written_stripped_and_base64_decoded(cache, tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00binary"
    recipe = recipe_with(
        f"""
- to: /data/contents/dashboard.yaml
  content: |
    name: x
- to: /data/contents/branding/logo.png
  content: {base64.b64encode(png).decode()}
  via: base64
"""
    )

    staging, brought = stage(recipe, cache, tmp_path)

    assert (staging / "contents" / "dashboard.yaml").read_text() == "name: x"
    assert (staging / "contents" / "branding" / "logo.png").read_bytes() == png
    assert brought["files[1]"] == len(png)


def test_a_zip_is_expanded_into_its_folder_without_other_systems_litter(
    cache, tmp_path
):
    archive = tmp_path / "package.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "index.html": "<p>hi</p>",
                "sub/page.html": "page",
                "__MACOSX/._index.html": "fork",
                "sub/.DS_Store": "finder",
                "Thumbs.db": "windows",
            }
        )
    )
    recipe = recipe_with(
        f"- {{to: /data/contents/files/pkg, url: 'file://{archive}', via: zip}}\n"
    )

    staging, brought = stage(recipe, cache, tmp_path)

    folder = staging / "contents" / "files" / "pkg"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "index.html",
        "sub",
        "sub/page.html",
    ]
    assert oct(folder.joinpath("index.html").stat().st_mode & 0o777) == "0o644"
    # What it expands to, before the litter goes.
    assert brought["files[0]"] == len("<p>hi</p>pageforkfinderwindows")


@pytest.mark.parametrize("via", ["tar", "gztar", "bztar", "xztar"])
def test_every_tar_kind_is_expanded(cache, tmp_path, via):
    mode = {"tar": "w", "gztar": "w:gz", "bztar": "w:bz2", "xztar": "w:xz"}[via]
    archive = tmp_path / f"package.{via}"
    with tarfile.open(archive, mode) as tar:
        data = b"inside"
        info = tarfile.TarInfo("docs/readme.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    staging, brought = stage(
        recipe_with(f"- {{to: /data/pkg, url: 'file://{archive}', via: {via}}}\n"),
        cache,
        tmp_path,
    )

    assert (staging / "pkg" / "docs" / "readme.txt").read_bytes() == b"inside"
    assert brought["files[0]"] == 6


def test_an_archive_member_that_leaves_its_folder_is_refused(cache, tmp_path, caplog):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"ok.txt": "ok", "../../etc/passwd": "root"}))
    recipe = recipe_with(f"- {{to: /data/pkg, url: 'file://{archive}', via: zip}}\n")

    with pytest.raises(ContentError, match="a member would land outside") as error:
        stage(recipe, cache, tmp_path)

    assert not (tmp_path / "etc").exists()
    # The archive's bytes (a member's name) stay in the creator's log.
    assert "passwd" not in str(error.value)
    assert "'../../etc/passwd' would land outside" in caplog.text


def test_a_tar_link_that_leaves_its_folder_is_refused(cache, tmp_path, caplog):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)

    recipe = recipe_with(f"- {{to: /data/pkg, url: 'file://{archive}', via: tar}}\n")
    with pytest.raises(ContentError, match="a member is a link leaving") as error:
        stage(recipe, cache, tmp_path)
    assert "escape" not in str(error.value)
    assert "member 'escape'" in caplog.text


def test_a_file_that_is_not_the_archive_it_claims_is_named(cache, tmp_path):
    archive = tmp_path / "fake.zip"
    archive.write_text("not a zip")
    recipe = recipe_with(f"- {{to: /data/pkg, url: 'file://{archive}', via: zip}}\n")

    with pytest.raises(ContentError, match=r"files\[0\] .*: not a zip archive"):
        stage(recipe, cache, tmp_path)


def test_downloads_come_after_content_and_replace_it(cache, tmp_path, http_server):
    url, state = http_server
    (state.directory / "pkg.zip").write_bytes(zip_bytes({"readme.txt": "download"}))
    recipe = recipe_with(
        f"""
- {{to: /data/pkg, url: "{url}/pkg.zip", via: zip}}
- {{to: /data/pkg/readme.txt, content: from the recipe}}
"""
    )

    staging, _ = stage(recipe, cache, tmp_path)

    # image-creator writes content and local files first, then downloads.
    assert (staging / "pkg" / "readme.txt").read_text() == "download"
