"""The ``pgtwist`` console command: configuration checks and helpers."""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgtwist", description="pgtwist helper commands")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", default="etc/pgpool.yaml")
    args = parser.parse_args(argv)
    if args.command == "check":
        try:
            config = load_config(args.config)
            from .policies import build_chain

            build_chain(config)
        except ConfigError as exc:
            print(f"pgtwist: configuration is invalid:\n{exc}", file=sys.stderr)
            return 1
        print(
            f"pgtwist: configuration {config.path} is valid: listen "
            f"{config.listen_addresses}:{config.port}, {len(config.backends)} backend(s)"
        )
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
