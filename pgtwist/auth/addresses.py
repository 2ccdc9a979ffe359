"""IP addresses for pool_hba.conf: one read from text, a client's normalised, and this
machine's own (``samehost``, ``samenet``).

This machine's addresses are found once, best effort, from the host name and Linux's
``/proc/net``, without running any program; tests (or the caller, who may add its listening
address) can inject their own sets into hba.match instead.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(ip: str) -> IPAddress:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone such as %eth0
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:1.2.3.4 connects as 1.2.3.4
    return addr


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _proc_inet6() -> list[ipaddress.IPv6Interface]:
    """Linux: every IPv6 address with its prefix length, from /proc/net/if_inet6."""
    out = []
    for line in _read("/proc/net/if_inet6").splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[0]) == 32:
            try:
                addr = ipaddress.IPv6Address(int(parts[0], 16))
                out.append(ipaddress.IPv6Interface(f"{addr}/{int(parts[2], 16)}"))
            except ValueError:
                continue
    return out


def _proc_local_ipv4() -> list[ipaddress.IPv4Address]:
    """Linux: this host's IPv4 addresses, the ``/32 host LOCAL`` leaves of /proc/net/fib_trie."""
    out, last = [], None
    for line in _read("/proc/net/fib_trie").splitlines():
        text = line.strip(" |-+`")
        if "/32 host LOCAL" in line and last is not None:
            out.append(last)
        else:
            last = ip_or_none(text) if "/" not in text and " " not in text else None
    return [a for a in out if isinstance(a, ipaddress.IPv4Address)]


def _proc_ipv4_routes() -> list[ipaddress.IPv4Network]:
    """Linux: directly connected IPv4 subnets (no gateway), from /proc/net/route."""
    out = []
    for line in _read("/proc/net/route").splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        try:
            dest, gateway, mask = (int(parts[k], 16) for k in (1, 2, 7))
        except ValueError:
            continue
        if gateway == 0 and mask != 0:
            try:
                out.append(ipaddress.IPv4Network(f"{_le_ipv4(dest)}/{_le_ipv4(mask)}", strict=False))
            except ValueError:
                continue
    return out


def _le_ipv4(value: int) -> ipaddress.IPv4Address:
    """/proc/net/route prints addresses as host-order (little-endian) hex."""
    return ipaddress.IPv4Address(int.from_bytes(value.to_bytes(4, "little"), "big"))


def _hostname_addresses() -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except (OSError, UnicodeError):
        return []
    return [client_address(str(info[4][0])) for info in infos]


@functools.lru_cache(maxsize=1)
def default_local_addresses() -> frozenset[IPAddress]:
    """This machine's addresses for ``samehost``: loopback, the host name's, /proc's."""
    found: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    found.update(_hostname_addresses())
    found.update(_proc_local_ipv4())
    found.update(iface.ip for iface in _proc_inet6())
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def default_local_networks() -> tuple[IPNetwork, ...]:
    """Subnets for ``samenet``: loopback, connected IPv4 routes, IPv6 prefixes; else /32s."""
    nets: list[IPNetwork] = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    nets.extend(_proc_ipv4_routes())
    nets.extend(iface.network for iface in _proc_inet6())
    for addr in default_local_addresses():
        if not any(addr.version == net.version and addr in net for net in nets):
            nets.append(ipaddress.ip_network(addr))  # no netmask known: the address alone
    return tuple(dict.fromkeys(nets))
