"""pool_hba.conf rules, and the first one matching a connection.

A rule is what one record of pool_hba.conf says (hba_parse.py reads the file): connection
type, databases, users, address and method. The first rule matching the connection decides;
no match means reject.

Matching is pure: ``samehost`` and ``samenet`` use address sets that tests (or the caller, who
may add its listening address) can inject; the defaults come from addresses.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .addresses import (
    IPAddress,
    IPNetwork,
    client_address,
    default_local_addresses,
    default_local_networks,
)

__all__ = ["ALL", "SAMEHOST", "SAMENET", "SAMEUSER", "HbaError", "HbaRule", "Keyword", "match"]

CONN_TYPES = ("local", "host", "hostssl", "hostnossl")
METHODS = frozenset({"trust", "reject", "password", "md5", "scram-sha-256", "cert"})


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


@dataclass(frozen=True)
class HbaRule:
    line: int
    conn_type: str  # 'local' | 'host' | 'hostssl' | 'hostnossl'
    databases: tuple[str, ...]  # names, or the keywords ALL / SAMEUSER
    users: tuple[str, ...]  # names, or the keyword ALL
    address: Keyword | IPNetwork | None  # None for local; ALL, SAMEHOST, SAMENET or a network
    method: str
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _address_matches(address: Keyword | IPNetwork | None, client: IPAddress | None,
                     local_addresses: Collection[str | IPAddress] | None,
                     local_networks: Iterable[str | IPNetwork] | None) -> bool:
    if address == ALL:
        return True
    if client is None:
        return False
    if address == SAMEHOST:
        pool = default_local_addresses() if local_addresses is None else local_addresses
        return any(client_address(str(a)) == client for a in pool)
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
    client = client_address(client_ip) if conn_type == "host" and client_ip else None
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
