"""The ``pgtwist`` console command: configuration checks and pool_passwd upkeep.

``pgtwist passwd`` replaces Pgpool-II's ``pg_md5 -m`` and ``pg_enc -m``: it writes one user's
pool_passwd line in any of the formats pgpool reads, and ``--genkey`` makes the AES key file.
Passwords are never echoed; prefer ``-p`` (prompt) or ``--stdin`` to a command-line argument,
which other users can see in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys

from .auth.hba import HbaError
from .auth.passwd import KINDS, PasswdError, encode_entry, find_key_file, read_key_file
from .auth.passwd import write_entry as write_passwd_entry
from .check import check_runtime
from .config import load_config
from .errors import ConfigError
from .params import unimplemented_warnings

DEFAULT_CONFIG = "etc/pgpool.yaml"


class _Fail(Exception):
    """A user error: printed as 'pgtwist: ...', exit status 1."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgtwist", description="pgtwist helper commands")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    _passwd_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "passwd":
            return _passwd(args)
    except _Fail as exc:
        print(f"pgtwist: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        warnings = [*unimplemented_warnings(config.params), *check_runtime(config)]
    except (ConfigError, HbaError, PasswdError) as exc:
        print(f"pgtwist: configuration is invalid:\n{exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"pgtwist: warning: {warning}", file=sys.stderr)
    print(
        f"pgtwist: configuration {config.path} is valid: listen "
        f"{config.listen_addresses}:{config.port}, {len(config.backends)} backend(s)"
    )
    return 0


# --- pgtwist passwd ----------------------------------------------------------------------------


def _passwd_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "passwd",
        help="add or replace a user's pool_passwd entry (like pg_md5 -m / pg_enc -m)",
        description="Write USER's line in pool_passwd (the one the config names, or -f). "
                    "md5 entries cannot log in to PostgreSQL users with SCRAM passwords; use "
                    "aes (needs a key file) or text for those.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", help=f"config naming pool_passwd (default {DEFAULT_CONFIG})")
    where.add_argument("-f", "--file", metavar="POOL_PASSWD", help="the pool_passwd file itself")
    p.add_argument("-k", "--key-file", metavar="KEYFILE",
                   help="AES key file (default: the config's pool_key_file, $PGPOOLKEYFILE, "
                        "~/.pgpoolkey)")
    p.add_argument("-m", "--method", choices=KINDS, default="md5",
                   help="entry format (default md5, as pg_md5)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("-p", "--prompt", action="store_true", help="prompt for the password")
    how.add_argument("--stdin", action="store_true", help="read the password from one stdin line")
    p.add_argument("--genkey", metavar="KEYFILE",
                   help="write a new random AES key to KEYFILE (mode 0600) and exit")
    p.add_argument("user", nargs="?", metavar="USER")
    p.add_argument("password", nargs="?", metavar="PASSWORD",
                   help="the password (visible to other users in the process list; prefer -p)")


def _passwd(args: argparse.Namespace) -> int:
    if args.genkey:
        if args.user or args.password:
            raise _Fail("--genkey takes no USER or PASSWORD")
        _genkey(args.genkey)
        print(f"pgtwist: wrote a new key to {args.genkey}")
        return 0
    if not args.user:
        raise _Fail("passwd: USER is required (or --genkey KEYFILE)")
    if args.password is not None and (args.prompt or args.stdin):
        raise _Fail("give the password as an argument, or with -p / --stdin, not both")
    path, configured_key = _passwd_paths(args)
    key = None
    if args.method == "aes":
        key_file = args.key_file or find_key_file(configured_key)
        if not key_file:
            raise _Fail("aes entries need a key file: give -k KEYFILE (make one with "
                        "'pgtwist passwd --genkey KEYFILE'), or set pool_key_file, "
                        "$PGPOOLKEYFILE or ~/.pgpoolkey")
        try:
            key = read_key_file(key_file)
        except PasswdError as exc:
            raise _Fail(str(exc)) from None
    password = _read_password(args)
    try:
        secret = encode_entry(args.user, password, args.method, key)
        write_passwd_entry(path, args.user, secret)
    except (ValueError, PasswdError) as exc:
        raise _Fail(str(exc)) from None
    except OSError as exc:
        raise _Fail(f"{path}: cannot write: {exc.strerror or exc}") from None
    print(f"pgtwist: wrote {args.method} entry for {args.user} to {path}")
    return 0


def _passwd_paths(args: argparse.Namespace) -> tuple[str, str | None]:
    """The pool_passwd to write and the configured key file (None with -f)."""
    if args.file:
        return os.path.abspath(args.file), None
    try:
        # Only the paths are needed: a pool_passwd with loose permissions must not stop us
        # from rewriting it (which also makes it 0600).
        config = load_config(args.config or DEFAULT_CONFIG, check_files=False)
    except ConfigError as exc:
        raise _Fail(f"configuration is invalid:\n{exc}") from None
    if not config.pool_passwd:
        raise _Fail(f"{config.path}: pool_passwd is empty (disabled); give -f POOL_PASSWD")
    return config.pool_passwd, config.pool_key_file


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return args.password
    if args.stdin:
        line = sys.stdin.readline()
        if not line:
            raise _Fail("no password on standard input")
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass(f"Password for {args.user}: ")
    if getpass.getpass("Again: ") != first:
        raise _Fail("the passwords do not match")
    return first


def _genkey(path: str) -> None:
    """A random key (256 bits, URL-safe base64: one line, no newline inside) in a new 0600 file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _Fail(f"{path} exists; not replacing it (AES entries made with it would become "
                    "unreadable)") from None
    except OSError as exc:
        raise _Fail(f"{path}: cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(f.fileno(), 0o600)  # regardless of the umask
        f.write(secrets.token_urlsafe(32) + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
