"""The rule (which addresses are public, what the operator's list allows) and
the checks made before a fetch (the API's, skopeo's registries)."""

import socket

import pytest

from outbound.guard import (
    PUBLIC_ONLY,
    Allowed,
    Refused,
    check_url,
    host_problem,
    is_public,
    parse_address,
    url_problem,
)

NOT_PUBLIC = {
    "loopback": ["127.0.0.1", "127.255.255.254", "::1"],
    "private": ["10.0.0.1", "172.16.0.1", "192.168.1.1", "fc00::1", "fd12::1"],
    "link-local, cloud metadata": ["169.254.169.254", "fd00:ec2::254", "fe80::1"],
    "shared (CGNAT)": ["100.64.0.1", "100.127.255.254"],
    "unspecified": ["0.0.0.0", "::"],  # noqa: S104
    "this network": ["0.1.2.3"],
    "broadcast, reserved": ["255.255.255.255", "240.0.0.1"],
    "benchmarking, documentation": ["198.18.0.1", "192.0.2.1", "2001:db8::1"],
    "multicast": ["224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1"],
    "IPv4-mapped": ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1"],
    "IPv4-compatible": ["::127.0.0.1", "::169.254.169.254"],
    "6to4 of a private address": ["2002:7f00:1::1", "2002:a9fe:a9fe::1"],
    "NAT64 of a private address": ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"],
    "NAT64, local use": ["64:ff9b:1::808:808"],
    "Teredo": ["2001:0:4136:e378:8000:63bf:3fff:fdd2"],
}
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize(
    "address",
    [address for group in NOT_PUBLIC.values() for address in group],
)
def test_addresses_that_are_not_public_are_refused(address):
    assert not is_public(parse_address(address))
    assert PUBLIC_ONLY.address_problem(address).endswith("is not a public address")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert is_public(parse_address(address))
    assert PUBLIC_ONLY.address_problem(address) is None


def test_a_mapped_address_is_judged_as_the_ipv4_address_it_carries():
    allowed = Allowed.parse("127.0.0.0/8")
    assert allowed.address_problem("::ffff:127.0.0.1") is None
    assert allowed.address_problem("127.0.0.1") is None
    assert allowed.address_problem("::1") == "::1 is not a public address"
    assert PUBLIC_ONLY.address_problem("::ffff:7f00:1") == (
        "127.0.0.1 is not a public address"
    )


def test_something_that_is_not_an_address_is_refused():
    problem = PUBLIC_ONLY.address_problem("localhost")
    assert problem == "'localhost' is not an IP address"


def test_the_list_takes_networks_addresses_and_host_names_in_one_syntax():
    allowed = Allowed.parse(
        ["10.0.0.0/8, 192.168.1.5", "fd00::/8 [::1]", "Mirror.LAN."]
    )
    assert [str(n) for n in allowed.networks] == [
        "10.0.0.0/8",
        "192.168.1.5/32",
        "fd00::/8",
        "::1/128",
    ]
    assert allowed.hosts == ("mirror.lan",)
    assert Allowed.parse("") == PUBLIC_ONLY
    assert str(PUBLIC_ONLY) == "public addresses only"
    assert allowed.address_problem("10.1.2.3") is None
    assert allowed.address_problem("192.168.1.6") == (
        "192.168.1.6 is not a public address"
    )


@pytest.mark.parametrize("item", ["10.0.0.0/33", "300.1.2.3", "a b!", "-x.lan", "/8"])
def test_a_bad_item_is_named(item):
    with pytest.raises(ValueError, match=r"neither a network .* nor a host name"):
        Allowed.parse(f"10.0.0.0/8,{item}")


def test_hosts_are_allowed_by_exact_name_or_by_a_wildcard_for_subdomains():
    allowed = Allowed.parse("mirror.lan *.corp.example")
    assert allowed.allows_host("MIRROR.lan.")
    assert allowed.allows_host("a.corp.example")
    assert allowed.allows_host("b.a.corp.example")
    assert not allowed.allows_host("corp.example")
    assert not allowed.allows_host("evilcorp.example")
    assert not allowed.allows_host("other.lan")


def answers(*addresses: str):
    """A resolver that answers ``addresses`` for any name."""

    def resolver(host, port):
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port),
            )
            for address in addresses
        ]

    return resolver


def unresolvable(host, port):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://127.0.0.1:6379/", "127.0.0.1 is not a public address"),
        ("http://[::1]/x.zim", "::1 is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a "),
        ("http://10.0.0.5/x.zim", "10.0.0.5 is not a public address"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1 is not a public address"),
        ("http://localhost:6379/", "localhost: 127.0.0.1 is not a public address"),
        ("http://admin.localhost/", "admin.localhost: 127.0.0.1 is not a public"),
        ("http://8.8.8.8@127.0.0.1/", "127.0.0.1 is not a public address"),
        ("ftp://8.8.8.8/x.zim", "only http and https URLs are fetched"),
        ("file:///etc/passwd", "only http and https URLs are fetched"),
    ],
)
def test_urls_that_name_a_refused_address_are_refused_without_asking_dns(url, problem):
    assert url_problem(url, PUBLIC_ONLY, resolver=unresolvable).startswith(problem)


def test_a_name_is_refused_when_none_of_its_addresses_is_allowed():
    assert url_problem(
        "http://internal.example/x", PUBLIC_ONLY, resolver=answers("10.0.0.7", "::1")
    ) == ("internal.example: 10.0.0.7 is not a public address")
    # One allowed address is enough: the client dials only the allowed ones.
    mixed = answers("8.8.8.8", "10.0.0.7")
    assert host_problem("mixed.example", 80, PUBLIC_ONLY, resolver=mixed) is None
    # Not for a tool that dials whichever it likes (skopeo).
    assert host_problem(
        "mixed.example", 80, PUBLIC_ONLY, resolver=mixed, every=True
    ) == ("mixed.example: 10.0.0.7 is not a public address")


def test_a_name_that_does_not_resolve_passes_only_when_told():
    problem = url_problem("http://nowhere.invalid/", PUBLIC_ONLY, resolver=unresolvable)
    assert problem == "nowhere.invalid: cannot resolve the host"
    assert (
        url_problem(
            "http://nowhere.invalid/",
            PUBLIC_ONLY,
            resolver=unresolvable,
            unresolved_ok=True,
        )
        is None
    )


def test_the_operators_list_allows_networks_and_hosts():
    lan = Allowed.parse("10.0.0.0/8 mirror.lan")
    assert host_problem("10.0.0.5", 80, lan) is None
    assert host_problem("mirror.lan", 80, lan, resolver=answers("192.168.9.9")) is None
    assert host_problem("x.lan", 80, lan, resolver=answers("192.168.9.9")) == (
        "x.lan: 192.168.9.9 is not a public address"
    )
    loopback = Allowed.parse("127.0.0.0/8")
    assert host_problem("localhost", 80, loopback, resolver=unresolvable) is None


def test_check_url_raises_refused_naming_the_url():
    with pytest.raises(Refused) as raised:
        check_url("http://127.0.0.1:8000/admin/", PUBLIC_ONLY)
    assert str(raised.value) == (
        "http://127.0.0.1:8000/admin/: 127.0.0.1 is not a public address"
    )
    assert raised.value.reason == "127.0.0.1 is not a public address"


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7f.0.0.1/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://LOCALHOST./",
    ],
)
def test_other_spellings_of_loopback_are_refused(url):
    """What ``ipaddress`` does not read as an address, the system resolver
    does (inet_aton's octal, hex and short forms): its answer is checked."""
    assert url_problem(url, PUBLIC_ONLY).endswith("127.0.0.1 is not a public address")
