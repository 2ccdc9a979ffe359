"""pool_hba.conf: which clients may connect, and how they must authenticate.

The grammar is pg_hba.conf's as Pgpool-II reads it: one record per line, ``#`` comments,
fields split by blanks, comma lists in the database and user fields, double quotes protecting
blanks, commas and keywords (``"all"`` is a database named all), ``@file`` includes (relative to
the including file), and -- as in PostgreSQL 16 -- a trailing backslash continuing a record on
the next line. The first record matching the connection decides; no match means reject.

Deliberate choices:

* ``sameuser`` works in the database field, as in Pgpool-II. ``+group``, ``samerole`` /
  ``samegroup`` and ``/regex`` names are load errors: Pgpool-II never matches them (it only
  logs), so a record using them is a mistake better reported at start-up.
* Host names and ``.suffix`` addresses are load errors. Matching them needs reverse and forward
  DNS look-ups for each connection, which would block the event loop; use CIDR addresses.
* Methods other than trust, reject, password, md5, scram-sha-256 and cert are load errors.

Matching is pure: ``samehost`` and ``samenet`` use address sets that tests (or the caller, who
may add its listening address) can inject; the defaults are found once, best effort, from the
host name and Linux's ``/proc/net``, without running any program.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ALL", "SAMEHOST", "SAMENET", "SAMEUSER", "HbaError", "HbaRule", "Keyword",
    "default_local_addresses", "default_local_networks", "load_hba", "match", "parse_hba",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CONN_TYPES = ("local", "host", "hostssl", "hostnossl")
METHODS = frozenset({"trust", "reject", "password", "md5", "scram-sha-256", "cert"})
# Methods PostgreSQL or Pgpool-II know that pgtwist does not implement.
UNSUPPORTED_METHODS = frozenset(
    {"pam", "ldap", "gss", "sspi", "ident", "peer", "radius", "krb5", "bsd", "oauth", "crypt"}
)
_BLANKS = " \t\r"
_MAX_INCLUDE_DEPTH = 10


class HbaError(Exception):
    """Every problem found in a pool_hba.conf, each as ``"path:line: message"``."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


class Keyword(str):
    """An unquoted keyword such as ``all``; a quoted ``"all"`` stays a plain name."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Keyword({str.__repr__(self)})"


ALL = Keyword("all")
SAMEUSER = Keyword("sameuser")
SAMEHOST = Keyword("samehost")
SAMENET = Keyword("samenet")
_ADDRESS_KEYWORDS = {k: k for k in (ALL, SAMEHOST, SAMENET)}


@dataclass(frozen=True)
class HbaRule:
    line: int
    conn_type: str  # 'local' | 'host' | 'hostssl' | 'hostnossl'
    databases: tuple[str, ...]  # names, or the keywords ALL / SAMEUSER
    users: tuple[str, ...]  # names, or the keyword ALL
    address: Keyword | IPNetwork | None  # None for local; ALL, SAMEHOST, SAMENET or a network
    method: str
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class _LineError(Exception):
    """One record's problem; the caller adds the file and line."""


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool  # any double quote in the token: never a keyword
    initial_quote: bool = False  # starts with a quote: never an @include


# --- tokenizing ------------------------------------------------------------------------------


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash-continued lines; each record keeps its first line's number."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not pending:
            start = lineno
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        out.append((start, "".join(pending)))
        pending = []
    if pending:
        out.append((start, "".join(pending)))
    return out


def _fields(line: str) -> list[list[_Token]]:
    """Split a record into fields, each a list of comma-separated tokens."""
    fields: list[list[_Token]] = []
    i, n = 0, len(line)
    continues = False  # the last token ended with a comma: the next one joins its field
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n or line[i] == "#":
            break
        chars: list[str] = []
        quoted = in_quote = comma = False
        initial_quote = line[i] == '"'
        while i < n:
            c = line[i]
            if in_quote:
                if c == '"' and line[i + 1:i + 2] == '"':
                    chars.append('"')
                    i += 2
                    continue
                if c == '"':
                    in_quote = False
                else:
                    chars.append(c)
            elif c in _BLANKS:
                break
            elif c == "#":
                n = i  # the rest of the line is a comment
                break
            elif c == ",":
                comma = True
                i += 1
                break
            elif c == '"':
                in_quote = quoted = True
            else:
                chars.append(c)
            i += 1
        if in_quote:
            raise _LineError("unterminated quoted string")
        if not chars and not quoted:
            raise _LineError("empty item in a comma-separated list")
        token = _Token("".join(chars), quoted, initial_quote)
        if continues:
            fields[-1].append(token)
        else:
            fields.append([token])
        continues = comma
    if continues:
        raise _LineError("comma-separated list ends with a comma")
    return fields


def _expand(tokens: list[_Token], base_dir: str, depth: int = 0) -> list[_Token]:
    """Replace ``@file`` tokens by every token found in that file."""
    out: list[_Token] = []
    for token in tokens:
        if token.initial_quote or not token.text.startswith("@") or len(token.text) < 2:
            out.append(token)
            continue
        if depth >= _MAX_INCLUDE_DEPTH:
            raise _LineError(f"@{token.text[1:]}: includes nested too deeply (a loop?)")
        name = os.path.join(base_dir, token.text[1:])
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise _LineError(f"cannot read included file {token.text} ({name}): {reason}") from None
        for _, line in _logical_lines(text):
            for included in _fields(line):
                out.extend(_expand(included, os.path.dirname(name), depth + 1))
    return out


# --- records ---------------------------------------------------------------------------------


def _one(tokens: list[_Token], what: str) -> _Token:
    if len(tokens) > 1:
        raise _LineError(f"multiple values given for {what}")
    return tokens[0]


def _databases(tokens: list[_Token]) -> tuple[str, ...]:
    out: list[str] = []
    for t in tokens:
        if t.quoted:
            out.append(t.text)
        elif t.text in ("all", "sameuser"):
            out.append(ALL if t.text == "all" else SAMEUSER)
        elif t.text in ("samerole", "samegroup"):
            raise _LineError(f"database keyword {t.text} is not supported by Pgpool-II or pgtwist")
        elif t.text.startswith("/"):
            raise _LineError(f"regular expression {t.text!r} is not supported by Pgpool-II or "
                             "pgtwist (quote the name if it really starts with /)")
        else:
            out.append(t.text)
    return tuple(out)


def _users(tokens: list[_Token]) -> tuple[str, ...]:
    out: list[str] = []
    for t in tokens:
        if t.quoted:
            out.append(t.text)
        elif t.text == "all":
            out.append(ALL)
        elif t.text.startswith("+"):
            raise _LineError(f"group membership {t.text!r} is not supported by Pgpool-II or "
                             "pgtwist (list the users, or quote a name that starts with +)")
        elif t.text.startswith("/"):
            raise _LineError(f"regular expression {t.text!r} is not supported by Pgpool-II or "
                             "pgtwist (quote the name if it really starts with /)")
        else:
            out.append(t.text)
    return tuple(out)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _mask_prefix(mask: IPAddress) -> int | None:
    """The prefix length of a netmask such as 255.255.0.0, or None if its bits have holes."""
    bits = mask.max_prefixlen
    value = int(mask)
    prefix = bits - (((1 << bits) - 1) ^ value).bit_length()
    return prefix if value == ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1) else None


def _address(fields: list[list[_Token]], i: int) -> tuple[Keyword | IPNetwork, int]:
    """Parse the address at fields[i] (and a netmask after it); return it and the next index."""
    token = _one(fields[i], "the address")
    text = token.text
    if not token.quoted and text in _ADDRESS_KEYWORDS:
        return _ADDRESS_KEYWORDS[text], i + 1
    if "/" in text:
        addr_text, _, prefix_text = text.partition("/")
        addr = _ip(addr_text)
        if addr is None:
            raise _LineError(f"invalid IP address in {text!r} (host names are not supported)")
        if not prefix_text.isdigit() or int(prefix_text) > addr.max_prefixlen:
            raise _LineError(f"invalid CIDR mask in address {text!r}")
        return ipaddress.ip_network(f"{addr}/{int(prefix_text)}", strict=False), i + 1
    addr = _ip(text)
    if addr is None:
        raise _LineError(
            f"host name {text!r}: host names are not supported by pgtwist (they need DNS "
            "look-ups for every connection); use an address in CIDR form, all, samehost or "
            "samenet"
        )
    hint = f"address {text} needs a CIDR mask ({text}/{addr.max_prefixlen}) or a netmask field"
    if i + 1 >= len(fields):
        raise _LineError(hint)
    mask_token = _one(fields[i + 1], "the netmask")
    mask = _ip(mask_token.text)
    if mask is None:
        raise _LineError(f"{hint}, got {mask_token.text!r}")
    if mask.version != addr.version:
        raise _LineError(f"IP address {text} and netmask {mask_token.text} are not of the same "
                         "family")
    prefix = _mask_prefix(mask)
    if prefix is None:
        raise _LineError(f"invalid netmask {mask_token.text} (its one bits must be contiguous)")
    return ipaddress.ip_network(f"{addr}/{prefix}", strict=False), i + 2


def _parse_record(fields: list[list[_Token]], lineno: int, base_dir: str) -> HbaRule:
    conn_type = _one(fields[0], "the connection type").text
    if conn_type not in CONN_TYPES:
        raise _LineError(f"invalid connection type {conn_type!r} "
                         "(expected local, host, hostssl or hostnossl)")
    if len(fields) < 2:
        raise _LineError("end of line before the database field")
    databases = _databases(_expand(fields[1], base_dir))
    if len(fields) < 3:
        raise _LineError("end of line before the user field")
    users = _users(_expand(fields[2], base_dir))
    i = 3
    address: Keyword | IPNetwork | None = None
    if conn_type != "local":
        if len(fields) <= i:
            raise _LineError("end of line before the address field")
        address, i = _address(fields, i)
    if len(fields) <= i:
        raise _LineError("end of line before the authentication method")
    method = _one(fields[i], "the authentication method").text
    if method in UNSUPPORTED_METHODS:
        raise _LineError(f"method {method} is not supported by pgtwist")
    if method not in METHODS:
        raise _LineError(f"unknown authentication method {method!r} (expected "
                         f"{', '.join(sorted(METHODS))})")
    if method == "cert" and conn_type != "hostssl":
        raise _LineError("method cert is only available on hostssl records")
    options: dict[str, str] = {}
    for tokens in fields[i + 1:]:
        for t in tokens:
            name, eq, value = t.text.partition("=")
            if not eq or not name:
                raise _LineError(f"authentication option {t.text!r} is not in name=value form")
            options[name] = value
    return HbaRule(lineno, conn_type, databases, users, address, method,
                   MappingProxyType(options))


def parse_hba(text: str, path: str = "pool_hba.conf") -> tuple[HbaRule, ...]:
    """Parse pool_hba.conf contents; raise HbaError listing every bad line at once."""
    base_dir = os.path.dirname(path)
    rules: list[HbaRule] = []
    errors: list[str] = []
    for lineno, line in _logical_lines(text):
        try:
            fields = _fields(line)
            if fields:
                rules.append(_parse_record(fields, lineno, base_dir))
        except _LineError as exc:
            errors.append(f"{path}:{lineno}: {exc}")
    if not errors and not rules:
        errors.append(f"{path}: contains no records, so every connection would be rejected")
    if errors:
        raise HbaError(errors)
    return tuple(rules)


def load_hba(path: str) -> tuple[HbaRule, ...]:
    """Read and parse a pool_hba.conf file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise HbaError(f"{path}: cannot read: {reason}") from None
    return parse_hba(text, path)


# --- matching --------------------------------------------------------------------------------


def _client(ip: str) -> IPAddress:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone such as %eth0
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:1.2.3.4 connects as 1.2.3.4
    return addr


def _address_matches(address: Keyword | IPNetwork | None, client: IPAddress | None,
                     local_addresses: Collection[str | IPAddress] | None,
                     local_networks: Iterable[str | IPNetwork] | None) -> bool:
    if address == ALL:
        return True
    if client is None:
        return False
    if address == SAMEHOST:
        pool = default_local_addresses() if local_addresses is None else local_addresses
        return any(_client(str(a)) == client for a in pool)
    if address == SAMENET:
        nets = default_local_networks() if local_networks is None else local_networks
        return any(
            client.version == net.version and client in net
            for net in (ipaddress.ip_network(n, strict=False) for n in nets)
        )
    return client.version == address.version and client in address


def _database_matches(databases: tuple[str, ...], database: str, user: str) -> bool:
    for name in databases:
        if isinstance(name, Keyword):
            if name == ALL or (name == SAMEUSER and database == user):
                return True
        elif name == database:
            return True
    return False


def _user_matches(users: tuple[str, ...], user: str) -> bool:
    return any((isinstance(name, Keyword) and name == ALL) or name == user for name in users)


def match(rules: Iterable[HbaRule], *, conn_type: str, ssl: bool, client_ip: str | None,
          database: str, user: str,
          local_addresses: Collection[str | IPAddress] | None = None,
          local_networks: Iterable[str | IPNetwork] | None = None) -> HbaRule | None:
    """The first rule matching a connection, or None (the caller rejects it with 28000).

    ``conn_type`` is 'local' (Unix socket) or 'host' (TCP; ``ssl`` says whether TLS is in use).
    """
    if conn_type not in ("local", "host"):
        raise ValueError(f"conn_type must be 'local' or 'host', not {conn_type!r}")
    client = _client(client_ip) if conn_type == "host" and client_ip else None
    for rule in rules:
        if rule.conn_type == "local":
            if conn_type != "local":
                continue
        else:
            if conn_type != "host":
                continue
            if rule.conn_type == "hostssl" and not ssl:
                continue
            if rule.conn_type == "hostnossl" and ssl:
                continue
            if not _address_matches(rule.address, client, local_addresses, local_networks):
                continue
        if _database_matches(rule.databases, database, user) and _user_matches(rule.users, user):
            return rule
    return None


# --- this machine's addresses (best effort) ----------------------------------------------------


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
            last = _ip(text) if "/" not in text and " " not in text else None
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
    return [_client(str(info[4][0])) for info in infos]


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
