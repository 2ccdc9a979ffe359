"""pcp.conf: who may use the PCP port. One ``username:md5hex(password)`` a line (as
``pg_md5 password`` prints it; no "md5" prefix), ``#`` comments and blank lines ignored.

The file is read at every login, as Pgpool-II does, so an edit applies without a reload.
Anything unreadable or malformed refuses logins rather than guessing: a missing file
means no one may log in. Its hashes are enough to log in (the protocol salts
md5hex(password), not the password), so like pool_passwd it must be closed to group and
others (0600, or 0640 when owned by root); Pgpool-II does not check.
"""

from __future__ import annotations

import re

from ..config_files import check_file

MAX_FIELD = 128  # Pgpool-II's limit on each field
_MD5 = re.compile(r"[0-9a-f]{32}\Z")


class PcpConfError(Exception):
    pass


def parse_pcp_conf(text: str, path: str = "pcp.conf") -> dict[str, str]:
    """user -> md5hex(password); a malformed line is an error naming its number."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, digest = line.partition(":")
        digest = digest.strip().lower()
        if not sep or not user or len(user) > MAX_FIELD or not _MD5.match(digest):
            raise PcpConfError(f"{path}:{number}: expected username:md5hex(password)")
        entries[user] = digest
    return entries


def read_pcp_conf(path: str) -> dict[str, str]:
    """The file's entries; PcpConfError (naming the path) if it cannot be used."""
    if not path:
        raise PcpConfError("pcp_conf_file is empty: PCP logins are disabled")
    problems: list[str] = []
    check_file("pcp_conf_file", path, problems, required="PCP logins need it", secret=True)
    if problems:
        raise PcpConfError(problems[0])
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise PcpConfError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PcpConfError(f"{path}: not UTF-8 text") from None
    return parse_pcp_conf(text, path)
