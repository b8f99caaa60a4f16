"""``edmbench schedule``: print a discretization's noise levels, or optimise one (GITS-style DP).

    edmbench schedule show --discretization logsnr --num-steps 6 [--endpoint sigma_min] [--rho R]
    edmbench schedule optimise --model digits-edm-uncond --sampler ipndm [euler ...] --num-steps 6 [4 5 ...]
        [--endpoint zero] [--num-samples 256] [--grid-size 60] [--substeps 4] [--out schedule.toml]

``optimise`` prints (or writes) a TOML snippet: for one schedule a ``[fixed]`` block with ``discretization =
"knots"`` and the explicit ``sigmas``; for each schedule an ``[[enqueue]]`` block with the equivalent
``knot_k`` fractions (and its sampler, num_steps, sigma_min), so a schedule can be pasted into a spec or
enqueued into a study that searches ``knot_k``; its cost in network calls is stated. Several solvers and step
counts share one teacher run.
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
    show.add_argument("--sigma-min", type=float, help="default: the discretization's")
    show.add_argument("--sigma-max", type=float, help="default: the discretization's")
    show.add_argument("--endpoint", choices=ENDPOINTS, help="default: SamplerConfig's")
    show.set_defaults(func=_show)
    opt = sub.add_parser("optimise", help="GITS-style dynamic programme over a Heun teacher trajectory")
    opt.add_argument("--model", required=True, help="manifest name or path of the denoiser")
    opt.add_argument("--sampler", required=True, nargs="+", choices=SAMPLERS.names(),
                     help="one or more solvers (one teacher serves them all)")
    opt.add_argument("--num-steps", type=int, required=True, nargs="+", help="one or more step counts")
    # defaults (None here) are the owners': Convention's end point, optimise_schedule's keyword defaults
    opt.add_argument("--endpoint", choices=ENDPOINTS, help="default: EDM's (zero)")
    opt.add_argument("--sigma-min", type=float, help="default: optimise_schedule's (EDM's range)")
    opt.add_argument("--sigma-max", type=float, help="default: optimise_schedule's (EDM's range)")
    opt.add_argument("--num-samples", type=int, help="teacher seeds (default: optimise_schedule's)")
    opt.add_argument("--seed-start", type=int, help="first teacher seed (default: optimise_schedule's)")
    opt.add_argument("--grid-size", type=int, help="fine-grid levels (default: optimise_schedule's)")
    opt.add_argument("--substeps", type=int, help="teacher Heun sub-steps per interval (default: "
                     "optimise_schedule's)")
    opt.add_argument("--device", default="cpu")
    opt.add_argument("--out", help="write the TOML snippet here (default: print it)")
    opt.set_defaults(func=_optimise)


def _show(args: argparse.Namespace) -> int:
    from edmbench.sampling import SamplerConfig, sigmas_for

    given = {k: getattr(args, k) for k in ("rho", "sigma_min", "sigma_max", "endpoint")}
    config = SamplerConfig.from_dict({"num_steps": args.num_steps, "discretization": args.discretization,
                                      **{k: v for k, v in given.items() if v is not None}})
    print("sigmas = [" + ", ".join(f"{s:.10g}" for s in sigmas_for(config).tolist()) + "]")
    return 0


OPTIMISE_OPTIONS = ("sigma_min", "sigma_max", "num_samples", "seed_start", "grid_size", "substeps", "device")


def _check(args: argparse.Namespace) -> dict:
    """The given optimiser options (None = optimise_schedule's default), counts checked >= 1."""
    for name in ("num_steps", "num_samples", "grid_size", "substeps"):
        value = getattr(args, name)
        value = min(value) if isinstance(value, list) else value
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    lo, hi = args.sigma_min, args.sigma_max
    if (lo is not None and lo <= 0) or (None not in (lo, hi) and not lo < hi):
        raise ValueError(f"need 0 < --sigma-min < --sigma-max, got {lo}, {hi}")
    return {k: getattr(args, k) for k in OPTIMISE_OPTIONS if getattr(args, k) is not None}


def _label(result) -> str:
    return f"GITS-style DP ({result.sampler}, {result.num_steps} steps, {result.convention.label})"


def _enqueue_block(result) -> str:
    """An ``[[enqueue]]`` of the schedule as searchable knots: every knob it sets, so it fits a study (or
    a ``[sweep]`` over num_steps) that searches sampler, discretization, sigma_min and ``[space.knots]``;
    drop the keys a study fixes. A starting point, not a baseline (``baseline = false``)."""
    from edmbench.sampling.knots import knot_params

    knots = ", ".join(f"{k} = {v:.12g}" for k, v in knot_params(result.levels).items())
    return (f"[[enqueue]]\nlabel = \"{_label(result)}\"\nbaseline = false\n"
            f"params = {{ sampler = \"{result.sampler}\", num_steps = {result.num_steps}, "
            f"discretization = \"knots\", sigma_min = {float(result.levels[-1]):.12g}, {knots} }}\n")


def snippet(results) -> str:
    """The TOML text of ``OptimisedSchedule`` results: cost comments, the ``[fixed]`` sigmas (one result),
    and one ``[[enqueue]]`` per result with the equivalent knots (fractions between sigma_min = its last
    non-zero level and sigma_max = its first)."""
    first = results[0]
    lines = [f"# {_label(r)}: accumulated local error {r.cost:.4g} (rho = 7: {r.rho7_cost:.4g})"
             for r in results]
    lines.append(f"# cost: {first.network_calls} network calls per seed x {first.num_samples} seeds = "
                 f"{first.total_network_calls} network calls"
                 + (" (one teacher and cost matrix for all of them)" if len(results) > 1 else ""))
    if len(results) == 1:
        sigmas = ", ".join(f"{s:.10g}" for s in first.sigmas)
        lines += ["[fixed]", f"sampler = \"{first.sampler}\"", f"num_steps = {first.num_steps}",
                  f"endpoint = \"{first.convention.endpoint}\"", "discretization = \"knots\"",
                  f"sigmas = [{sigmas}]", "",
                  "# or, in a study that searches knot_k with discretization = \"knots\", "
                  f"sigma_min = {float(first.levels[-1]):.10g} and "
                  f"sigma_max = {float(first.levels[0]):.10g}:"]
    return "\n".join(lines) + "\n" + "\n".join(_enqueue_block(r) for r in results)


def _optimise(args: argparse.Namespace) -> int:
    options = _check(args)
    from edmbench import pretrained
    from edmbench.sampling.conventions import Convention
    from edmbench.sampling.optimise import optimise_schedules

    denoiser = pretrained.load(args.model, device=args.device)
    convention = Convention() if args.endpoint is None else Convention(args.endpoint)
    results = optimise_schedules(denoiser, args.sampler, args.num_steps, convention=convention, **options)
    text = snippet(results)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
