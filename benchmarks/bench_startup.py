"""Start-up wall time vs a bare ``python -c pass``: CLI help, spec validation and ``run_study.py --dry-run``.

Each command runs ``--repeats`` times in a fresh interpreter (after one untimed warm-up, with the bytecode
cache on in a private ``PYTHONPYCACHEPREFIX``, as an installed package has it); the median wall time, the
ratio to the bare interpreter (target: <= 5x) and which heavy packages the command imported (its own
``sys.modules``, probed once) are printed side by side. ``import edmbench.study.spec`` is the floor of
``--dry-run``: what the spec module and the standard library cost before any spec is read.

    python benchmarks/bench_startup.py [--repeats 5] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "torch_fidelity", "numpy", "optuna", "sqlalchemy", "pandas", "matplotlib")
_DRY = "import runpy; sys.argv = ['run_study.py', 'studies/quickstart.toml', '--dry-run']; " \
       "runpy.run_path('run_study.py', run_name='__main__')"
# name -> Python code run as ``python -c`` (SystemExit from argparse --help is caught)
COMMANDS = {
    "python -c pass": "pass",
    "import edmbench.study.spec": "import edmbench.study.spec",
    "load_spec(quickstart)": "from edmbench.study.spec import load_spec; "
                             "load_spec('studies/quickstart.toml')",
    "edmbench --help": "from edmbench.cli import main; main(['--help'])",
    "run_study.py --help": "import runpy; sys.argv = ['run_study.py', '--help']; "
                           "runpy.run_path('run_study.py', run_name='__main__')",
    "run_study.py --dry-run": _DRY,
    # the same work without study.cli.main's eager `import optuna` (asked of its owner; shows what it costs)
    "cli.run_command(--dry-run)": "from edmbench.study.cli import _run_parser, run_command; "
                                  "run_command(_run_parser().parse_args(['studies/quickstart.toml', "
                                  "'--dry-run']))",
}


def _code(body: str, probe: bool) -> str:
    tail = f"\nimport json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))" if probe else ""
    return f"import sys, io, contextlib\ntry:\n    with contextlib.redirect_stdout(io.StringIO()):\n" \
           f"        {body}\nexcept SystemExit:\n    pass{tail}"


def _run(body: str, env: dict[str, str], probe: bool = False) -> str:
    return subprocess.run([sys.executable, "-c", _code(body, probe)], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=600).stdout


def wall(body: str, repeats: int, env: dict[str, str]) -> float:
    _run(body, env)  # warm-up: writes the bytecode cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _run(body, env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=list(COMMANDS), choices=list(COMMANDS),
                        help="subset of the commands (the bare interpreter is always timed)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        base = wall(COMMANDS["python -c pass"], args.repeats, env)
        print(f"{'command':28s} {'median':>8s} {'ratio':>7s}  heavy imports   (target <= 5x; "
              f"{args.repeats} runs each, load average {os.getloadavg()[0]:.1f})")
        for name in args.only:
            t = base if name == "python -c pass" else wall(COMMANDS[name], args.repeats, env)
            heavy = json.loads(_run(COMMANDS[name], env, probe=True).strip().splitlines()[-1])
            out[name] = t
            print(f"{name:28s} {t:7.3f}s {t / base:6.1f}x  {', '.join(heavy) or 'none'}")
    return out


if __name__ == "__main__":
    main()
