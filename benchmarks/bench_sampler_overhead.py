"""Sampler overhead: wall time of sampling / (NFE x median time of one denoiser call), per sampler.

Two ratios per row: ``ratio`` uses the median of standalone calls measured just before the run;
``in-run`` divides by the time actually spent inside the denoiser during the run (robust when other
processes share the CPU, since both sides see the same load).

Two denoisers, side by side in one run, batch 64 on CPU (one thread):
- a small EDM-preconditioned conv network (~0.5M parameters, 3x32x32; target ratio <= 1.05),
- the analytic Gaussian-mixture denoiser (64-dim, 10 components), where D is cheap and the sampler's own
  float64 arithmetic and per-seed noise draws show.

Run: ``.venv/bin/python benchmarks/bench_sampler_overhead.py [--steps 8] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from edmbench.denoisers.analytic import GaussianMixtureDenoiser
from edmbench.denoisers.base import as_sigma_tensor
from edmbench.sampling import NoiseSource, SamplerConfig, get_sampler, sample, sampler_names

SIGMA_DATA = 0.5


class SmallConvDenoiser(nn.Module):
    """EDM preconditioning around a few 3x3 convolutions (one 2x down/up level)."""

    sigma_min, sigma_max, label_dim = 0.0, float("inf"), 0

    def __init__(self, channels: int = 128, image_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        c = image_shape[0]
        self.image_shape = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, c, 3, padding=1),
        )

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma, dtype=torch.float64)

    def forward(self, x, sigma, class_labels=None):
        s = as_sigma_tensor(sigma, x).to(torch.float32)
        x = x.to(torch.float32)
        c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
        c_out = s * SIGMA_DATA / (s**2 + SIGMA_DATA**2).sqrt()
        c_in = 1 / (SIGMA_DATA**2 + s**2).sqrt()
        return (c_skip * x + c_out * self.net(c_in * x)).to(torch.float32)


def digits_like_gmm(dim: int = 64, components: int = 10) -> GaussianMixtureDenoiser:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(components, dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    covs = a @ a.transpose(1, 2) * 0.1 + 1e-3 * torch.eye(dim, dtype=torch.float64)
    means = torch.randn(components, dim, generator=g, dtype=torch.float64) * 0.5
    return GaussianMixtureDenoiser(torch.ones(components), means, covs, image_shape=(1, 8, 8))


class TimedDenoiser:
    """Forwards to a denoiser and accumulates the wall time spent inside its calls."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, sigma, class_labels=None):
        start = time.perf_counter()
        out = self.inner(x, sigma, class_labels)
        self.seconds += time.perf_counter() - start
        return out


def median_call_time(denoiser, noise: torch.Tensor, repeats: int = 7) -> float:
    """Median seconds of one D(x; sigma) call on float64 x (what the samplers pass)."""
    x = noise.to(torch.float64) * 2.0
    sigma = torch.tensor(2.0, dtype=torch.float64)
    times = []
    with torch.no_grad():
        denoiser(x, sigma)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            denoiser(x, sigma)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def configs(num_steps: int) -> list[tuple[str, SamplerConfig]]:
    rows = [(name, SamplerConfig(sampler=name, num_steps=num_steps)) for name in sampler_names()]
    churn = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
    rows += [(f"{name} +churn", SamplerConfig(sampler=name, num_steps=num_steps, **churn))
             for name in sampler_names() if get_sampler(name).churn]
    return rows


def bench(label: str, denoiser, batch: int, num_steps: int, repeats: int) -> None:
    seeds = list(range(batch))
    noise = NoiseSource(seeds).latents(denoiser.image_shape)
    print(f"\n{label}: batch {batch}, num_steps {num_steps}")
    print(f"{'sampler':<22} {'nfe':>4} {'sample s':>9} {'call ms':>8} {'ratio':>6} {'in-run':>6}")
    for name, config in configs(num_steps):
        call = median_call_time(denoiser, noise)
        walls, in_run = [], []
        for _ in range(repeats):
            ns = NoiseSource(seeds)  # fresh streams; creating them is not part of the sampling loop
            timed = TimedDenoiser(denoiser)
            start = time.perf_counter()
            result = sample(timed, config, noise, noise_source=ns)
            walls.append(time.perf_counter() - start)
            in_run.append(walls[-1] / timed.seconds)
        wall = statistics.median(walls)
        ratio = wall / (result.nfe * call)
        print(f"{name:<22} {result.nfe:>4} {wall:>9.3f} {call * 1e3:>8.2f} {ratio:>6.3f} "
              f"{statistics.median(in_run):>6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = SmallConvDenoiser().eval()
    params = sum(p.numel() for p in net.parameters())
    bench(f"small conv network ({params / 1e6:.2f}M params, float32)", net, args.batch, args.steps,
          args.repeats)
    bench("analytic Gaussian mixture (64-dim, 10 components)", digits_like_gmm(), args.batch, args.steps,
          args.repeats)


if __name__ == "__main__":
    main()
