"""``edmbench`` command line: one sub-command per capability, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module exposing ``add_parser(subparsers)``; imported lazily to keep start-up light
COMMANDS = {
    "convert": "edmbench.pretrained",
    "fid": "edmbench.metrics.cli",
    "ref": "edmbench.metrics.cli",
    "study": "edmbench.study.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edmbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
