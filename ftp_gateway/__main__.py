"""`python -m ftp_gateway ftp ...` / `python -m ftp_gateway user ...` until `cgirt` wires it."""

from __future__ import annotations

import argparse
import sys

from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftp_gateway")
    subparsers = parser.add_subparsers(dest="command", metavar="{ftp,user}")
    subparsers.required = True
    register(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
