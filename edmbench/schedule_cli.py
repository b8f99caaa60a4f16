"""``edmbench schedule``: print a discretization's noise levels, or optimise one (GITS-style DP).

    edmbench schedule show --discretization logsnr --num-steps 6 [--endpoint sigma_min] [--rho R]
    edmbench schedule optimise --model digits-edm-uncond --sampler ipndm --num-steps 6 [--endpoint zero]
        [--num-samples 256] [--grid-size 60] [--substeps 4] [--out schedule.toml]

``optimise`` prints (or writes) a TOML snippet: a ``[fixed]`` block with ``discretization = "knots"`` and
the explicit ``sigmas``, and an ``[[enqueue]]`` block with the equivalent ``knot_k`` fractions, so the
schedule can be pasted into a spec or enqueued into a study that searches ``knot_k``; its cost in network
calls is stated.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from edmbench.sampling import DISCRETIZATIONS, SAMPLERS
    from edmbench.sampling.conventions import ENDPOINTS

    p = subparsers.add_parser("schedule", help="show a discretization's levels, or optimise a schedule")
    sub = p.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print the sigmas of a registered discretization")
    show.add_argument("--discretization", required=True, choices=DISCRETIZATIONS.names())
    show.add_argument("--num-steps", type=int, required=True)
    show.add_argument("--rho", type=float, help="edm/polynomial exponent (default: SamplerConfig's)")
    show.add_argument("--sigma-min", type=float)
    show.add_argument("--sigma-max", type=float)
    show.add_argument("--endpoint", choices=ENDPOINTS, default="zero")
    show.set_defaults(func=_show)
    opt = sub.add_parser("optimise", help="GITS-style dynamic programme over a Heun teacher trajectory")
    opt.add_argument("--model", required=True, help="manifest name or path of the denoiser")
    opt.add_argument("--sampler", required=True, choices=SAMPLERS.names())
    opt.add_argument("--num-steps", type=int, required=True)
    opt.add_argument("--endpoint", choices=ENDPOINTS, default="zero")
    opt.add_argument("--sigma-min", type=float, default=0.002)
    opt.add_argument("--sigma-max", type=float, default=80.0)
    opt.add_argument("--num-samples", type=int, default=256, help="teacher seeds (default 256)")
    opt.add_argument("--seed-start", type=int, default=0)
    opt.add_argument("--grid-size", type=int, default=60, help="fine-grid levels (default 60)")
    opt.add_argument("--substeps", type=int, default=4, help="teacher Heun sub-steps per interval "
                     "(default 4)")
    opt.add_argument("--device", default="cpu")
    opt.add_argument("--out", help="write the TOML snippet here (default: print it)")
    opt.set_defaults(func=_optimise)


def _show(args: argparse.Namespace) -> int:
    from edmbench.sampling import SamplerConfig, sigmas_for

    knobs = {"rho": args.rho} if args.rho is not None else {}
    config = SamplerConfig.from_dict({"num_steps": args.num_steps, "discretization": args.discretization,
                                      "sigma_min": args.sigma_min, "sigma_max": args.sigma_max,
                                      "endpoint": args.endpoint, **knobs})
    print("sigmas = [" + ", ".join(f"{s:.10g}" for s in sigmas_for(config).tolist()) + "]")
    return 0


def _check(args: argparse.Namespace) -> None:
    for name in ("num_steps", "num_samples", "grid_size", "substeps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.sigma_min < args.sigma_max:
        raise ValueError(f"need 0 < --sigma-min < --sigma-max, got {args.sigma_min}, {args.sigma_max}")


def snippet(result) -> str:
    """The TOML text of an ``OptimisedSchedule``: cost comment, ``[fixed]`` sigmas, ``[[enqueue]]`` knots."""
    from edmbench.sampling.knots import knot_params

    c = result.convention
    sigmas = ", ".join(f"{s:.10g}" for s in result.sigmas)
    knots = ", ".join(f"{k} = {v:.12g}" for k, v in knot_params(result.levels).items())
    label = f"GITS-style DP ({result.sampler}, {result.num_steps} steps, {c.label})"
    return (f"# {label}: accumulated local error {result.cost:.4g} (rho = 7: {result.rho7_cost:.4g})\n"
            f"# cost: {result.network_calls} network calls per seed x {result.num_samples} seeds = "
            f"{result.total_network_calls} network calls\n"
            f"[fixed]\nsampler = \"{result.sampler}\"\nnum_steps = {result.num_steps}\n"
            f"endpoint = \"{c.endpoint}\"\ndiscretization = \"knots\"\nsigmas = [{sigmas}]\n\n"
            f"# or, in a study that searches knot_k with discretization = \"knots\", "
            f"sigma_min = {float(result.levels[-1]):.10g} and sigma_max = {float(result.levels[0]):.10g}:\n"
            f"[[enqueue]]\nlabel = \"{label}\"\nparams = {{ {knots} }}\n")


def _optimise(args: argparse.Namespace) -> int:
    _check(args)
    from edmbench import pretrained
    from edmbench.sampling.conventions import Convention
    from edmbench.sampling.optimise import optimise_schedule

    denoiser = pretrained.load(args.model, device=args.device)
    result = optimise_schedule(denoiser, args.sampler, args.num_steps, sigma_min=args.sigma_min,
                               sigma_max=args.sigma_max, convention=Convention(args.endpoint),
                               num_samples=args.num_samples, seed_start=args.seed_start,
                               grid_size=args.grid_size, substeps=args.substeps, device=args.device)
    text = snippet(result)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
