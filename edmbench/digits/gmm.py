"""The exact companion: a class-conditional Gaussian mixture fitted to the digits train split.

One full-covariance Gaussian per class (scikit-learn ``GaussianMixture``), weighted by class frequency, with
``reg_covar = (1/8)^2 / 12``: the variance of uniform de-quantisation noise over one grey level (the 17
levels are 1/8 apart in [-1, 1]), which keeps always-background pixels non-degenerate. On the held-out split
one component per class had the best log-likelihood among 1-4 components per class and
reg_covar in {1e-3, 3e-3, 1e-2, 3e-2} (measured; see docs/embedded.md).

Its denoiser, ``edmbench.denoisers.analytic.GaussianMixtureDenoiser``, is the exact posterior mean, so any
gap between its samples and the mixture is pure sampler error.

    python -m edmbench.digits.gmm --out pretrained/digits-gmm.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from edmbench.digits.data import IMAGE_SHAPE, NUM_CLASSES, load_split

QUANTISATION_VARIANCE = (1 / 8) ** 2 / 12


def fit_digits_gmm(components_per_class: int = 1, reg_covar: float = QUANTISATION_VARIANCE, seed: int = 0):
    """Fit ``components_per_class`` Gaussians to each class of the train split; returns the exact denoiser."""
    from sklearn.mixture import GaussianMixture

    from edmbench.denoisers.analytic import GaussianMixtureDenoiser

    if components_per_class < 1:
        raise ValueError(f"components_per_class must be >= 1, got {components_per_class}")
    train = load_split("train")
    x = train.images.reshape(len(train), -1).double().numpy()
    y = train.labels.numpy()
    weights, means, covs, classes = [], [], [], []
    for c in range(NUM_CLASSES):
        members = x[y == c]
        gm = GaussianMixture(components_per_class, covariance_type="full", reg_covar=reg_covar,
                             random_state=seed, n_init=2).fit(members)
        weights.append(gm.weights_ * len(members) / len(x))
        means.append(gm.means_)
        covs.append((gm.covariances_ + gm.covariances_.transpose(0, 2, 1)) / 2)  # exactly symmetric
        classes += [c] * components_per_class
    return GaussianMixtureDenoiser(np.concatenate(weights), np.concatenate(means), np.concatenate(covs),
                                   image_shape=IMAGE_SHAPE, component_classes=classes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fit the digits Gaussian mixture (exact denoiser).")
    parser.add_argument("--out", default="pretrained/digits-gmm.npz")
    parser.add_argument("--components-per-class", type=int, default=1)
    args = parser.parse_args(argv)
    gmm = fit_digits_gmm(args.components_per_class)
    gmm.save_npz(args.out)
    print(f"saved {args.out}: {gmm.means.shape[0]} components, label_dim {gmm.label_dim}")


if __name__ == "__main__":
    main()
