"""Where the shipped data lives: ``pretrained/`` (manifest, digits models, statistics) and ``studies/``.

In a source checkout (or an editable install) the data root is the repository root, whose top-level
``pretrained/`` and ``studies/`` are the sources of truth. A built wheel carries copies of both under the
package (``edmbench/_data/``, written by ``setup.py`` at build time), found here through
:mod:`importlib.resources` — never through the working directory. The packaged copy wins when present.

A path such as ``pretrained/digits-train-stats.npz`` (as a spec writes it) means the same file in both
layouts: :func:`data_path` joins it to :func:`data_root`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

PACKAGED = "_data"  # folder inside the installed package holding pretrained/ and studies/
DATA_DIRS = ("pretrained", "studies")


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The folder holding ``pretrained/`` and ``studies/``: the package's copy, else the checkout."""
    packaged = Path(os.fspath(files("edmbench"))) / PACKAGED
    if (packaged / "pretrained" / "manifest.toml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pretrained" / "manifest.toml").is_file():
        return checkout
    raise FileNotFoundError(f"edmbench's shipped data is missing: neither {packaged}/pretrained/manifest.toml"
                            f" (installed wheel) nor {checkout}/pretrained/manifest.toml (source checkout)"
                            " exists; reinstall edmbench")


def pretrained_dir() -> Path:
    """The shipped ``pretrained/`` folder (``manifest.toml``, ``digits-*`` models and statistics)."""
    return data_root() / "pretrained"


def studies_dir() -> Path:
    """The shipped ``studies/`` folder of study specs."""
    return data_root() / "studies"


def data_path(relative: str | os.PathLike) -> Path:
    """``relative`` (e.g. ``pretrained/digits-train-stats.npz``) inside the data root."""
    return data_root() / relative


def shipped_specs() -> dict[str, Path]:
    """Shipped spec name (file stem, e.g. ``quickstart``) -> its file."""
    return {p.stem: p for p in sorted(studies_dir().glob("*.toml"))}


def find_spec(text: str | os.PathLike) -> Path:
    """A spec argument as a path: an existing file, else a shipped spec by name (``quickstart``,
    ``quickstart.toml`` or ``studies/quickstart.toml``). A bare name that is neither raises
    FileNotFoundError listing the shipped names; other paths return unchanged for the caller to report."""
    path = Path(text).expanduser()
    if path.is_file():
        return path
    shipped = shipped_specs()
    stem = path.name.removesuffix(".toml")
    if path.parent in (Path("."), Path("studies")) and stem in shipped:
        return shipped[stem]
    if path.parent == Path(".") and not path.exists():
        raise FileNotFoundError(f"no spec file {str(text)!r} and no shipped spec of that name; shipped: "
                                f"{', '.join(shipped)} (in {studies_dir()})")
    return path


def describe() -> str:
    """One line per data folder, for ``edmbench --version``."""
    root = data_root()
    kind = "installed package" if root.name == PACKAGED else "source checkout"
    return "\n".join([f"data root: {root} ({kind})"] + [f"  {d}/: {root / d}" for d in DATA_DIRS])
