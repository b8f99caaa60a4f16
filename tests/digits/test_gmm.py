"""The exact companion ``digits-gmm``: one Gaussian per class fitted to the train split.

Oracle: with one component per class, the maximum-likelihood fit is the class sample mean and the class
(biased, 1/n) covariance plus ``reg_covar`` on the diagonal, and the weight is the class frequency.
"""

import numpy as np
import torch

from edmbench.digits.data import load_split
from edmbench.digits.gmm import QUANTISATION_VARIANCE


def test_shipped_gmm_is_the_per_class_gaussian_fit(shipped):
    gmm = shipped("digits-gmm")
    assert gmm.label_dim == 10 and gmm.image_shape == (1, 8, 8)
    train = load_split("train")
    x, y = train.images.reshape(len(train), -1).double().numpy(), train.labels.numpy()
    for c in range(10):
        members = x[y == c]
        k = int(np.flatnonzero(gmm.component_classes.numpy() == c)[0])
        np.testing.assert_allclose(gmm.means[k].numpy(), members.mean(0), rtol=0, atol=1e-10)
        cov = np.cov(members, rowvar=False, bias=True) + QUANTISATION_VARIANCE * np.eye(64)
        np.testing.assert_allclose(gmm.covs[k].numpy(), cov, rtol=0, atol=1e-10)
        assert float(gmm.weights[k]) == np.float64(len(members)) / len(x)


def test_conditional_gmm_denoises_to_its_class_mean_at_huge_sigma(shipped):
    """As sigma -> inf the posterior mean tends to the prior mean: the class mean when a class is given."""
    gmm = shipped("digits-gmm")
    labels = torch.nn.functional.one_hot(torch.arange(10), 10).float()
    x = torch.zeros(10, 1, 8, 8)
    out = gmm(x, 1e6, labels).double().reshape(10, -1)
    expected = gmm.means[gmm.component_classes.argsort()]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)  # float32 output of O(1) values
