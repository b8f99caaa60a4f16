"""The digits split: sizes, disjointness, stratification, scaling (exact facts of load_digits)."""

import numpy as np
import pytest
import torch

from edmbench.digits.data import load_split, split_indices


def test_split_sizes_disjoint_and_deterministic():
    train, held, full = load_split("train"), load_split("held_out"), load_split("all")
    assert len(full) == 1797  # sklearn load_digits: 1,797 images
    assert len(train) + len(held) == 1797
    labels = full.labels.numpy()
    a, b = split_indices(len(labels), labels)
    assert not set(a) & set(b)
    a2, _ = split_indices(len(labels), labels)
    np.testing.assert_array_equal(a, a2)
    # stratified: each class contributes round(0.2 * n_c) images to held-out
    for c in range(10):
        n_c = int((labels == c).sum())
        assert int((held.labels == c).sum()) == round(0.2 * n_c)


def test_scaling_to_minus_one_one_on_the_grey_levels():
    images = load_split("all").images
    assert images.shape[1:] == (1, 8, 8) and images.dtype == torch.float32
    assert images.min() == -1.0 and images.max() == 1.0
    levels = (images + 1) * 8  # integer grey levels 0..16
    assert torch.equal(levels, levels.round())


def test_bad_split_and_fraction_raise():
    with pytest.raises(ValueError, match="valid splits"):
        load_split("test")
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_indices(10, np.zeros(10, dtype=int), held_out_fraction=1.0)
