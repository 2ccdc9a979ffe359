"""Read Pgpool-II ``pool_passwd`` files, so existing files work unchanged.

One ``username:secret`` per line; the secret's form is told by a case-sensitive prefix:
``md5`` + 32 hex digits (an md5 hash of password+user), ``AES`` + base64 (encrypted with the
``.pgpoolkey`` key), ``TEXT`` + clear text, ``SCRAM-SHA-256$...`` (a SCRAM verifier), or no
prefix at all (clear text). Errors name the file and line, never the secret.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

__all__ = ["PasswdEntry", "PasswdError", "load_pool_passwd", "parse_pool_passwd"]

_HEX = frozenset(string.hexdigits)


class PasswdError(Exception):
    """A pool_passwd file that cannot be used; the message says where, not what."""


@dataclass(frozen=True)
class PasswdEntry:
    user: str
    kind: str  # 'text' | 'md5' | 'aes' | 'scram'
    secret: str = field(repr=False)  # TEXT/AES prefix removed; md5 and SCRAM kept whole

    def plaintext(self) -> str | None:
        """The clear-text password when the file holds one.

        AES entries need the key file to decrypt; until that lands they return None, the
        same answer as md5 and SCRAM entries, whose password cannot be recovered.
        """
        if self.kind == "text":
            return self.secret
        return None


def classify(user: str, stored: str) -> PasswdEntry:
    """Decide an entry's kind from its prefix, as Pgpool-II does."""
    if stored.startswith("md5") and len(stored) == 35 and _HEX.issuperset(stored[3:]):
        return PasswdEntry(user, "md5", stored)
    if stored.startswith("AES"):
        return PasswdEntry(user, "aes", stored[3:])
    if stored.startswith("TEXT"):
        return PasswdEntry(user, "text", stored[4:])
    if stored.startswith("SCRAM-SHA-256$"):
        return PasswdEntry(user, "scram", stored)
    return PasswdEntry(user, "text", stored)


def parse_pool_passwd(text: str, path: str = "pool_passwd") -> dict[str, PasswdEntry]:
    """Parse file contents; the first entry for a user wins, as in Pgpool-II's lookup."""
    entries: dict[str, PasswdEntry] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user:
            raise PasswdError(f"{path}:{lineno}: expected user:password")
        if not stored:
            raise PasswdError(f"{path}:{lineno}: empty password for user {user!r}")
        entries.setdefault(user, classify(user, stored))
    return entries


def load_pool_passwd(path: str) -> dict[str, PasswdEntry]:
    """Read a pool_passwd file; a missing file (or an empty path: disabled) gives {}."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PasswdError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise PasswdError(f"{path}:{lineno}: not valid UTF-8") from None
    return parse_pool_passwd(text, path)
