"""Provenance: the one set of keys that says which code, library versions and device produced a number.

Every record edmbench writes (a study trial, ``edmbench fid --json``, the digits evaluation, a trained
model's metadata) starts from :func:`provenance`, so the same fact has the same key everywhere:

``edmbench_version``, ``git_commit`` (12 hex digits, ``+dirty`` with uncommitted changes; ``None`` outside a
checkout), ``python_version``, ``torch_version``, ``device``, ``dtype``, ``threads`` (torch intra-op threads),
``host``. Elapsed time is not provenance: records carry it beside, as ``wall_time_s``.
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

KEYS = ("edmbench_version", "git_commit", "python_version", "torch_version", "device", "dtype", "threads",
        "host")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (12 hex digits, ``+dirty`` when tracked files changed), or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


def provenance(*, device: Any = "cpu", dtype: Any = "float32") -> dict[str, Any]:
    """Every key of :data:`KEYS` for a computation on ``device`` in ``dtype`` (names or torch objects)."""
    import torch

    import edmbench

    return {"edmbench_version": edmbench.__version__, "git_commit": git_commit(),
            "python_version": platform.python_version(), "torch_version": torch.__version__,
            "device": str(device), "dtype": str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(), "host": platform.node()}
