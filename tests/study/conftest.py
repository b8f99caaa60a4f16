"""Tiny, exact study assets: an analytic Gaussian-mixture denoiser on 1x8x8 images, the ``random-conv``
extractor (no weights) and reference statistics from exact mixture samples. A trial takes milliseconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def _mixture(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    k, d = 3, 64
    means = gen.uniform(-0.6, 0.6, size=(k, d))
    covs = np.stack([np.eye(d) * 0.02 for _ in range(k)])
    return np.full(k, 1 / k), means, covs


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of ``gmm.npz`` (the denoiser) and ``ref.npz`` (random-conv statistics of 1024 exact samples)."""
    from edmbench.denoisers.analytic import GaussianMixtureDenoiser
    from edmbench.generate import quantize
    from edmbench.metrics.features import extract_features, get_extractor
    from edmbench.metrics.stats import ReferenceStats, StreamingStats, save_reference

    root = tmp_path_factory.mktemp("study-assets")
    weights, means, covs = _mixture()
    GaussianMixtureDenoiser(weights, means, covs, image_shape=(1, 8, 8)).save_npz(root / "gmm.npz")
    gen = np.random.default_rng(1)
    comp = gen.choice(len(weights), size=1024, p=weights)
    x = means[comp] + gen.standard_normal((1024, 64)) * np.sqrt(0.02)
    images = quantize(torch.from_numpy(x).reshape(-1, 1, 8, 8))
    stats = StreamingStats()
    stats.update(extract_features(get_extractor("random-conv"), images).numpy())
    save_reference(root / "ref.npz", ReferenceStats(mu=stats.mean, sigma=stats.cov, n=stats.n))
    return {"model": str(root / "gmm.npz"), "reference": str(root / "ref.npz")}


DEFAULT_SPACE = """
[space.num_steps]
type = "int"
low = 2
high = 12

[space.rho]
type = "float"
low = 2.0
high = 10.0
"""


def spec_text(assets: dict[str, str], name: str, *, search: str = "", space: str = DEFAULT_SPACE,
              extra: str = "", num_images: int = 32, rungs: str = "[8, 16]", n_trials: int = 6) -> str:
    """A tiny study spec on the mixture (``search`` adds lines to [search]; ``extra`` appends tables)."""
    return f"""
[study]
name = "{name}"

[denoiser]
model = "{assets['model']}"

[metric]
extractor = "random-conv"
reference = "{assets['reference']}"
num_images = {num_images}
rungs = {rungs}

[fixed]
sampler = "heun"

[budget]
n_trials = {n_trials}

[search]
n_startup_trials = 3
{search}
{space}
{extra}
"""


def write_spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """``python run_study.py ARGS`` in ``cwd`` (one torch thread, no progress bars)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([PYTHON, str(REPO / "run_study.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run_study.py {' '.join(args)} exited {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


POSTGRES_URL = os.environ.get("EDMBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url() -> str:
    """The test server's URL; skipped when unreachable, except under CI=true, where that is a failure."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    return POSTGRES_URL
