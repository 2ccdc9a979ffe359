"""Read and write Pgpool-II ``pool_passwd`` files, so existing files work unchanged.

One ``username:secret`` per line; the secret's form is told by a case-sensitive prefix:
``md5`` + 32 hex digits (an md5 hash of password+user), ``AES`` + base64 (encrypted with the
``.pgpoolkey`` key), ``TEXT`` + clear text, ``SCRAM-SHA-256$...`` (a SCRAM verifier), or no
prefix at all (clear text). Errors name the file and line, never the secret.

AES entries are what ``pg_enc`` writes: AES-256-CBC with PKCS#7 padding, key and IV both
derived from the key string by OpenSSL's ``EVP_BytesToKey`` (SHA-1, no salt, one round). No
salt means the same password and key always give the same text, which is what makes our
output byte-for-byte equal to pg_enc's. The key string is the first line of the key file,
without its newline and cut at 255 bytes, as Pgpool-II reads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import string
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "KINDS", "PasswdEntry", "PasswdError", "aes_decrypt", "aes_encrypt", "encode_entry",
    "evp_bytes_to_key", "find_key_file", "load_pool_passwd", "parse_pool_passwd",
    "read_key_file", "write_entry",
]

_HEX = frozenset(string.hexdigits)
KINDS = ("md5", "aes", "text", "plain")  # what encode_entry writes
MAX_KEY_BYTES = 255  # Pgpool-II reads the key with fgets into a 256-byte buffer


class PasswdError(Exception):
    """A pool_passwd (or key) file that cannot be used; the message says where, not what."""


@dataclass(frozen=True)
class PasswdEntry:
    user: str
    kind: str  # 'text' | 'md5' | 'aes' | 'scram'
    secret: str = field(repr=False)  # TEXT/AES prefix removed; md5 and SCRAM kept whole
    decrypted: str | None = field(default=None, repr=False, compare=False)  # AES, given a key

    def plaintext(self) -> str | None:
        """The clear-text password when the file holds one (AES: when loaded with a key).

        md5 and SCRAM entries give None: their password cannot be recovered.
        """
        if self.kind == "text":
            return self.secret
        if self.kind == "aes":
            return self.decrypted
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


# --- AES -------------------------------------------------------------------------------------


def evp_bytes_to_key(password: bytes, key_len: int = 32, iv_len: int = 16,
                     digest: str = "sha1", salt: bytes = b"", count: int = 1) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey: chained digests of password+salt, split into key and IV."""
    out = b""
    block = b""
    while len(out) < key_len + iv_len:
        block = hashlib.new(digest, block + password + salt).digest()
        for _ in range(count - 1):
            block = hashlib.new(digest, block).digest()
        out += block
    return out[:key_len], out[key_len:key_len + iv_len]


def _cipher(key: str) -> Cipher:
    aes_key, iv = evp_bytes_to_key(key.encode("utf-8", "surrogateescape"))
    return Cipher(algorithms.AES(aes_key), modes.CBC(iv))


def aes_encrypt(password: str, key: str) -> str:
    """base64 of the password encrypted as pg_enc does (no ``AES`` prefix)."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(password.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode("ascii")


def aes_decrypt(text: str, key: str) -> str:
    """Reverse aes_encrypt; ValueError (saying nothing of the secret) on a wrong key or bad data."""
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("AES password is not valid base64") from None
    if not data or len(data) % 16:
        raise ValueError("AES password has a wrong length (corrupt entry?)")
    decryptor = _cipher(key).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError:  # bad padding or not UTF-8: almost surely another key
        raise ValueError("cannot decrypt AES password (wrong key or corrupt entry)") from None


def read_key_file(path: str) -> str:
    """The key string: the file's first line without its newline, cut at 255 bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError as exc:
        raise PasswdError(f"{path}: cannot read key file: {exc.strerror or exc}") from None
    if not data:
        raise PasswdError(f"{path}: key file is empty")
    line = data.split(b"\n", 1)[0][:MAX_KEY_BYTES]
    return line.decode("utf-8", "surrogateescape")


def find_key_file(configured: str | None = None, env: Mapping[str, str] | None = None,
                  home: str | None = None) -> str | None:
    """The key file Pgpool-II would use: the configured one if it exists, else
    ``$PGPOOLKEYFILE``, else ``~/.pgpoolkey``; None when none of them exists."""
    env = os.environ if env is None else env
    home = os.path.expanduser("~") if home is None else home
    for candidate in (configured, env.get("PGPOOLKEYFILE"), os.path.join(home, ".pgpoolkey")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


# --- reading ---------------------------------------------------------------------------------


def parse_pool_passwd(text: str, path: str = "pool_passwd", *,
                      key: str | None = None) -> dict[str, PasswdEntry]:
    """Parse file contents; the first entry for a user wins, as in Pgpool-II's lookup.

    With ``key``, AES entries are decrypted now, so a wrong key fails at load, not at login.
    Every bad line is reported at once.
    """
    entries: dict[str, PasswdEntry] = {}
    errors: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user:
            errors.append(f"{path}:{lineno}: expected user:password")
            continue
        if not stored:
            errors.append(f"{path}:{lineno}: empty password for user {user!r}")
            continue
        if user in entries:
            continue
        entry = classify(user, stored)
        if entry.kind == "aes" and key is not None:
            try:
                entry = PasswdEntry(user, "aes", entry.secret, aes_decrypt(entry.secret, key))
            except ValueError as exc:
                errors.append(f"{path}:{lineno}: user {user!r}: {exc}")
                continue
        entries[user] = entry
    if errors:
        raise PasswdError("\n".join(errors))
    return entries


def load_pool_passwd(path: str, *, key: str | None = None,
                     key_file: str | None = None) -> dict[str, PasswdEntry]:
    """Read a pool_passwd file; a missing file (or an empty path: disabled) gives {}.

    AES entries are decrypted with ``key``, or with the key read from the file that
    :func:`find_key_file` picks starting at ``key_file`` (read only when the file holds AES
    entries). With neither, AES entries stay encrypted and ``plaintext()`` gives None.
    """
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
    entries = parse_pool_passwd(text, path)
    if key is None and key_file is not None and any(e.kind == "aes" for e in entries.values()):
        found = find_key_file(key_file)
        if found is not None:
            key = read_key_file(found)
    if key is None or not any(e.kind == "aes" for e in entries.values()):
        return entries
    return parse_pool_passwd(text, path, key=key)


# --- writing ---------------------------------------------------------------------------------


def encode_entry(user: str, password: str, kind: str, key: str | None = None) -> str:
    """The secret to store after ``user:`` (``md5…``, ``AES…``, ``TEXT…`` or bare text).

    'md5' cannot drive SCRAM logins to PostgreSQL; 'aes' (with a key) and 'text' can.
    """
    if not user or any(c in user for c in ":\n\r"):
        raise ValueError("user name must be non-empty and contain no ':' or line break")
    if not password or any(c in password for c in "\n\r"):
        raise ValueError("password must be non-empty and contain no line break")
    if kind == "md5":
        return "md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest()
    if kind == "aes":
        if key is None:
            raise ValueError("AES entries need a key (a key file)")
        return "AES" + aes_encrypt(password, key)
    if kind == "text":
        return "TEXT" + password
    if kind == "plain":
        if classify(user, password) != PasswdEntry(user, "text", password):
            raise ValueError("this password would be read back as another entry kind "
                             "(it starts with md5, AES, TEXT or SCRAM-SHA-256$); use 'text'")
        return password
    raise ValueError(f"unknown entry kind {kind!r} (expected {', '.join(KINDS)})")


def write_entry(path: str, user: str, secret: str) -> None:
    """Set ``user:secret`` in a pool_passwd file, replacing the user's line(s) or appending.

    The file is rewritten atomically with mode 0600; an existing file keeps its owner (when
    we may set it), so running this as root does not lock the proxy's own user out.
    """
    if not user or any(c in user for c in ":\n\r") or any(c in secret for c in "\n\r"):
        raise ValueError("user name or secret contains ':' or a line break")
    path = os.path.realpath(path)
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        old, st = "", None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PasswdError(f"{path}: cannot read: {reason}") from None
    lines = old.splitlines()
    new_line = f"{user}:{secret}"
    out: list[str] = []
    replaced = False
    for line in lines:
        if line.rstrip("\r").partition(":")[0] == user and ":" in line:
            if not replaced:
                out.append(new_line)
                replaced = True
            continue  # later duplicates were dead (first entry wins): drop them
        out.append(line)
    if not replaced:
        out.append(new_line)
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".pool_passwd.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

