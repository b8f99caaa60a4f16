"""Every shell command in README.md and docs/*.md is run here, so the docs cannot drift from the code.

Commands are the lines of fenced blocks (``bash``/``sh``/``console``/unlabelled) that start with a known
program (``python``, ``edmbench``, ``make``, ``pip``, ``optuna-dashboard``; a ``$ `` prompt is dropped;
``\\`` continuations joined; trailing ``# comments`` removed). Each one must match a rule in :data:`RULES`,
which says how it is checked:

- ``dry-run``: run for real with ``--dry-run`` appended (plans only; nothing is loaded or written);
- ``run``: run as written (it is fast and writes nothing);
- ``flags``: the command's ``--help`` is run and every ``--flag`` the docs use must appear in it
  (for commands that need downloaded weights, a GPU, or long training);
- ``make-n``: ``make -n TARGET`` must succeed (what it would run is checked by the rules for those commands);
- ``extra``: ``pip install ...[EXTRA]``: the extra must exist in pyproject.toml;
- ``skip``: with a reason (third-party programs, environment set-up that .ci/run exercises).

A command that matches no rule FAILS the test: add it to RULES (with the cheapest honest check).
Python snippets are not run here. Commands run in-process from the repository root, as a reader would.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
PROGRAMS = ("python ", "python3 ", "edmbench ", "make ", "pip ", "optuna-dashboard ")

# (pattern matched against the whole command, how it is checked); the first match wins
RULES: list[tuple[str, str]] = [
    (r"^make (run|test)$", "make-n"),
    (r"^python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[dev\]'$", "skip: set-up; .ci/run does it"),
    (r"^pip install (-e )?'(\.|edmbench)\[\w+\]'$", "extra"),
    (r"^pip install optuna-dashboard$", "skip: third-party package"),
    (r"^pip install torch==\S+ torchvision==\S+ && pip install \.$",
     "skip: a non-editable install; .ci/run builds the wheel and installs it this way"),
    (r"^optuna-dashboard ", "skip: third-party server"),
    (r"^python run_study\.py (SPEC\.toml|report)", "flags"),  # the synopsis lines
    (r"^python run_study\.py \S+\.toml .*--dry-run", "run"),
    (r"^python run_study\.py (studies/\S+\.toml|[\w-]+)( .*)?$", "dry-run"),
    (r"^edmbench quickstart( .*)?$", "dry-run"),
    (r"^edmbench --version$", "run"),
    (r"^edmbench (fid|ref|convert|study|compare) ", "flags"),  # need real weights, datasets or minutes
    (r"^python -m edmbench\.digits\.(train|classifier|gmm|evaluate) ", "flags"),  # training: minutes-hours
]


def _blocks(text: str):
    """(line number, language, body) of every fenced block."""
    for m in re.finditer(r"^[ \t]*```([\w-]*)[^\n]*\n(.*?)^[ \t]*```", text, re.S | re.M):
        yield text.count("\n", 0, m.start()) + 2, m.group(1).lower(), m.group(2)


def _strip_comment(line: str) -> str:
    """Drop a trailing shell comment (`` # ...`` outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def doc_commands() -> list[tuple[str, str]]:
    """(``file:line``, command) for every command in the docs."""
    found = []
    for path in DOCS:
        for start, lang, body in _blocks(path.read_text(encoding="utf-8")):
            if lang not in SHELL_LANGS:
                continue
            lines, i = body.splitlines(), 0
            while i < len(lines):
                where, line = i, lines[i].strip()
                while line.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line[:-1].rstrip() + " " + lines[i].strip()
                i += 1
                line = _strip_comment(line.removeprefix("$ "))
                if line.startswith(PROGRAMS):
                    found.append((f"{path.relative_to(REPO)}:{start + where}", line))
    return found


COMMANDS = doc_commands()


def rule_for(command: str) -> str | None:
    return next((how for pattern, how in RULES if re.search(pattern, command)), None)


def _argv(command: str) -> list[str]:
    return shlex.split(command)


def _call(argv: list[str]) -> tuple[int, str]:
    """Run ``edmbench ...``, ``python run_study.py ...`` or ``python -m edmbench.X ...`` in this process."""
    if argv[0] == "edmbench":
        main, args = importlib.import_module("edmbench.cli").main, argv[1:]
    elif argv[:2] == ["python", "run_study.py"]:
        main, args = importlib.import_module("edmbench.study.cli").main, argv[2:]
    elif argv[:2] == ["python", "-m"] and argv[2].startswith("edmbench"):
        main, args = importlib.import_module(argv[2]).main, argv[3:]
    else:
        raise AssertionError(f"no in-process runner for {argv}")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = main(args)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return int(rc or 0), out.getvalue()


def _help_argv(argv: list[str]) -> list[str]:
    """The ``--help`` form of a command: program (and sub-command) only."""
    if argv[0] == "edmbench":
        return [*argv[:2], "--help"]
    if argv[:2] == ["python", "run_study.py"]:
        return [*argv[:2], *(["report"] if argv[2:3] == ["report"] else []), "--help"]
    return [*argv[:3], "--help"]


def test_docs_have_commands_and_every_one_has_a_rule():
    assert len(COMMANDS) >= 10, COMMANDS  # the extraction itself works
    missing = [f"{where}: {cmd}" for where, cmd in COMMANDS if rule_for(cmd) is None]
    assert not missing, "commands in the docs without a check; add them to RULES:\n" + "\n".join(missing)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command(where, command, monkeypatch):
    how = rule_for(command)
    if how is None:
        pytest.fail(f"{where}: no rule for {command!r}; add one to RULES")
    if how.startswith("skip"):
        pytest.skip(how)
    monkeypatch.chdir(REPO)
    argv = _argv(command)
    if how == "extra":
        extra = re.search(r"\[(\w+)\]", command).group(1)
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert extra in extras, f"{where}: extra [{extra}] is not in pyproject.toml ({', '.join(extras)})"
    elif how == "make-n":
        out = subprocess.run(["make", "-n", argv[1]], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, f"{where}: make -n {argv[1]} failed:\n{out.stderr}"
    elif how in ("run", "dry-run"):
        rc, out = _call(argv + (["--dry-run"] if how == "dry-run" else []))
        assert rc == 0, f"{where}: {command} exited {rc}:\n{out[-3000:]}"
    elif how == "flags":
        rc, out = _call(_help_argv(argv))
        assert rc == 0, f"{where}: {' '.join(_help_argv(argv))} exited {rc}:\n{out[-3000:]}"
        used = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", command)) - {"--help"}
        unknown = sorted(flag for flag in used if flag not in out)
        assert not unknown, f"{where}: {command}\n  uses {unknown}, not in its --help:\n{out}"
    else:
        raise AssertionError(f"unknown rule {how!r}")
