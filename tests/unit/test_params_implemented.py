"""Every parameter pgtwist accepts is either implemented or declared unimplemented.

"Implemented" is judged from the source: some module of pgtwist/ other than the
parameter table and the loader (which mention every name) reads it, as
a quoted string (``params["x"]``, ``p.get("x")``, ``r.items("x")``) or ``config.x``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pgtwist
from pgtwist.config import ConfigError, parse_config
from pgtwist.params import (
    PARAMS,
    UNIMPLEMENTED,
    unimplemented,
    unimplemented_warnings,
)

ROOT = Path(pgtwist.__file__).parent
SOURCES = {
    path: path.read_text()
    for path in ROOT.rglob("*.py")
    if path.name not in ("params.py", "config.py", "config_values.py", "config_files.py",
                         "config_pgpool.py")
}
ONE = {"backends": [{"hostname": "db"}]}


ALL = "\n".join(SOURCES.values())


def _readers(name: str) -> list[str]:
    use = re.compile(rf"""["']{re.escape(name)}["']|\bconfig\.{re.escape(name)}\b""")
    if not use.search(ALL):
        return []
    return [str(p.relative_to(ROOT)) for p, text in SOURCES.items() if use.search(text)]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_each_param_is_read_or_declared_unimplemented(name):
    readers = _readers(name)
    if name in UNIMPLEMENTED:
        if name == "pgtwist":  # the project's name is quoted everywhere; nothing reads the key
            return
        assert not readers, f"{name} is listed as unimplemented but read in {readers}"
    else:
        assert readers, f"{name} is accepted but nothing in pgtwist/ reads it: implement it " \
                        "or list it in params.UNIMPLEMENTED"


def test_severities():
    assert set(UNIMPLEMENTED.values()) <= {"error", "warning"}
    assert UNIMPLEMENTED["ssl_passphrase_command"] == "error"
    # Implemented now, so no longer in the list.
    for name in ("ssl_crl_file", "ssl_ca_cert_dir", "listen_backlog_multiplier"):
        assert name not in UNIMPLEMENTED


def test_defaults_say_nothing():
    config = parse_config(ONE, env={}, check_files=False)
    assert unimplemented_warnings(config.params) == []
    for name, p in PARAMS.items():
        assert unimplemented(name, p.default) is None


def test_a_harmless_setting_is_a_warning_naming_the_key():
    config = parse_config({**ONE, "use_watchdog": True, "log_backend_messages": "terse",
                           "connect_timeout1": 5, "health_check_period1": 5,
                           "failover_on_backend_error": False, "child_life_time": 300},
                          env={}, check_files=False)
    warnings = unimplemented_warnings(config.params)
    assert sorted(w.split(":")[0] for w in warnings) == [
        "connect_timeout1", "log_backend_messages", "use_watchdog"]
    assert all("not implemented by pgtwist" in w for w in warnings)


def test_a_security_setting_pgtwist_cannot_honour_is_an_error():
    with pytest.raises(ConfigError) as exc:
        parse_config({**ONE, "ssl_passphrase_command": "/bin/echo secret"}, env={},
                     check_files=False)
    assert exc.value.errors == [
        "ssl_passphrase_command: accepted for Pgpool-II compatibility but not implemented by "
        "pgtwist (use an ssl_key without a passphrase); remove it or set it to ''"]
    assert "/bin/echo" not in str(exc.value)


def test_a_full_pgpool_conf_with_defaults_loads(tmp_path):
    """Drop-in: every Pgpool-II parameter at its default value loads without a message."""
    lines = ["backend_hostname0 = 'db'"]
    for name, p in PARAMS.items():
        if p.kind in ("map",):
            continue
        value = p.default
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif isinstance(value, tuple):
            text = (";" if p.kind == "semilist" else ",").join(value)
        elif p.kind == "mode":
            text = f"{value:04o}"
        else:
            text = str(value)
        lines.append(f"{name} = '{text}'")
    conf = tmp_path / "pgpool.conf"
    conf.write_text("\n".join(lines) + "\n")
    from pgtwist.config import load_config

    config = load_config(str(conf), env={}, check_files=False)
    assert unimplemented_warnings(config.params) == []


def test_the_reference_config_says_nothing():
    from pgtwist.config import load_config

    config = load_config(str(ROOT.parent / "etc" / "pgpool.yaml"), env={}, check_files=False)
    assert unimplemented_warnings(config.params) == []
