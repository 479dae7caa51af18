"""The host's network: DHCP or a static address on one interface, as a
NetworkManager keyfile or a systemd-networkd ``.network`` file.

Rendering and checking are plain functions (tested on their own); writing and
applying are separate, so ``--dry-run`` shows exactly what would be written.
"""

import ipaddress
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("networkmanager", "networkd")
IFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


class NetworkError(Exception):
    """A bad address or interface; the message names the option."""


@dataclass
class Plan:
    interface: str
    method: str  # dhcp or static
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dns: list = field(default_factory=list)


def plan(
    interface: str,
    method: str,
    address: str | None = None,
    gateway: str | None = None,
    dns: list[str] = (),
    *,
    known: list[str] | None = None,
) -> Plan:
    """Check the options; NetworkError says which one is wrong and why."""
    if not IFACE.match(interface):
        raise NetworkError(f"{interface!r} is not an interface name")
    if known is not None and interface not in known:
        raise NetworkError(
            f"there is no interface {interface} here; there are: {', '.join(known)}"
        )
    result = Plan(interface, method)
    if method == "dhcp":
        if address or gateway or dns:
            raise NetworkError("dhcp takes no --address, --gateway or --dns")
        return result
    if not address:
        raise NetworkError("static needs --address, e.g. --address 192.168.1.20/24")
    if "/" not in address:
        raise NetworkError(
            f"--address {address}: add the prefix length, e.g. {address}/24"
        )
    try:
        result.address = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise NetworkError(f"--address {address}: {exc}") from None
    net = result.address.network
    host = result.address.ip
    edges = (net.network_address, net.broadcast_address)
    if net.version == 4 and net.prefixlen < 31 and host in edges:
        raise NetworkError(
            f"--address {address}: that is the network's "
            f"{'network' if host == net.network_address else 'broadcast'} "
            "address, not a host's"
        )
    if gateway:
        try:
            result.gateway = ipaddress.ip_address(gateway)
        except ValueError as exc:
            raise NetworkError(f"--gateway {gateway}: {exc}") from None
        if result.gateway.version != net.version or result.gateway not in net:
            raise NetworkError(
                f"--gateway {gateway}: not in {net}, the address's network"
            )
        if result.gateway == host:
            raise NetworkError(f"--gateway {gateway}: that is the host's own address")
    for server in dns:
        try:
            result.dns.append(ipaddress.ip_address(server))
        except ValueError as exc:
            raise NetworkError(f"--dns {server}: {exc}") from None
    return result


def interfaces() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def detect() -> str:
    """The network manager that runs here."""
    if Path("/run/NetworkManager").is_dir() and shutil.which("nmcli"):
        return "networkmanager"
    if Path("/run/systemd/netif").is_dir():
        return "networkd"
    raise NetworkError(
        "neither NetworkManager nor systemd-networkd runs here: choose "
        "--backend networkmanager or --backend networkd (and enable it)"
    )


def target(backend: str, interface: str, root: Path) -> tuple[Path, int]:
    """Where the file goes, and its mode (NetworkManager ignores a keyfile
    others can read)."""
    if backend == "networkmanager":
        folder = root / "etc/NetworkManager/system-connections"
        return folder / f"whost-{interface}.nmconnection", 0o600
    # Sorted before the distribution's own files: the first match wins.
    return root / "etc/systemd/network" / f"10-whost-{interface}.network", 0o644


def render(backend: str, p: Plan) -> str:
    return (keyfile if backend == "networkmanager" else networkd)(p)


def keyfile(p: Plan) -> str:
    name = f"whost-{p.interface}"
    lines = [
        "# Written by whost network.",
        "[connection]",
        f"id={name}",
        f"uuid={uuid.uuid5(uuid.NAMESPACE_DNS, name + '.whost')}",
        "type=ethernet",
        f"interface-name={p.interface}",
        "autoconnect=true",
        # Above the distribution's "Wired connection 1" for this interface.
        "autoconnect-priority=100",
        "",
        "[ethernet]",
        "",
    ]
    if p.method == "dhcp":
        lines += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
        return "\n".join(lines)
    family = f"ipv{p.address.version}"
    address = str(p.address.with_prefixlen)
    if p.gateway:
        address += f",{p.gateway}"
    static = [f"[{family}]", "method=manual", f"address1={address}"]
    if p.dns:
        static += [f"dns={';'.join(str(d) for d in p.dns)};", "ignore-auto-dns=true"]
    other = "ipv6" if family == "ipv4" else "ipv4"
    sections = {family: static, other: [f"[{other}]", "method=auto"]}
    for section in ("ipv4", "ipv6"):
        lines += [*sections[section], ""]
    return "\n".join(lines)


def networkd(p: Plan) -> str:
    lines = ["# Written by whost network.", "[Match]", f"Name={p.interface}", ""]
    lines.append("[Network]")
    if p.method == "dhcp":
        lines.append("DHCP=yes")
    else:
        lines.append(f"Address={p.address.with_prefixlen}")
        if p.gateway:
            lines.append(f"Gateway={p.gateway}")
        if p.dns:
            lines.append("DNS=" + " ".join(str(d) for d in p.dns))
    return "\n".join(lines) + "\n"


def apply(backend: str, interface: str) -> list[list[str]]:
    """Make the running manager take the new file; returns what was run."""
    if backend == "networkmanager":
        commands = [
            ["nmcli", "connection", "reload"],
            ["nmcli", "connection", "up", f"whost-{interface}"],
        ]
    else:
        commands = [["networkctl", "reload"], ["networkctl", "reconfigure", interface]]
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise NetworkError(f"{command[0]} is not installed") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit {done.returncode}"
            raise NetworkError(f"{' '.join(command)} failed: {last}")
    return commands
