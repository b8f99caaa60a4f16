"""The package's shared pieces: light import, the Denoiser contract, counting, the CLI dispatcher."""

import subprocess
import sys

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
