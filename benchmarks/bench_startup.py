"""Start-up wall time: ``edmbench --help`` and ``run_study.py --dry-run`` vs a bare ``python -c pass``.

Each command runs ``--repeats`` times in a fresh interpreter; the median wall time and the ratio to the bare
interpreter are printed (target for ``--help``: <= 5x). ``--dry-run`` parses and checks the quickstart spec
and prints the plan (it imports what spec validation imports).

    python benchmarks/bench_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "edmbench --help": [sys.executable, "-m", "edmbench", "--help"],
    "run_study.py --help": [sys.executable, "run_study.py", "--help"],
    "run_study.py --dry-run": [sys.executable, "run_study.py", "studies/quickstart.toml", "--dry-run"],
}


def wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(COMMANDS), help="subset of the commands")
    args = parser.parse_args(argv)
    base = wall(COMMANDS["python -c pass"], args.repeats)
    out = {}
    for name in args.only:
        t = base if name == "python -c pass" else wall(COMMANDS[name], args.repeats)
        out[name] = t
        print(f"{name:26s} {t:7.3f} s  {t / base:6.1f}x bare python")
    return out


if __name__ == "__main__":
    main()
