"""Shared fixtures for the metrics tests: the deterministic ``random-conv`` extractor and image sets."""

import pytest
import torch


@pytest.fixture(scope="session")
def extractor():
    from edmbench.metrics.extractors import RANDOM_CONV
    from edmbench.metrics.features import get_extractor

    return get_extractor(RANDOM_CONV)


def _images(n: int, channels: int = 3, size: int = 16, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """uint8 images [n, C, size, size]: a random smooth brightness field plus noise (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(n, channels, 4, 4, generator=gen)
    field = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    x = 0.5 * field + 0.2 * torch.randn(n, channels, size, size, generator=gen) + shift
    return (x * 127.5 + 128).clip(0, 255).to(torch.uint8)


@pytest.fixture(scope="session")
def make_images():
    return _images


class UInt8Dataset(torch.utils.data.Dataset):
    """Items are uint8 3xHxW tensors (greyscale repeated), the input torch-fidelity accepts as a Dataset."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


@pytest.fixture(scope="session")
def as_dataset():
    return UInt8Dataset


@pytest.fixture(scope="session")
def gaussian():
    """Exact Gaussian denoiser on 3x8x8 images (per-pixel means in [-0.6, 0.6], std 0.3): cheap to sample."""
    from edmbench.denoisers.analytic import GaussianDenoiser

    mean = torch.empty(3, 8, 8).uniform_(-0.6, 0.6, generator=torch.Generator().manual_seed(0))
    return GaussianDenoiser((3, 8, 8), mean=mean, std=0.3)


@pytest.fixture(scope="session")
def gaussian_data(gaussian):
    """300 data images drawn from the same Gaussian, quantised to uint8 [N, 3, 8, 8]."""
    from edmbench.generate import quantize

    noise = torch.randn(300, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return quantize(gaussian.mean + gaussian.std * noise)
