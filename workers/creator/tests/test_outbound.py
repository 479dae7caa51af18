"""The creator's outbound fetches: the operator's list (option or variable),
texts read through the guarded client, and the registries skopeo may dial."""

import pytest

from outbound.guard import PUBLIC_ONLY, Allowed, Refused
from workers.common.worker import UsageError
from workers.creator import outbound
from workers.creator.build import allowed_of
from workers.creator.tests.conftest import LOOPBACK
from workers.creator.worker import parser


def test_the_list_comes_from_the_option_or_else_the_variable(monkeypatch):
    monkeypatch.setenv("CREATOR_OUTBOUND_ALLOWED", "192.168.0.0/16, *.lan")
    options = parser().parse_args(
        ["--outbound-allow", "10.0.0.0/8", "--outbound-allow", "mirror.lan"]
    )
    assert allowed_of(options) == Allowed.parse("10.0.0.0/8 mirror.lan")
    assert allowed_of(parser().parse_args([])) == Allowed.parse("192.168.0.0/16 *.lan")
    monkeypatch.delenv("CREATOR_OUTBOUND_ALLOWED")
    assert allowed_of(parser().parse_args([])) == PUBLIC_ONLY
    bad = parser().parse_args(["--outbound-allow", "10.0.0.0/33"])
    with pytest.raises(UsageError, match=r"--outbound-allow: '10\.0\.0\.0/33'"):
        allowed_of(bad)


def test_a_text_is_read_through_the_guard_and_never_quoted(http_server):
    url, state = http_server
    (state.directory / "recipe.yaml").write_text("base: {}\n")
    with pytest.raises(OSError, match=r"127\.0\.0\.1 is not a public address"):
        outbound.read_text(f"{url}/recipe.yaml", PUBLIC_ONLY)
    assert state.requests == []
    assert outbound.read_text(f"{url}/recipe.yaml", LOOPBACK) == "base: {}\n"
    (state.directory / "big.txt").write_bytes(b"x" * (outbound.TEXT_LIMIT + 1))
    with pytest.raises(OSError, match="more than 1048576 allowed"):
        outbound.read_text(f"{url}/big.txt", LOOPBACK)
    (state.directory / "binary").write_bytes(b"\xff\xfeSECRET")
    with pytest.raises(OSError) as error:
        outbound.read_text(f"{url}/binary", LOOPBACK)
    assert str(error.value) == f"{url}/binary: not UTF-8 text"


@pytest.mark.parametrize(
    "location, dialled",
    [
        ("ghcr.io", ("ghcr.io", 443)),
        ("docker.io", ("registry-1.docker.io", 443)),
        ("10.0.0.5:5000/hub", ("10.0.0.5", 5000)),
        ("[fd00::5]:5000", ("fd00::5", 5000)),
    ],
)
def test_the_registry_skopeo_dials_is_the_one_checked(location, dialled):
    assert outbound.registry_host(location) == dialled


def test_a_registry_on_a_refused_address_is_refused_before_skopeo_runs():
    with pytest.raises(Refused, match=r"registry 10\.0\.0\.5:5000: 10\.0\.0\.5 is not"):
        outbound.check_registry("10.0.0.5:5000", PUBLIC_ONLY)
    outbound.check_registry("10.0.0.5:5000", Allowed.parse("10.0.0.5"))
    outbound.check_registry("mirror.lan:5000", Allowed.parse("mirror.lan"))
    with pytest.raises(Refused, match=r"localhost: 127\.0\.0\.1 is not"):
        outbound.check_registry("localhost:5000", PUBLIC_ONLY)
