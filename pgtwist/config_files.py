"""The files a configuration names: each must exist when a setting needs it, be a readable
file, and -- for secrets such as pool_passwd and ssl_key -- be closed to group and others.
"""

from __future__ import annotations

import os
import stat


def check_file(label: str, path: str, errors: list[str], *, required: str = "",
               secret: bool = False) -> None:
    """Report a named file that is missing (if ``required`` says why it must exist),
    unreadable, or -- for a ``secret`` -- open to group or others.

    Secrets follow PostgreSQL's rule for ssl_key: 0600 or less, or 0640 or less when owned by
    root (so a root-owned Kubernetes Secret shared through the pod's fsGroup is accepted).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if required:
            errors.append(f"{label}: {path} does not exist ({required})")
        return
    except OSError as exc:
        errors.append(f"{label}: {path} cannot be read: {exc.strerror or exc}")
        return
    if stat.S_ISDIR(st.st_mode):
        errors.append(f"{label}: {path} is a directory, not a file")
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        errors.append(f"{label}: {path} cannot be read: {exc.strerror or exc}")
        return
    if not secret:
        return
    mode = stat.S_IMODE(st.st_mode)
    limit = 0o640 if st.st_uid == 0 else 0o600
    extra = mode & 0o777 & ~limit
    if extra:
        who = "group or others" if limit == 0o600 else "others"
        how = "readable" if extra & 0o044 else "writable or executable"
        errors.append(f"{label}: {path} is {how} by {who} (mode {mode:04o}; chmod 600)")


def check_config_files(params: dict, labels: dict[str, str], errors: list[str]) -> None:
    if params["pool_passwd"]:  # optional: pgtwist runs without one
        check_file(labels["pool_passwd"], params["pool_passwd"], errors, secret=True)
    if params["pool_key_file"]:
        check_file(labels["pool_key_file"], params["pool_key_file"], errors, secret=True)
    if params["enable_pool_hba"]:
        check_file(labels["pool_hba_file"], params["pool_hba_file"], errors,
                    required="enable_pool_hba is on")
    if params["ssl"]:
        for name in ("ssl_key", "ssl_cert"):
            if params[name]:
                check_file(labels[name], params[name], errors, required="ssl is on",
                            secret=name == "ssl_key")
