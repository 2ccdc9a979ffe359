"""Reading pool_hba.conf into rules (hba.py): which clients may connect, and how.

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
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from types import MappingProxyType

from .addresses import IPAddress, IPNetwork, ip_or_none
from .hba import (
    ALL,
    CONN_TYPES,
    METHODS,
    SAMEHOST,
    SAMENET,
    SAMEUSER,
    HbaError,
    HbaRule,
    Keyword,
)

__all__ = ["load_hba", "parse_hba"]

# Methods PostgreSQL or Pgpool-II know that pgtwist does not implement.
UNSUPPORTED_METHODS = frozenset(
    {"pam", "ldap", "gss", "sspi", "ident", "peer", "radius", "krb5", "bsd", "oauth", "crypt"}
)
_BLANKS = " \t\r"
_MAX_INCLUDE_DEPTH = 10
_ADDRESS_KEYWORDS = {k: k for k in (ALL, SAMEHOST, SAMENET)}


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
        text, reason = _read_text(name)
        if text is None:
            raise _LineError(f"cannot read included file {token.text} ({name}): {reason}")
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
        addr = ip_or_none(addr_text)
        if addr is None:
            raise _LineError(f"invalid IP address in {text!r} (host names are not supported)")
        if not prefix_text.isdigit() or int(prefix_text) > addr.max_prefixlen:
            raise _LineError(f"invalid CIDR mask in address {text!r}")
        return ipaddress.ip_network(f"{addr}/{int(prefix_text)}", strict=False), i + 1
    addr = ip_or_none(text)
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
    mask = ip_or_none(mask_token.text)
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
    text, reason = _read_text(path)
    if text is None:
        raise HbaError(f"{path}: cannot read: {reason}")
    return parse_hba(text, path)


def _read_text(path: str) -> tuple[str | None, str]:
    """(the file's UTF-8 text, "") or (None, why it could not be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), ""
    except (OSError, UnicodeDecodeError) as exc:
        return None, getattr(exc, "strerror", None) or str(exc)
