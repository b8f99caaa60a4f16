"""Checks an installed (non-editable) edmbench from a folder outside the repository.

Run by ``.ci/run`` with a fresh virtual environment's python, and by ``tests/core/test_package.py``:

    cd "$(mktemp -d)" && /path/to/venv/bin/python /repo/tests/core/wheel_check.py [--study]

Checks: the shipped data is the installed package's copy (never the working directory or a checkout);
``edmbench --version`` says so; ``edmbench.load("digits-edm-uncond")`` works; every manifest name resolves
(local files exist with their sha256; download entries are https URLs the loader accepts); the spec-style
path ``pretrained/digits-train-stats.npz`` resolves; the quickstart's dry run and shipped spec names
work; with ``--study``, a tiny study (2 trials, 32 images) runs end to end and writes its report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from pathlib import Path

TINY_STUDY = """
[study]
name = "tiny"
[denoiser]
model = "digits-edm-uncond"
class_policy = "none"
[metric]
extractor = "digits-classifier"
reference = "pretrained/digits-train-stats.npz"
num_images = 32
seed_start = 0
[fixed]
sampler = "euler"
[space.num_steps]
type = "int"
low = 2
high = 4
[search]
sampler = "tpe"
seed = 0
[budget]
n_trials = 2
"""


def _cli(*args: str) -> str:
    """``edmbench ARGS`` in this process (start-up paid once); its stdout, or SystemExit on failure."""
    from edmbench.cli import main

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = main(list(args))
    except SystemExit as exc:
        rc = exc.code or 0
    if rc != 0:
        raise SystemExit(f"FAIL: edmbench {' '.join(args)} exited {rc}:\n{out.getvalue()}")
    return out.getvalue()


def check(study: bool) -> None:
    import edmbench
    from edmbench import resources
    from edmbench.pretrained import read_manifest, resolve
    from edmbench.study._sections import resolve_path

    package = Path(edmbench.__file__).resolve().parent
    root = resources.data_root()
    assert root == package / resources.PACKAGED, f"data root {root} is not inside the installed {package}"
    assert not (Path.cwd() / "pretrained").exists(), "run this from a folder without pretrained/"
    print(f"ok   installed at {package}; data root {root}")

    version = subprocess.run([sys.executable, "-m", "edmbench", "--version"], capture_output=True, text=True,
                             check=True).stdout  # the console entry point, in its own process
    assert edmbench.__version__ in version and str(root) in version, version
    print("ok   edmbench --version names the version and the packaged data")

    denoiser = edmbench.load("digits-edm-uncond")
    assert tuple(denoiser.image_shape) == (1, 8, 8), denoiser.image_shape
    print("ok   edmbench.load('digits-edm-uncond')")

    for name, entry in read_manifest().items():
        if entry.file is not None:
            path, _ = resolve(name)  # checks existence and the manifest's sha256
            assert path.is_file() and path.is_relative_to(root), path
        else:
            assert entry.url.startswith("https://") and entry.format, (name, entry)
    print(f"ok   all {len(read_manifest())} manifest names resolve (local files with sha256, or https URLs)")

    stats = resolve_path("pretrained/digits-train-stats.npz")
    assert stats.is_file() and stats.is_relative_to(root), stats
    assert set(resources.shipped_specs()) >= {"quickstart"}, resources.shipped_specs()

    plan = _cli("quickstart", "--dry-run")
    assert "study 'quickstart'" in plan, plan
    for name in resources.shipped_specs():
        _cli("study", name, "--dry-run")
    print(f"ok   quickstart dry run; every shipped spec by name: {', '.join(resources.shipped_specs())}")

    if study:
        Path("tiny.toml").write_text(TINY_STUDY, encoding="utf-8")
        _cli("study", "tiny.toml", "--no-progress", "--runs-dir", "runs")
        written = sorted(p.name for p in Path("runs/tiny").iterdir())
        assert "summary.md" in written and "trials.csv" in written, written
        print(f"ok   tiny study ran from {Path.cwd()}: runs/tiny/ has {', '.join(written)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="store_true", help="also run a tiny study end to end")
    check(parser.parse_args().study)
    print("wheel check passed")
