"""The rule every outbound fetch follows, and the list of what an operator
allows besides.

An address is **public** when ``ipaddress`` calls it global (not loopback,
private, link-local with the cloud metadata services at 169.254.169.254 and
fd00:ec2::254, shared CGNAT space, unspecified, reserved or documentation), it
is not multicast, and every IPv4 address it carries is public too
(IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64 ``64:ff9b::/96``). An
address is **allowed** when it is public or inside a network of the operator's
list; a host is allowed whatever it resolves to when the list names it (a
private mirror: ``mirror.lan``, or ``*.lan`` for its subdomains).

The list is one syntax for the server's setting and the creator's option:
networks (``10.0.0.0/8``, ``fd00::/8``), single addresses (``192.168.1.5``,
``::1``) and host names, separated by commas or spaces.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``socket.getaddrinfo``'s answer: (family, type, proto, canonname, sockaddr)
AddrInfo = tuple
#: resolver(host, port) -> getaddrinfo's answers; tests inject their own
Resolver = Callable[[str, int], list[AddrInfo]]

SCHEMES = ("http", "https")
#: NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: NAT64's local-use prefix (RFC 8215): translated by the local network
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
#: IPv4-compatible IPv6 addresses (deprecated, ``::a.b.c.d``)
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"(?:\*\.)?(?:{LABEL}\.)*{LABEL}")


class Refused(Exception):
    """An address (or a host, a URL) the rule does not allow. ``reason`` says
    why in a few words; ``url`` is the URL refused, when known."""

    def __init__(self, reason: str, url: str | None = None) -> None:
        super().__init__(f"{url}: {reason}" if url else reason)
        self.reason = reason
        self.url = url


def resolve(host: str, port: int) -> list[AddrInfo]:
    """The system's answer for ``host`` (every family, TCP)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def split(text: str) -> list[str]:
    """Items of a list written with commas or spaces."""
    return [item for item in re.split(r"[\s,]+", text or "") if item]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64 or address in IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_public(address: Address) -> bool:
    """Whether ``address`` is on the public Internet (module docstring)."""
    address = _unmapped(address)
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address in LOCAL_NAT64:
            return False
        return all(is_public(inner) for inner in _embedded_ipv4(address))
    return True


def parse_address(text: str) -> Address | None:
    """The IP address ``text`` writes (brackets and a zone allowed), or None."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Allowed:
    """What the operator allows besides public addresses."""

    networks: tuple[Network, ...] = ()
    #: lower-case names; ``*.lan`` allows every name ending in ``.lan``
    hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, values: Iterable[str] | str) -> Allowed:
        """The list's items (each value may hold several, separated by commas or
        spaces); ValueError naming an item that is neither a network nor a
        host name."""
        if isinstance(values, str):
            values = [values]
        networks: list[Network] = []
        hosts: list[str] = []
        for value in values:
            for item in split(value):
                name = item.lower().rstrip(".")
                try:
                    network = ipaddress.ip_network(name.strip("[]"), strict=False)
                    networks.append(network)
                    continue
                except ValueError:
                    pass
                last = name.rsplit(".", 1)[-1]
                if not HOST_NAME.fullmatch(name) or last.isdigit():
                    raise ValueError(
                        f"{item!r} is neither a network (10.0.0.0/8, fd00::/8, "
                        "192.168.1.5) nor a host name (mirror.lan, *.lan)"
                    )
                hosts.append(name)
        return cls(networks=tuple(networks), hosts=tuple(hosts))

    def __str__(self) -> str:
        items = [*map(str, self.networks), *self.hosts]
        return ", ".join(items) if items else "public addresses only"

    def allows_host(self, host: str) -> bool:
        """Whether the list names ``host`` (then any address it has is used)."""
        host = host.strip("[]").lower().rstrip(".")
        return any(
            host == name or (name.startswith("*.") and host.endswith(name[1:]))
            for name in self.hosts
        )

    def address_problem(self, text: str) -> str | None:
        """None when the address ``text`` is allowed, else why not."""
        address = parse_address(text)
        if address is None:
            return f"{text!r} is not an IP address"
        address = _unmapped(address)
        if is_public(address) or any(address in net for net in self.networks):
            return None
        return f"{address} is not a public address"


PUBLIC_ONLY = Allowed()


def is_local_name(host: str) -> bool:
    """``localhost`` and its subdomains (RFC 6761): this machine, by name."""
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def named(host: str, problem: str) -> str:
    """``problem`` of one of ``host``'s addresses, saying the host when it is a
    name."""
    return problem if parse_address(host) is not None else f"{host}: {problem}"


def host_problem(
    host: str,
    port: int,
    allowed: Allowed,
    *,
    resolver: Resolver | None = resolve,
    unresolved_ok: bool = False,
    every: bool = False,
) -> str | None:
    """None when ``host`` may be fetched from now, else why not: an address
    that is not allowed, ``localhost``, or a name whose addresses are none of
    them allowed (a name with an allowed address passes: the client dials only
    the allowed ones; with ``every``, for a tool that dials whichever it likes,
    each of them must be). A name that does not resolve is refused, or passes
    with ``unresolved_ok`` (the fetch checks again when it connects); without a
    ``resolver`` names are not resolved at all (a check at start-up)."""
    host = host.strip("[]")
    if allowed.allows_host(host):
        return None
    if parse_address(host) is not None:
        return allowed.address_problem(host)
    if is_local_name(host):
        addresses = ["127.0.0.1", "::1"]  # whatever DNS says: this machine
    elif resolver is None:
        return None
    else:
        try:
            addresses = [info[4][0] for info in resolver(host, port)]
        except (OSError, UnicodeError):
            return None if unresolved_ok else f"{host}: cannot resolve the host"
    problems = [allowed.address_problem(address) for address in addresses]
    if not addresses or (any if every else all)(problems):
        return named(host, next((p for p in problems if p), "no address"))
    return None


def url_problem(
    url: str,
    allowed: Allowed,
    *,
    resolver: Resolver | None = resolve,
    unresolved_ok: bool = False,
) -> str | None:
    """``host_problem`` of an http(s) URL's host; or why the URL is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return "only http and https URLs are fetched"
    return host_problem(
        parts.hostname,
        port,
        allowed,
        resolver=resolver,
        unresolved_ok=unresolved_ok,
    )


def check_url(url: str, allowed: Allowed, *, resolver: Resolver = resolve) -> None:
    """Refused naming ``url`` unless ``url_problem`` finds nothing."""
    problem = url_problem(url, allowed, resolver=resolver)
    if problem:
        raise Refused(problem, url=url)
