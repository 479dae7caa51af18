"""``whost network``: checked addresses, the files for NetworkManager and
systemd-networkd, --dry-run, and nothing written without a yes. Files go under
a temporary --root, never into this machine's /etc."""

import configparser
import stat
from pathlib import Path

import pytest

from whost import network
from whost.tests.cards import whost

# An interface this machine has: whost refuses names it does not know.
IFACE = next(
    (n for n in network.interfaces() if n != "lo"), "lo"
)  # fmt: skip


def ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in both formats
    parser.read_string(path.read_text())
    return parser


def test_a_static_address_as_a_networkmanager_keyfile(tmp_path):
    done = whost(
        "network", "static", IFACE, "--address", "192.168.10.20/24",
        "--gateway", "192.168.10.1", "--dns", "192.168.10.1", "--dns", "9.9.9.9",
        "--backend", "networkmanager", "--yes", "--root", str(tmp_path),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    path = (
        tmp_path / f"etc/NetworkManager/system-connections/whost-{IFACE}.nmconnection"
    )
    # NetworkManager ignores a keyfile others may read.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyfile = ini(path)
    assert dict(keyfile["connection"]) | {"uuid": "-"} == {
        "id": f"whost-{IFACE}",
        "uuid": "-",
        "type": "ethernet",
        "interface-name": IFACE,
        "autoconnect": "true",
        "autoconnect-priority": "100",
    }
    assert dict(keyfile["ipv4"]) == {
        "method": "manual",
        "address1": "192.168.10.20/24,192.168.10.1",
        "dns": "192.168.10.1;9.9.9.9;",
        "ignore-auto-dns": "true",
    }
    assert dict(keyfile["ipv6"]) == {"method": "auto"}
    assert done.stdout.endswith(
        f"wrote {path}; not applied (under --root {tmp_path})\n"
    )


def test_dhcp_as_a_systemd_networkd_file(tmp_path):
    done = whost(
        "network", "dhcp", IFACE, "--backend", "networkd", "--yes",
        "--root", str(tmp_path),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    path = tmp_path / f"etc/systemd/network/10-whost-{IFACE}.network"
    unit = ini(path)
    assert dict(unit["Match"]) == {"Name": IFACE}
    assert dict(unit["Network"]) == {"DHCP": "yes"}


def test_a_static_address_as_a_systemd_networkd_file(tmp_path):
    plan = network.plan(
        "eth0", "static", "2001:db8::20/64", "2001:db8::1", ["2001:db8::53"]
    )

    text = network.render("networkd", plan)

    assert text.splitlines()[1:] == [
        "[Match]",
        "Name=eth0",
        "",
        "[Network]",
        "Address=2001:db8::20/64",
        "Gateway=2001:db8::1",
        "DNS=2001:db8::53",
    ]


def test_dhcp_as_a_networkmanager_keyfile():
    keyfile = network.render("networkmanager", network.plan("eth0", "dhcp"))

    assert "[ipv4]\nmethod=auto\n" in keyfile
    assert "interface-name=eth0\n" in keyfile


def test_dry_run_prints_the_file_and_writes_nothing(tmp_path):
    done = whost(
        "network", "static", IFACE, "--address", "10.0.0.5/8", "--backend",
        "networkd", "--dry-run", "--root", str(tmp_path),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"# {tmp_path}/etc/systemd/network/10-whost-{IFACE}.network "
        "(mode 644, networkd)"
    )
    assert "Address=10.0.0.5/8" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_written_without_a_yes_when_nobody_can_answer(tmp_path):
    done = whost(
        "network", "dhcp", IFACE, "--backend", "networkd", "--root", str(tmp_path),
        input="",
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr == (
        "whost: add --yes to write it without a question (or --dry-run) "
        "(see whost --help)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (
            ["--address", "192.168.1.20"],
            "--address 192.168.1.20: add the prefix length",
        ),
        (["--address", "192.168.1.300/24"], "--address 192.168.1.300/24: "),
        (["--address", "192.168.1.0/24"], "that is the network's network address"),
        (["--address", "192.168.1.255/24"], "that is the network's broadcast address"),
        (
            ["--address", "192.168.1.20/24", "--gateway", "10.0.0.1"],
            "--gateway 10.0.0.1: not in 192.168.1.0/24, the address's network",
        ),
        (
            ["--address", "192.168.1.20/24", "--gateway", "192.168.1.20"],
            "that is the host's own address",
        ),
        (["--address", "192.168.1.20/24", "--dns", "dns.google"], "--dns dns.google: "),
    ],
)
def test_bad_addresses_are_refused_in_one_line_naming_the_option(
    tmp_path, args, complaint
):
    done = whost(
        "network", "static", IFACE, *args, "--backend", "networkd", "--yes",
        "--root", str(tmp_path),
    )  # fmt: skip

    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert complaint in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_interface_is_refused_naming_the_ones_there_are(tmp_path):
    done = whost(
        "network", "dhcp", "nosuch0", "--backend", "networkd", "--yes",
        "--root", str(tmp_path),
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.startswith(
        "whost: there is no interface nosuch0 here; there are: "
    )
    assert IFACE in done.stderr
