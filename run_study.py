#!/usr/bin/env python3
"""Run an Optuna FID study from a TOML spec: ``python run_study.py studies/quickstart.toml``.

Thin wrapper over :mod:`edmbench.study.cli`; see ``docs/studies.md``.
"""

import sys

from edmbench.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
