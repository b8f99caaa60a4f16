"""The package's shared pieces: light import, the Denoiser contract, counting, the CLI dispatcher."""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

from edmbench.denoisers.base import CountingDenoiser, Denoiser, as_sigma_tensor


class _Scale:
    """D(x; sigma) = x / (1 + sigma^2): exact for unit-variance Gaussian data (sigma_data = 1)."""

    sigma_min, sigma_max, image_shape, label_dim = 0.0, float("inf"), (1, 2, 2), 0

    def __call__(self, x, sigma, class_labels=None):
        return (x / (1 + as_sigma_tensor(sigma, x) ** 2)).to(torch.float32)

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)


def test_import_is_light():
    # `import edmbench` must not pull optuna, matplotlib or torch-fidelity (design principle 6)
    code = ("import sys, edmbench; heavy = {'optuna', 'matplotlib', 'torch_fidelity', 'pandas'};"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_attribute_error_names_the_attribute():
    import edmbench

    with pytest.raises(AttributeError, match="no_such_thing"):
        edmbench.no_such_thing  # noqa: B018


def test_counting_denoiser_counts_calls_and_rows():
    d = CountingDenoiser(_Scale())
    assert isinstance(d, Denoiser)
    x = torch.ones(3, 1, 2, 2)
    d(x, 1.0)
    d(x[:2], torch.tensor([1.0, 2.0]))
    assert (d.calls, d.sample_evaluations) == (2, 5)
    assert (d.sigma_min, d.sigma_max, d.image_shape, d.label_dim) == (0.0, float("inf"), (1, 2, 2), 0)
    d.reset()
    assert (d.calls, d.sample_evaluations) == (0, 0)


def test_sigma_tensor_shapes():
    x = torch.zeros(4, 1, 2, 2)
    assert as_sigma_tensor(2.0, x).shape == (4, 1, 1, 1)
    expected = torch.arange(4.0, dtype=torch.float64)
    assert torch.equal(as_sigma_tensor(torch.arange(4.0), x).flatten(), expected)
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        as_sigma_tensor(torch.ones(3), x)


def test_cli_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "edmbench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("convert", "fid", "ref", "study"):
        assert command in out.stdout
    assert "quickstart" in out.stdout


# ---- installed as a package (issue 12): shipped data found through package resources --------------------

REPO = Path(__file__).resolve().parents[2]
WHEEL_SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "edmbench", "pretrained",
                 "studies")


def test_source_checkout_uses_the_top_level_folders():
    from edmbench import resources

    assert resources.data_root() == REPO
    assert resources.pretrained_dir() == REPO / "pretrained" and resources.studies_dir() == REPO / "studies"
    assert resources.find_spec("quickstart") == REPO / "studies" / "quickstart.toml"
    with pytest.raises(FileNotFoundError, match="shipped: .*quickstart"):
        resources.find_spec("no-such-study")


def test_version_names_the_data_root():
    out = subprocess.run([sys.executable, "-m", "edmbench", "--version"], capture_output=True, text=True,
                         check=True, cwd=Path(tempfile.gettempdir()))
    assert out.stdout.startswith("edmbench ") and str(REPO / "pretrained") in out.stdout


@pytest.mark.slow  # ~15 s idle (build + install + checks); .ci/run does the same with a fresh venv
def test_wheel_carries_the_shipped_data(tmp_path):
    """Build the wheel from a copy of the sources, install it (no -e) into a folder, and run
    tests/core/wheel_check.py from another folder with the installed copy first on the path."""
    src = tmp_path / "src"
    src.mkdir()
    for name in WHEEL_SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__", "_data")}
                                         if (REPO / name).is_dir() else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("edmbench-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    expected = {f"edmbench/_data/{p.relative_to(REPO)}" for d in ("pretrained", "studies")
                for p in (REPO / d).rglob("*") if p.is_file()}
    assert expected <= names, sorted(expected - names)
    assert "edmbench/_data/pretrained/manifest.toml" in names
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True, capture_output=True)
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, REPO / "tests" / "core" / "wheel_check.py"], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wheel check passed" in out.stdout
