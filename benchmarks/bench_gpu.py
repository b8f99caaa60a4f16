"""GPU benchmark, one command, no downloads: sampling throughput, precision modes, FID math, GPU tests.

1. Full-size released configurations with random weights (same cost as trained ones): CIFAR-10 DDPM++
   (``edm-cifar10-32x32-cond-vp``, 55.7M parameters) and ImageNet-64 ADM (``edm-imagenet-64x64-cond-adm``),
   deterministic Heun (``--num-steps`` 18 = 35 NFE) at batch ``--batch`` (512). Images/s of edmbench's
   ``generate_images`` (per-seed noise, quantised uint8 out) vs a sampler loop written from the EDM paper's
   Algorithm 2 the way NVIDIA's ``generate.py`` runs it (one batch of latents, float64 state, the network
   called directly), on the same network object, in fp32 / tf32 / bf16 / fp16 / channels_last, plus
   ``torch.compile`` of the backbone with ``--compile``.
2. FID math at D = 2048: one FID and the 10-group jackknife on the GPU (float64, batched ``eigvalsh``) vs
   the CPU.
3. The GPU-marked tests (``pytest -m gpu``).

``--smoke`` runs every code path on the CPU in seconds (the shipped digits model, tiny batch, D = 64, no
pytest); tests/benchmarks/test_bench_smoke.py runs it in the default suite so the script cannot rot.

    python benchmarks/bench_gpu.py            # on a GPU machine, < 5 minutes
    python benchmarks/bench_gpu.py --smoke    # CPU, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("edm-cifar10-32x32-cond-vp", "edm-imagenet-64x64-cond-adm")
SMOKE_MODEL = "digits-edm-uncond"
MODES = {  # name -> (backbone dtype, channels_last, tf32)
    "fp32": (torch.float32, False, False),
    "tf32": (torch.float32, False, True),
    "fp32 channels_last": (torch.float32, True, False),
    "bf16 channels_last": (torch.bfloat16, True, True),
    "fp16 channels_last": (torch.float16, True, True),
}


def build_random(name: str, device: torch.device):
    """A released configuration from the manifest with random weights (fp16-capable when on CUDA)."""
    from edmbench.denoisers.precond import build_precond
    from edmbench.pretrained import read_manifest

    entry = read_manifest()[name]
    torch.manual_seed(0)
    config = dict(entry.extra["config"], use_fp16=device.type == "cuda")
    return build_precond(entry.extra["precond"], config).eval().requires_grad_(False).to(device)


def algorithm2(net, latents: torch.Tensor, labels: torch.Tensor | None, num_steps: int,
               sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM Algorithm 2, deterministic (S_churn = 0), as NVIDIA's generate.py runs it: time steps
    t_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, t_N = 0, Heun steps
    with the second-order correction skipped at the last step; state in float64."""
    i = torch.arange(num_steps, dtype=torch.float64, device=latents.device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    t = (hi + i / (num_steps - 1) * (lo - hi)) ** rho
    t = torch.cat([t, torch.zeros(1, dtype=torch.float64, device=latents.device)])
    batch = latents.shape[0]

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return net(x.to(torch.float32), sigma.to(torch.float32).expand(batch), labels).to(torch.float64)

    x = latents.to(torch.float64) * t[0]
    for k in range(num_steps):
        t_cur, t_next = t[k], t[k + 1]
        d_cur = (x - denoise(x, t_cur)) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if k < num_steps - 1:
            d_prime = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, images: int, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (cuDNN autotuning, compilation)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return repeats * images / (time.perf_counter() - start)


@contextlib.contextmanager
def _tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def bench_sampling(net, name: str, args: argparse.Namespace, device: torch.device, modes: list[str]) -> None:
    from edmbench.generate import generate_images
    from edmbench.sampling import SamplerConfig

    config = SamplerConfig(sampler="heun", num_steps=args.num_steps)
    g = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(args.batch, *net.image_shape, generator=g).to(device)
    labels = (torch.eye(net.label_dim)[torch.randint(net.label_dim, (args.batch,), generator=g)].to(device)
              if net.label_dim else None)
    seeds = range(args.batch)

    def ours_fn():
        return list(generate_images(net, config, seeds, batch_size=args.batch, device=device,
                                    noise_device=device))
    params = sum(p.numel() for p in net.parameters()) / 1e6
    print(f"\n{name} ({params:.1f}M parameters), Heun {args.num_steps} steps = {config.nfe} NFE, batch "
          f"{args.batch}, {args.repeats} timed batch(es)")
    print(f"  {'mode':22s}{'edmbench img/s':>16s}{'Algorithm 2 img/s':>19s}{'ratio':>8s}")
    for mode in modes:
        dtype, channels_last, tf32 = MODES[mode]
        if dtype == torch.float16 and device.type != "cuda":
            continue
        net.set_precision(dtype, channels_last=channels_last)
        with _tf32(tf32), torch.no_grad():
            ours = _rate(ours_fn, args.batch, args.repeats, device)
            theirs = _rate(lambda: algorithm2(net, latents, labels, args.num_steps), args.batch, args.repeats,
                           device)
        print(f"  {mode:22s}{ours:16.1f}{theirs:19.1f}{ours / theirs:8.3f}")
    net.set_precision(torch.float32)
    if args.compile:
        net.backbone = torch.compile(net.backbone)
        with torch.no_grad():
            ours = _rate(ours_fn, args.batch, args.repeats, device)
        print(f"  {'fp32 torch.compile':22s}{ours:16.1f}")


def bench_fid_math(dim: int, num_images: int, devices: list[str]) -> None:
    from edmbench.metrics.fid import FIDStream
    from edmbench.metrics.stats import StreamingStats

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scale = np.arange(1, dim + 1) ** -0.5
    reference = StreamingStats().update((rng.normal(size=(num_images, dim)) * scale) @ q.T).to_reference()
    rows = (rng.normal(size=(num_images, dim)) * scale * 1.1) @ q.T + 0.05
    _ = reference.sqrt_sigma
    print(f"\nFID math, D = {dim}, {num_images} rows, 10 groups (float64)")
    for device in devices:
        stream = FIDStream(reference, groups=10, device=device)
        stream.update(rows)
        stream.flush()
        one = FIDStream(reference, groups=1, device=device)
        one.update(rows)
        one.flush()
        one.jackknife()  # warm-up (CUDA kernels, cuSOLVER handles)
        _sync(torch.device(device))
        start = time.perf_counter()
        fid = one.jackknife().full
        t_one = time.perf_counter() - start
        start = time.perf_counter()
        jack = stream.jackknife()
        t_jack = time.perf_counter() - start
        print(f"  {device:5s}: one FID {t_one:7.3f} s, jackknife {t_jack:7.3f} s  (FID {fid:.8f}, "
              f"jackknife full {jack.full:.8f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every code path on the CPU, in seconds")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--num-steps", type=int, default=18, help="Heun steps (18 = 35 NFE)")
    parser.add_argument("--repeats", type=int, default=1, help="timed batches per mode (after one warm-up)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the backbone")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m gpu")
    args = parser.parse_args(argv)
    if args.smoke:
        from edmbench.pretrained import load

        args.batch, args.num_steps, args.repeats = 2, 2, 1
        device = torch.device("cpu")
        net = load(SMOKE_MODEL)
        bench_sampling(net, SMOKE_MODEL, args, device, ["fp32 channels_last"])
        bench_fid_math(64, 300, ["cpu"])
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device: run with --smoke on a CPU machine", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}")
    for name in MODELS:
        net = build_random(name, device)
        bench_sampling(net, name, args, device, args.modes)
        del net
        torch.cuda.empty_cache()
    bench_fid_math(2048, 4000, ["cuda", "cpu"])
    if not args.skip_tests:
        print("\npytest -m gpu:", flush=True)
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], cwd=ROOT,
                              timeout=600).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
