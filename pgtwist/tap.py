"""twistd plugin options: ``twistd -n pgtwist -c etc/pgpool.yaml``."""

from __future__ import annotations

import sys

from twisted.python import usage

from .auth.hba import HbaError
from .auth.passwd import PasswdError
from .config import load_config
from .errors import ConfigError


class Options(usage.Options):
    synopsis = "[-c FILE] [--check]"
    longdesc = (
        "Run pgtwist, a PostgreSQL proxy that sends writes to the primary and pools "
        "connections, configured with Pgpool-II parameter names in a YAML file. "
        "PGPOOL_PARAMS_<NAME> environment variables override the file. "
        "Run in the foreground with `twistd -n pgtwist -c FILE`."
    )
    optParameters = [
        ["config", "c", "etc/pgpool.yaml", "YAML configuration file (Pgpool-II parameter names)."],
        ["hba-file", "a", None, "pool_hba.conf path (overrides pool_hba_file), as pgpool -a."],
        ["pcp-file", "F", None, "pcp.conf path (overrides pcp_conf_file), as pgpool -F."],
        ["key-file", "k", None, "AES key file for pool_passwd (overrides pool_key_file), as pgpool -k."],
    ]
    optFlags = [
        ["check", None, "Validate the configuration, print the result and exit without starting."],
    ]

    def postOptions(self) -> None:
        overrides = {}
        if self["hba-file"]:
            overrides["pool_hba_file"] = self["hba-file"]
        if self["pcp-file"]:
            overrides["pcp_conf_file"] = self["pcp-file"]
        if self["key-file"]:
            overrides["pool_key_file"] = self["key-file"]
        self.overrides = overrides
        try:
            self.config = load_config(self["config"], overrides=overrides)
            from .check import check_runtime

            for warning in check_runtime(self.config):
                sys.stderr.write(f"pgtwist: warning: {warning}\n")
        except (ConfigError, HbaError, PasswdError) as exc:
            sys.stderr.write(f"pgtwist: configuration is invalid:\n{exc}\n")
            raise SystemExit(1) from None
        if self["check"]:
            c = self.config
            sys.stdout.write(
                f"pgtwist: configuration {c.path or '(defaults)'} is valid: "
                f"listen {c.listen_addresses}:{c.port}, {len(c.backends)} backend(s)\n"
            )
            raise SystemExit(0)


def log_stream(server_options):
    """Where twistd would write its log (``--logfile``, else stdout with ``-n``, else
    twistd.log), or None to leave logging to twistd (``--syslog``, ``--logger``)."""
    if server_options is None:
        return None
    get = server_options.get
    if get("syslog") or get("logger"):
        return None
    name = get("logfile")
    if name == "-" or (not name and get("nodaemon")):
        return sys.stdout
    from twisted.python.logfile import LogFile

    logfile = LogFile.fromFullPath(name or "twistd.log")
    def rotate(*_):
        from twisted.internet import reactor

        reactor.callFromThread(logfile.rotate)

    try:
        import signal

        signal.signal(signal.SIGUSR1, rotate)  # as twistd does for its own log file
    except (ImportError, AttributeError, ValueError):
        pass
    return logfile


def makeService(options: Options):
    from .service import make_service

    return make_service(options.config, overrides=options.overrides,
                        log_out=log_stream(getattr(options, "parent", None)))
