"""``edmbench`` command line: one sub-command per capability, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# sub-command name -> module exposing ``add_parser(subparsers)``; imported lazily to keep start-up light
COMMANDS = {
    "compare": "edmbench.compare",
    "convert": "edmbench.pretrained",
    "fid": "edmbench.metrics.cli",
    "ref": "edmbench.metrics.cli",
    "schedule": "edmbench.schedule_cli",
    "study": "edmbench.study.cli",
}
# one line per sub-command for ``edmbench --help``, which imports none of the modules above (torch-free)
SUMMARIES = {
    "compare": "paired differences of FID between sampler settings on the same seeds",
    "convert": "convert an EDM .pkl into edmbench's native safetensors format",
    "fid": "FID (KID, precision/recall) of a denoiser and sampler settings",
    "ref": "reference statistics (.npz: mu, sigma) of a dataset",
    "schedule": "show a discretization's levels, or optimise a schedule",
    "study": "run a study from a TOML spec, or 'study report SPEC'",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (all of them when None; none for top-level help)."""
    parser = argparse.ArgumentParser(prog="edmbench", description=__doc__)
    parser.add_argument("--version", action=_VersionAction, help="print the version and where the shipped "
                        "data (pretrained/, studies/) lives, then exit")
    sub = parser.add_subparsers(dest="command", required=True)
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command]).add_parser(sub)
    elif command == "":  # top-level help or a bad name: list the sub-commands without importing them
        for name, summary in SUMMARIES.items():
            sub.add_parser(name, help=summary)
    else:
        for module in dict.fromkeys(COMMANDS.values()):
            importlib.import_module(module).add_parser(sub)
    _add_quickstart(sub)
    return parser


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    """``edmbench quickstart [ARGS]`` = ``run_study.py <shipped quickstart.toml> [ARGS]``, from any folder."""
    p = sub.add_parser("quickstart", add_help=False, help="run the shipped quickstart study on the embedded "
                       "digits model (options as run_study.py, e.g. --dry-run, --n-trials N)")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=_quickstart)


def _quickstart(args: argparse.Namespace) -> int:
    from edmbench.resources import shipped_specs
    from edmbench.study.cli import main as study_main

    return study_main([str(shipped_specs()["quickstart"]), *args.argv])


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        import edmbench
        from edmbench.resources import describe

        print(f"edmbench {edmbench.__version__}\n{describe()}")
        parser.exit()


# sub-commands whose own parser reads every argument after the name (argparse's REMAINDER drops leading
# options such as ``edmbench study --dry-run SPEC``, so they are handed over verbatim)
PASSTHROUGH = ("study", "quickstart")


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. Bad input -> one line ``edmbench <command>: error: ...`` on stderr, exit 2;
    ``--debug`` (anywhere on the line) shows the traceback instead."""
    from edmbench.errors import DEBUG_ENV, USER_ERRORS, one_line

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        previous, os.environ[DEBUG_ENV] = os.environ.get(DEBUG_ENV), "1"
        try:
            return _run(argv)
        finally:  # main() may be called again in this process (tests): do not leak the flag
            if previous is None:
                os.environ.pop(DEBUG_ENV, None)
            else:
                os.environ[DEBUG_ENV] = previous
    if os.environ.get(DEBUG_ENV) == "1":
        return _run(argv)
    try:
        return _run(argv)
    except USER_ERRORS as exc:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"edmbench {command}: error: {one_line(exc)} (--debug for the traceback)".replace("  ", " "),
              file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    if argv == ["--version"]:  # answered before the sub-commands (and their imports) load
        _VersionAction(["--version"], "version")(argparse.ArgumentParser(prog="edmbench"))
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(command if command in COMMANDS else "")
    if argv and argv[0] in PASSTHROUGH:
        args = parser.parse_args(argv[:1])
        args.argv = argv[1:]
    else:
        args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
