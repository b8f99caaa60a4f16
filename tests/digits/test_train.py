"""The training recipe: EDM's loss and EMA, checked against closed forms."""

import math

import pytest
import torch

from edmbench.denoisers.analytic import GaussianDenoiser
from edmbench.digits.train import Recipe, build_network, edm_loss, ema_beta


def test_edm_loss_of_the_ideal_denoiser_is_one():
    """For data N(0, sigma_data^2 I) the exact denoiser's error at sigma has variance
    sigma_data^2 sigma^2 / (sigma^2 + sigma_data^2) = 1 / lambda(sigma) (EDM Eq. 8 weighting), so every
    weighted squared error is chi^2_1 and the expected loss is exactly 1 for any P_mean, P_std."""
    recipe = Recipe(sigma_data=0.75, p_mean=-1.2, p_std=1.2)
    ideal = GaussianDenoiser(image_shape=(1, 8, 8), mean=0.0, std=recipe.sigma_data, out_dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    images = recipe.sigma_data * torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64)
    loss = float(edm_loss(lambda x, s, labels: ideal(x, s), images, None, recipe, gen))
    # mean of n * 64 chi^2_1 terms (independent given sigma): standard error sqrt(2 / (n * 64)); 5 sigma
    assert abs(loss - 1.0) < 5 * math.sqrt(2 / (n * 64))


def test_ema_half_life_ramps_up_then_holds():
    recipe = Recipe(batch_size=128, ema_halflife_images=50_000, ema_rampup_ratio=0.05)
    # after the ramp: beta^(halflife / batch) = 1/2 by definition of the half-life
    assert ema_beta(recipe, 10_000_000) ** (50_000 / 128) == pytest.approx(0.5, rel=1e-12)
    # during the ramp the half-life is rampup_ratio * images seen
    seen = 128 * 1000
    assert ema_beta(recipe, seen) ** (0.05 * seen / 128) == pytest.approx(0.5, rel=1e-12)


def test_recipe_validation_and_network_shape():
    with pytest.raises(ValueError, match="valid: uncond, cond"):
        Recipe(variant="both")
    with pytest.raises(ValueError, match="iterations"):
        Recipe(iterations=0)
    net = build_network(Recipe(variant="cond"))
    assert net.label_dim == 10 and net.image_shape == (1, 8, 8) and net.sigma_data == 0.75
    x = torch.randn(3, 1, 8, 8)
    assert net(x, torch.ones(3), torch.eye(10)[:3]).shape == x.shape


def test_checkpoint_at_k_equals_a_run_of_k_iterations():
    """The learning rate and EMA depend only on the iteration count, so stopping early is exact (CPU)."""
    from edmbench.digits.train import train

    torch.set_num_threads(1)
    snapshots = {}

    def capture(ema, iterations, record):
        snapshots[iterations] = {k: v.clone() for k, v in ema.state_dict().items()}

    train(Recipe(iterations=4, batch_size=8), log=lambda s: None, checkpoint=capture, log_every=2)
    short, _ = train(Recipe(iterations=2, batch_size=8), log=lambda s: None)
    for key, value in short.state_dict().items():
        assert torch.equal(value, snapshots[2][key]), key
    assert not all(torch.equal(snapshots[2][k], snapshots[4][k]) for k in snapshots[2])
