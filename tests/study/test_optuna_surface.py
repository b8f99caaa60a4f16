"""The private Optuna surface lives in one module, for one tested range of Optuna versions."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import optuna

from edmbench.study import _optuna

REPO = Path(__file__).resolve().parents[2]
PRIVATE = ("_storage", "_trial_id", "_backend", "_rdb", "_sync_with_backend", "_thread_lock", "_file_path",
           "_cached_storage", "journal._storage")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def test_installed_optuna_is_in_the_tested_range():
    """A newer (or older) Optuna fails here first: re-check every function of ``_optuna`` before widening."""
    low, high = _optuna.TESTED_OPTUNA
    installed = _version(optuna.__version__)
    assert _version(low) <= installed < _version(high), (
        f"Optuna {optuna.__version__} is outside the tested range [{low}, {high}) of edmbench.study._optuna")


def test_pyproject_pins_the_tested_range():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    low, high = _optuna.TESTED_OPTUNA
    assert f"optuna>={low},<{high}" in deps


def test_private_optuna_api_only_in_the_surface_module():
    """No module of edmbench but ``study/_optuna.py`` touches Optuna's private attributes or modules."""
    offenders = []
    for path in sorted((REPO / "edmbench").rglob("*.py")):
        if path.name == "_optuna.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Attribute):
                names.append(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            for name in names:
                if any(name == p or (name.startswith("optuna") and p in name) for p in PRIVATE):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert not offenders, offenders
