"""Shared fixtures for the embedded-default tests: the shipped files and the FID-digits extractor."""

import pytest
import torch

from edmbench.pretrained import PRETRAINED_DIR

EDM_MODELS = ("digits-edm-uncond", "digits-edm-cond")


@pytest.fixture(scope="session")
def extractor():
    from edmbench.metrics.features import get_extractor

    return get_extractor("digits-classifier")


@pytest.fixture(scope="session")
def train_uint8():
    from edmbench.digits.data import load_split
    from edmbench.generate import quantize

    return quantize(load_split("train").images)


@pytest.fixture(scope="session")
def shipped():
    """``shipped(name)`` loads a shipped model, skipping when it is absent."""
    return load_shipped


def load_shipped(name: str):
    """``edmbench.load(name)``, or skip with a reason when the shipped file is not in this checkout."""
    from edmbench.pretrained import read_manifest

    entry = read_manifest().get(name)
    if entry is None or not (PRETRAINED_DIR / entry.file).is_file():
        pytest.skip(f"{name} is not shipped in this checkout (train it: docs/embedded.md)")
    import edmbench

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return edmbench.load(name)
