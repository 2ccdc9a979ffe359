"""Everything a configuration needs before the daemon may start, checked in one place.

Used by ``twistd pgtwist`` (always, so a bad file stops it before it daemonizes),
by its ``--check`` flag and by ``pgtwist check``.
"""

from __future__ import annotations

from .auth.hba_parse import load_hba
from .auth.passwd import load_pool_passwd
from .registry import build_chain
from .tls import server_tls_from_config


def check_runtime(config) -> list[str]:
    """Raise ConfigError / HbaError / PasswdError on problems; return warnings."""
    build_chain(config)  # routing options are part of the configuration
    if config.enable_pool_hba:
        load_hba(config.pool_hba_file)
    entries = load_pool_passwd(config.pool_passwd, key_file=config.pool_key_file)
    server_tls_from_config(config)  # certificate, key and ciphers load
    locked = sorted(e.user for e in entries.values() if e.kind == "aes" and e.decrypted is None)
    if locked:
        return [f"no AES key file found, so the pool_passwd entries of {', '.join(locked)} "
                "cannot be used"]
    return []
