"""Build step: copy the top-level ``pretrained/`` and ``studies/`` into the wheel as ``edmbench/_data/``.

The top-level folders stay the only copies in the repository; ``edmbench.resources`` finds the packaged copy
through ``importlib.resources`` after a (non-editable) install, and the top-level folders in a checkout.
All other metadata is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("pretrained", "studies")  # = edmbench.resources.DATA_DIRS


class BuildPyWithData(build_py):
    """``build_py`` that also copies the shipped data into ``<build_lib>/edmbench/_data/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the top-level folders directly
        for name in DATA_DIRS:
            src, dst = ROOT / name, Path(self.build_lib) / "edmbench" / "_data" / name
            if not (src / ".").is_dir():
                raise SystemExit(f"setup.py: {src} is missing; build from a full checkout or sdist")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
