"""OCI images pulled with skopeo from a real local registry (Debian's
docker-registry), for the Raspberry Pi, into the content cache."""

import json
import tarfile

import pytest

from demo.registry import make_oci_layout
from workers.creator.cache import ContentCache
from workers.creator.oci import (
    OciError,
    Puller,
    export_name,
    parse_mirrors,
    repo_tag,
)
from workers.creator.recipe import OciImage
from workers.creator.tests.conftest import LOOPBACK, TINY_IMAGE, mirrors


def image(ident=TINY_IMAGE) -> OciImage:
    return OciImage(label="oci_images[0]", ident=ident, filesize=20480, fullsize=10240)


def arm64_layer(layout) -> str:
    """The digest of the arm64 image's layer in the layout the registry holds."""
    blobs = layout / "blobs" / "sha256"
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    index = json.loads((blobs / top["digest"][7:]).read_text())
    arm = next(
        m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"
    )
    manifest = json.loads((blobs / arm["digest"][7:]).read_text())
    return manifest["layers"][0]["digest"]


@pytest.fixture
def cache(tmp_path):
    with ContentCache(tmp_path / "cache", 10**9, allowed=LOOPBACK) as cache:
        yield cache


@pytest.fixture
def puller(cache, registry, tmp_path):
    return Puller(cache, mirrors=mirrors(registry), config_dir=tmp_path)


def test_an_image_is_pulled_for_the_pi_and_exported_as_docker_export_does(puller):
    path = puller.pull(image())

    assert path.name.endswith("-" + export_name(TINY_IMAGE))
    assert export_name(TINY_IMAGE) == "ghcr.io_offspot_tiny_1.0_linuxarm64v8.tar"
    with tarfile.open(path) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        config = json.load(archive.extractfile(manifest[0]["Config"]))
        layer = archive.extractfile(manifest[0]["Layers"][0])
        with tarfile.open(fileobj=layer) as files:
            hello = files.extractfile("hello.txt").read()
    # The base image's loader names the image by its first RepoTag.
    assert manifest[0]["RepoTags"] == [repo_tag(TINY_IMAGE)] == [TINY_IMAGE]
    assert (config["architecture"], config.get("variant")) == ("arm64", "v8")
    assert hello == b"hello from arm64\n"


def test_a_second_pull_is_served_from_the_cache_and_checked(puller, cache, registry):
    layer = arm64_layer(registry.layout)
    first = puller.pull(image())
    downloads = len(registry.requests_for(f"/blobs/{layer}"))

    again = puller.pull(image())

    assert again == first
    assert len(registry.requests_for(f"/blobs/{layer}")) == downloads
    meta = cache.metadata(first)
    assert meta["size"] == first.stat().st_size
    assert cache.verify(first)


def test_an_interrupted_pull_fetches_again_only_the_blobs_it_lacked(
    cache, registry, tmp_path, monkeypatch
):
    layer = arm64_layer(registry.layout)
    before = len(registry.requests_for(f"/blobs/{layer}"))
    puller = Puller(cache, mirrors=mirrors(registry), config_dir=tmp_path)
    real = puller._skopeo

    def export_fails(args, *rest):
        if any(arg.startswith("docker-archive:") for arg in args):
            raise OciError("interrupted")
        return real(args, *rest)

    monkeypatch.setattr(puller, "_skopeo", export_fails)
    with pytest.raises(OciError, match="interrupted"):
        puller.pull(image())
    monkeypatch.setattr(puller, "_skopeo", real)

    path = puller.pull(image())

    assert len(registry.requests_for(f"/blobs/{layer}")) == before + 1
    assert tarfile.is_tarfile(path)
    assert list((cache.root / "tmp").glob("*.work")) == []


def test_a_damaged_cached_archive_is_pulled_again(puller, cache):
    path = puller.pull(image())
    cache.unpin(path)  # an earlier build's
    size = path.stat().st_size
    with path.open("r+b") as damaged:
        damaged.write(b"\0" * 512)

    again = puller.pull(image())

    assert again.stat().st_size == size
    assert tarfile.is_tarfile(again)


def test_an_unknown_image_fails_with_one_line_naming_it(puller):
    with pytest.raises(OciError) as error:
        puller.pull(image("ghcr.io/offspot/absent:1.0"))

    message = str(error.value)
    assert "\n" not in message
    assert message == (
        "oci_images[0]: cannot pull ghcr.io/offspot/absent:1.0 for linux/arm64/v8: "
        "the registry has no such image (the creator's log has skopeo's message)"
    )
    assert not error.value.retryable


def test_an_image_without_a_raspberry_pi_variant_is_refused(puller, registry, tmp_path):
    layout = make_oci_layout(tmp_path / "pc", platforms=(("amd64", ""),))
    registry.push(layout, "offspot/pc-only:1.0")

    with pytest.raises(OciError, match=r"pc-only:1\.0 for linux/arm64/v8") as error:
        puller.pull(image("ghcr.io/offspot/pc-only:1.0"))

    assert not error.value.retryable


def test_an_unreachable_registry_is_worth_a_retry(cache, tmp_path):
    puller = Puller(
        cache,
        mirrors=parse_mirrors(["ghcr.io=http://127.0.0.1:9"]),
        config_dir=tmp_path,
    )

    with pytest.raises(OciError, match=r"cannot pull ghcr\.io/offspot/tiny") as error:
        puller.pull(image())

    assert error.value.retryable


def test_mirror_settings_are_read_and_bad_ones_named():
    found = parse_mirrors(
        [
            "ghcr.io=http://127.0.0.1:5000",
            "docker.io=https://mirror.example.org/hub/",
            "index.docker.io=mirror.example.org",
        ]
    )

    assert found["ghcr.io"].location == "127.0.0.1:5000"
    assert found["ghcr.io"].insecure
    assert found["docker.io"].location == "mirror.example.org"
    assert not found["docker.io"].insecure
    for bad in ("ghcr.io", "ghcr.io=ftp://x", "=x", "ghcr.io=http://"):
        with pytest.raises(ValueError, match="write REGISTRY=MIRROR"):
            parse_mirrors([bad])


def test_the_mirror_replaces_the_registry_without_falling_back(cache, tmp_path):
    Puller(
        cache,
        mirrors=parse_mirrors(["ghcr.io=http://10.0.0.5:5000"]),
        config_dir=tmp_path,
    )

    conf = (tmp_path / "registries.conf").read_text()
    assert 'prefix = "ghcr.io"' in conf
    assert 'location = "10.0.0.5:5000"' in conf
    assert "insecure = true" in conf
    assert "[[registry.mirror]]" not in conf


def test_a_registry_on_a_refused_address_is_never_dialled(registry, tmp_path):
    """Without the operator's list, neither a mirror on loopback nor a registry
    named by a private address is given to skopeo."""
    before = len(registry.requests_for("/v2/"))
    with ContentCache(tmp_path / "cache", 10**9) as public_only:
        puller = Puller(public_only, mirrors=mirrors(registry), config_dir=tmp_path)
        with pytest.raises(OciError) as refused:
            puller.pull(image())
        assert str(refused.value) == (
            f"oci_images[0]: cannot pull {TINY_IMAGE}: registry {registry.host}: "
            "127.0.0.1 is not a public address"
        )
        assert not refused.value.retryable

        bare = Puller(public_only, config_dir=tmp_path)
        with pytest.raises(
            OciError, match=r"registry 10\.0\.0\.5:5000: 10\.0\.0\.5 is"
        ):
            bare.pull(image("10.0.0.5:5000/offspot/tiny:1.0"))
    assert len(registry.requests_for("/v2/")) == before
