"""scikit-learn's bundled handwritten digits as the embedded default's dataset (no download).

``load_digits()`` ships 1,797 greyscale 8x8 images with 17 grey levels (0..16) and labels 0..9 inside the
scikit-learn wheel. Images are scaled linearly to [-1, 1] (``x / 8 - 1``), the range EDM models work in.
The train/held-out split is stratified by class and fixed by ``SPLIT_SEED``: everything shipped in
``pretrained/digits-*`` (EDM models, classifier, GMM, reference statistics) was fitted on the train split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SPLIT_SEED = 2024
HELD_OUT_FRACTION = 0.2
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
MAX_LEVEL = 16  # load_digits grey levels are integers 0..16

SPLITS = ("train", "held_out", "all")


@dataclass(frozen=True)
class DigitsSplit:
    """Images float32 ``[N, 1, 8, 8]`` in [-1, 1] and integer labels ``[N]`` (int64)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def one_hot(self) -> Tensor:
        """Class labels as one-hot float32 ``[N, 10]`` (EDM's ``class_labels`` convention)."""
        return torch.nn.functional.one_hot(self.labels, NUM_CLASSES).to(torch.float32)


def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # lazy: scikit-learn is only needed here

    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


def split_indices(num_items: int, labels: np.ndarray, seed: int = SPLIT_SEED,
                  held_out_fraction: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: in every class, a seeded permutation sends ``round(f * n_c)`` items to held-out."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(held_out_fraction * len(members)))
        held_out.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held_out))


def load_split(split: str = "train", seed: int = SPLIT_SEED) -> DigitsSplit:
    """Load ``"train"``, ``"held_out"`` or ``"all"`` of the digits, scaled to [-1, 1]."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    images, labels = _raw()
    if split != "all":
        train_idx, held_idx = split_indices(len(labels), labels, seed)
        idx = train_idx if split == "train" else held_idx
        images, labels = images[idx], labels[idx]
    x = torch.from_numpy(images / (MAX_LEVEL / 2) - 1.0).to(torch.float32).unsqueeze(1)
    return DigitsSplit(images=x, labels=torch.from_numpy(labels))


def from_uint8(images: Tensor) -> Tensor:
    """uint8 images (``edmbench.generate.quantize``) back to float32 [-1, 1] (``x / 127.5 - 1``)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.to(torch.float32) / 127.5 - 1.0
