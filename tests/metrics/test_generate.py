"""Seeds -> uint8 batches: EDM quantisation, per-seed invariance, class policies, PNG layout."""

import numpy as np
import pytest
import torch
from PIL import Image

from edmbench.denoisers.analytic import GaussianMixtureDenoiser
from edmbench.denoisers.base import CountingDenoiser
from edmbench.generate import (
    ImageBatch,
    format_seeds,
    generate_images,
    parse_seeds,
    png_path,
    quantize,
    save_png,
)
from edmbench.sampling import SamplerConfig, sample
from edmbench.sampling.noise import NoiseSource


def _mixture(channels=3, label_dim=0):
    # two well-separated components in [-1, 1]-ish pixel space; component k has class k when conditional
    d = channels * 4 * 4
    means = np.stack([np.full(d, -0.5), np.full(d, 0.5)])
    covs = np.stack([0.04 * np.eye(d), 0.09 * np.eye(d)])
    return GaussianMixtureDenoiser([0.5, 0.5], means, covs, image_shape=(channels, 4, 4),
                                   component_classes=[0, 1] if label_dim else None)


def test_quantize_is_edm_formula():
    x = torch.tensor([-1.0, 0.0, 1.0, -2.0, 3.0, (0.999 - 128) / 127.5, (1.0 - 128) / 127.5, 0.5 / 127.5],
                     dtype=torch.float64)
    # edm-facts 3 / 9.14: -1 -> 0, 0 -> 128, 1 -> 255; truncation, not rounding, of 127.5 x + 128
    expected = np.floor(np.clip(127.5 * x.numpy() + 128, 0, 255)).astype(np.uint8)
    got = quantize(x)
    assert got.dtype == torch.uint8 and got.tolist() == expected.tolist()
    assert got[:3].tolist() == [0, 128, 255] and got[5:].tolist() == [0, 1, 128]
    with pytest.raises(ValueError, match="NaN"):
        quantize(torch.tensor([0.0, float("nan")]))


def test_parse_seeds_like_edm():
    assert list(parse_seeds("0-3")) == [0, 1, 2, 3] and isinstance(parse_seeds("0-49999"), range)
    assert parse_seeds("1,2,5-7") == [1, 2, 5, 6, 7]
    assert list(parse_seeds(range(3))) == [0, 1, 2] and parse_seeds(4) == [4]
    assert format_seeds(parse_seeds("0-49999")) == "0-49999"
    assert format_seeds([1, 2, 5, 6, 7, 9]) == "1-2,5-7,9"
    for bad in ("3-1", "a-b", "1,,2"):
        with pytest.raises(ValueError, match="seed range"):
            parse_seeds(bad)


def test_batches_match_direct_sampling_and_count_nfe():
    denoiser, config = _mixture(), SamplerConfig(sampler="heun", num_steps=5)
    (batch,) = generate_images(denoiser, config, [7, 8], batch_size=4)
    assert isinstance(batch, ImageBatch) and batch.seeds == [7, 8] and batch.class_labels is None
    assert batch.images.shape == (2, 3, 4, 4) and batch.images.dtype == torch.uint8
    assert batch.nfe == 9  # Heun, final Euler step: 2N - 1 (edm-facts 1.1)
    source = NoiseSource([7, 8])
    direct = sample(denoiser, config, source.latents((3, 4, 4)), noise_source=source)
    assert torch.equal(batch.images, quantize(direct.x))


def test_images_depend_only_on_their_seed():
    denoiser = _mixture()
    config = SamplerConfig(sampler="heun", num_steps=6, s_churn=20.0)  # stochastic: step noise per seed
    seeds = parse_seeds("0-9")
    big = torch.cat([b.images for b in generate_images(denoiser, config, seeds, batch_size=10)])
    small = torch.cat([b.images for b in generate_images(denoiser, config, seeds, batch_size=3)])
    assert torch.equal(big, small)  # exact on CPU (design.md: same path, different batching)
    shifted = torch.cat([b.images for b in generate_images(denoiser, config, seeds[5:], batch_size=2)])
    assert torch.equal(big[5:], shifted)


def test_generation_is_lazy():
    counting = CountingDenoiser(_mixture())
    stream = generate_images(counting, SamplerConfig(sampler="euler", num_steps=4), range(100), batch_size=10)
    next(stream)
    assert counting.calls == 4  # one batch sampled, nine still to come


def test_class_policies_follow_edm_draw_order():
    denoiser = _mixture(label_dim=2)
    config = SamplerConfig(sampler="heun", num_steps=5, s_churn=10.0)
    seeds = [3, 4, 5, 6]
    (rand,) = generate_images(denoiser, config, seeds)
    source = NoiseSource(seeds)
    source.latents((3, 4, 4))  # per seed: latents first, then one label draw (edm-facts 3)
    assert torch.equal(rand.class_labels, source.class_labels(2))
    (fixed,) = generate_images(denoiser, config, seeds, class_policy=1)
    assert fixed.class_labels[:, 1].tolist() == [1.0] * 4
    # a fixed class still draws the random label first, so the step noise is unchanged (EDM)
    source = NoiseSource(seeds)
    latents = source.latents((3, 4, 4))
    source.class_labels(2)
    direct = sample(denoiser, config, latents, noise_source=source, class_labels=fixed.class_labels)
    assert torch.equal(fixed.images, quantize(direct.x))
    (uncond,) = generate_images(denoiser, config, seeds, class_policy=None)
    assert uncond.class_labels is None


def test_bad_class_policies_are_refused():
    config = SamplerConfig(sampler="euler", num_steps=2)
    with pytest.raises(ValueError, match="label_dim=0"):
        next(generate_images(_mixture(), config, [0], class_policy=1))
    with pytest.raises(ValueError, match="out of range"):
        next(generate_images(_mixture(label_dim=2), config, [0], class_policy=2))
    with pytest.raises(ValueError, match="class_policy must be"):
        next(generate_images(_mixture(), config, [0], class_policy="fixed"))
    with pytest.raises(ValueError, match="batch_size"):
        next(generate_images(_mixture(), config, [0], batch_size=0))


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (1, "L")])
def test_save_png_uses_edm_layout_and_round_trips(tmp_path, channels, mode):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, channels, 4, 5), dtype=torch.uint8, generator=gen)
    batch = ImageBatch(seeds=[5, 1234], images=images, class_labels=None, nfe=1)
    paths = save_png(batch, tmp_path)
    # edm-facts 3: {seed:06d}.png under {seed - seed % 1000:06d}/
    assert paths == [tmp_path / "000000" / "000005.png", tmp_path / "001000" / "001234.png"]
    assert png_path(tmp_path, 1234, subdirs=False) == tmp_path / "001234.png"
    for path, image in zip(paths, images, strict=True):
        with Image.open(path) as img:
            assert img.mode == mode
            back = np.asarray(img)
        back = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
        assert np.array_equal(back, image.numpy())


def test_generation_keeps_no_autograd_graph_and_leaves_grad_mode_alone():
    class Learnable(torch.nn.Module):
        """D(x; sigma) = w x / (1 + sigma^2) with a trainable w: autograd would track it."""

        sigma_min, sigma_max, image_shape, label_dim = 0.0, float("inf"), (1, 2, 2), 0

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, sigma, class_labels=None):
            s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1, 1)
            return (self.w * x / (1 + s**2)).to(torch.float32)

        def round_sigma(self, sigma):
            return torch.as_tensor(sigma, dtype=torch.float64)

    calls = []
    original = Learnable.forward

    def spy(self, x, sigma, class_labels=None):
        calls.append(torch.is_grad_enabled())
        return original(self, x, sigma, class_labels)

    Learnable.forward = spy
    stream = generate_images(Learnable(), SamplerConfig(sampler="euler", num_steps=2), range(4), batch_size=2)
    next(stream)
    assert calls == [False, False] and torch.is_grad_enabled()  # the caller's grad mode is untouched


def test_batches_are_cut_at_rungs():
    from edmbench.generate import batch_bounds

    assert list(batch_bounds(250, 64, [100, 200])) == [(0, 64), (64, 100), (100, 164), (164, 200), (200, 250)]
    assert list(batch_bounds(10, 4, [0, 10, 12])) == [(0, 4), (4, 8), (8, 10)]  # rungs outside (0, n) ignored


def test_a_pruned_evaluation_never_generates_past_its_rung(extractor):
    """Counted: batches of 64 against a rung at 100 would have sampled 128 images before the decision."""
    from edmbench.metrics.evaluate import score_rungs
    from edmbench.metrics.reference import compute_reference

    counting = CountingDenoiser(_mixture())
    config = SamplerConfig(sampler="euler", num_steps=4)
    reference = compute_reference([b.images for b in generate_images(_mixture(), config, range(500, 600))],
                                  extractor)
    rungs = score_rungs(counting, config, range(300), extractor, reference, [100, 200], batch_size=64)
    result = next(rungs)
    rungs.close()  # the pruner's decision at the first rung: stop
    assert result.num_images == 100
    assert counting.sample_evaluations == 100 * config.nfe  # exactly the rung's images, none past it
