"""Checkpoint loading and forward throughput of a full-size CIFAR-10 DDPM++ network (random weights).

Measured side by side in one run:
1. load time of the ``edm-cifar10-32x32-cond-vp`` configuration (55.7M parameters) from an EDM-format
   pickle (restricted unpickler) vs from edmbench's native safetensors file;
2. forward throughput at batch 64: fp32 NCHW vs fp32 channels_last (CPU), plus fp16 / bf16 when CUDA is
   available. Output stays float32 in every mode; the max deviation from fp32 NCHW is printed.

    python benchmarks/bench_load.py [--batch 64] [--iters 2] [--threads 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from edmbench.denoisers.native import load_native, save_native
from edmbench.denoisers.pickles import load_edm_pickle
from edmbench.denoisers.precond import Precond, build_precond
from edmbench.pretrained import read_manifest

MODEL = "edm-cifar10-32x32-cond-vp"
WRITER = Path(__file__).resolve().parents[1] / "tests" / "checkpoints" / "edm_format.py"


def edm_format():
    """The EDM persistence-format writer shared with the tests (loaded by path)."""
    spec = importlib.util.spec_from_file_location("edm_format", WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_load(net: Precond, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pkl, native = Path(tmp) / f"{MODEL}.pkl", Path(tmp) / f"{MODEL}.safetensors"
        pkl.write_bytes(edm_format().edm_pickle_bytes(net))
        save_native(net, native)
        t_pkl, a = timed(lambda: load_edm_pickle(pkl), repeats)
        t_nat, b = timed(lambda: load_native(native), repeats)
        same = all(
            torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        )
        print(
            f"load  pickle {pkl.stat().st_size / 2**20:.0f} MiB: {t_pkl:.3f} s | native "
            f"{native.stat().st_size / 2**20:.0f} MiB: {t_nat:.3f} s | pickle/native = {t_pkl / t_nat:.2f}x "
            f"| identical weights: {same}"
        )


def throughput(net: Precond, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor, iters: int):
    """Images per second of ``net`` on the batch (one warm-up call) and its output."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.no_grad():
        out = net(x, sigma, labels)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            out = net(x, sigma, labels)
        sync()
    return iters * x.shape[0] / (time.perf_counter() - start), out


def bench_forward(net: Precond, batch: int, iters: int, device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *net.image_shape, generator=g).to(device)
    sigma = torch.exp(torch.randn(batch, generator=g) * 1.2 - 1.2).to(device)
    labels = torch.eye(net.label_dim)[torch.randint(net.label_dim, (batch,), generator=g)].to(device)
    modes = [("fp32 NCHW", torch.float32, False), ("fp32 channels_last", torch.float32, True)]
    if device.type == "cuda":
        modes += [("fp16 channels_last", torch.float16, True), ("bf16 channels_last", torch.bfloat16, True)]
    base, ref = None, None
    for label, dtype, channels_last in modes:
        net.set_precision(dtype, channels_last=channels_last)
        rate, out = throughput(net, x, sigma, labels, iters)
        base, ref = (rate, out) if base is None else (base, ref)
        err = (out - ref).abs().max().item()
        print(
            f"forward {label:20s} batch {batch}: {rate:8.2f} img/s | vs fp32 NCHW {rate / base:.2f}x | "
            f"out {out.dtype}, max |diff| {err:.2e}"
        )
    net.set_precision(torch.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=2, help="timed forward calls per mode (after 1 warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="timed loads per format")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    entry = read_manifest()[MODEL]
    torch.manual_seed(0)
    # on CUDA, mark the net fp16-capable so the fp16 mode can be timed (the released CIFAR nets are fp32)
    config = dict(entry.extra["config"], use_fp16=device.type == "cuda")
    net = build_precond(entry.extra["precond"], config).eval().requires_grad_(False)
    print(
        f"{MODEL}: {sum(p.numel() for p in net.parameters()):,} parameters, torch {torch.__version__}, "
        f"{args.threads} thread(s), device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    bench_load(net, args.repeats)
    bench_forward(net.to(device), args.batch, args.iters, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
