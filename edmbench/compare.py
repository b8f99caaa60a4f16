"""``edmbench compare``: two or more sampler settings on the same seeds, a table of paired differences.

    edmbench compare --denoiser digits-edm-uncond --ref pretrained/digits-train-stats.npz \\
        --extractor digits-classifier --class none --seeds 0-999 \\
        --setting sampler=heun,num_steps=18 --setting sampler=heun,num_steps=15

The first ``--setting`` is the reference row. Every setting is scored on the same seeds (common random
numbers); each difference to the reference carries its paired jackknife-t interval (seed groups,
:mod:`edmbench.metrics.paired`; ``--objective kid`` or a per-seed objective instead of FID), the
unpaired SE for contrast, a verdict word read off the interval, and
the images per setting that would separate the two at the measured paired variance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edmbench.metrics.paired import DEFAULT_LEVEL, paired_difference, single_estimate, unpaired_difference


def parse_setting(text: str) -> Any:
    """``"sampler=heun,num_steps=18,rho=7"`` -> a validated ``SamplerConfig`` (errors name the valid keys)."""
    from edmbench.metrics.cli import _literal
    from edmbench.sampling import SamplerConfig

    values = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--setting {text!r}: expected KEY=VALUE pairs separated by commas, e.g. "
                             "sampler=heun,num_steps=18")
        values[key.strip()] = _literal(value.strip())
    return SamplerConfig.from_dict(values)


def compare_settings(denoiser: Any, configs: list[Any], seeds: Any, extractor: Any, reference: Any, *,
                     level: float = DEFAULT_LEVEL, groups: int = 10, objective: str = "fid",
                     device: str = "cpu", **score_kwargs: Any) -> list[dict]:
    """One row per setting: its ``objective`` (a registered study objective: FID, KID, or any with per-seed
    values) with interval and, from the second on, the paired difference to the first (all on ``seeds``).
    Every objective's leave-one-group-out values come from its ``Score.loo``."""
    from edmbench.study.objectives import get_objective

    chosen = get_objective(objective)
    if chosen.cost:
        raise ValueError(f"objective {objective!r} is read from the sampler, not from images: "
                         "nothing to pair")
    finals = [_score(denoiser, c, seeds, extractor, reference, chosen, groups, level, device, score_kwargs)
              for c in configs]
    name, base = chosen.name, finals[0][1]
    rows = []
    for i, (config, (n, score)) in enumerate(zip(configs, finals, strict=True)):
        loo = list(score.loo)
        row = {"setting": _describe(config), "nfe": config.nfe, "num_images": n, name: score.value,
               f"{name}_interval": (single_estimate(score.value, loo, n, level).interval if len(loo) > 1
                                    else (float("nan"), float("nan")))}
        if i and len(loo) > 1 and len(loo) == len(base.loo):
            d = paired_difference(score.value, loo, base.value, base.loo, n, level)
            u = unpaired_difference(score.value, loo, base.value, base.loo, n, level)
            row.update(difference=d.debiased, interval=d.interval, paired_se=d.se, unpaired_se=u.se,
                       verdict=d.verdict(chosen.direction), images_to_separate=d.images_to_separate())
        elif i:
            raise ValueError(f"objective {name!r} gave no leave-one-group-out values at n = {n}: no paired "
                             "interval (too few images per group?)")
        rows.append(row)
    return rows


def _score(denoiser: Any, config: Any, seeds: Any, extractor: Any, reference: Any, objective: Any,
           groups: int, level: float, device: str, score_kwargs: dict) -> tuple[int, Any]:
    """(images, the objective's ``Score``) of one setting on ``seeds``: KID asks the pipeline for kept
    feature rows, an objective with a meter gets one."""
    from edmbench.metrics.evaluate import score_rungs
    from edmbench.metrics.kid_pr import KIDPROptions

    kwargs = dict(score_kwargs)
    if objective.needs_kid:
        kwargs["kid_pr"] = KIDPROptions(kid=True, kid_groups=groups)
    if objective.meter is not None:
        kwargs["meters"] = {objective.name: objective.meter(denoiser, config, seeds, device)}
    rung = list(score_rungs(denoiser, config, seeds, extractor, reference, groups=groups, level=level,
                            device=device, **kwargs))[-1]
    return rung.num_images, objective.score(rung)


def _describe(config: Any) -> str:
    from edmbench.sampling import SamplerConfig

    defaults = SamplerConfig().to_dict()
    changed = {k: v for k, v in config.to_dict().items() if defaults.get(k) != v or k == "sampler"}
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())


def format_table(rows: list[dict], level: float, objective: str = "fid") -> str:
    from edmbench.study.objectives import get_objective

    label = get_objective(objective).label
    lines = [f"| setting | NFE | {label} ({level:.0%} jackknife interval) | difference to row 1 "
             f"({level:.0%} paired interval) | paired SE | unpaired SE | verdict | images to separate |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        lo, hi = r[f"{objective}_interval"]
        head = f"| {r['setting']} | {r['nfe']} | {r[objective]:.4g} [{lo:.4g}, {hi:.4g}] |"
        if i == 0:
            lines.append(head + " (reference) | | | | |")
            continue
        dlo, dhi = r["interval"]
        need = r["images_to_separate"]
        lines.append(head + f" {r['difference']:+.4g} [{dlo:+.4g}, {dhi:+.4g}] | {r['paired_se']:.4g} | "
                     f"{r['unpaired_se']:.4g} | {r['verdict']} | {need if need is not None else '-'} |")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    from edmbench.metrics.cli import _add_extractor_flags, _class_policy
    from edmbench.study.objectives import OBJECTIVES

    image_objectives = [n for n, o in OBJECTIVES.items() if not o.cost]
    p = subparsers.add_parser("compare", help="paired differences of FID (or KID, or a per-seed objective) "
                              "between sampler settings on the same seeds", description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--denoiser", required=True, help="manifest name or path")
    p.add_argument("--ref", required=True, help="reference statistics .npz (or a dataset, as for fid)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=V,KEY=V",
                   help="SamplerConfig keys of one setting (give two or more; the first is the reference)")
    p.add_argument("--seeds", default="0-999", help="EDM syntax; shared by every setting")
    p.add_argument("--class", dest="class_policy", type=_class_policy, default="random")
    p.add_argument("--groups", type=int, default=10, help="seed groups of the jackknife (seed mod K)")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval coverage level")
    p.add_argument("--objective", default="fid", choices=image_objectives,
                   help="the compared score: fid (grouped jackknife), kid (jackknife of the unbiased MMD^2 "
                   "on every row; the reference needs feature rows) or a per-seed objective")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    _add_extractor_flags(p)
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    import edmbench
    from edmbench.generate import parse_seeds
    from edmbench.metrics.cli import _device, _reference
    from edmbench.metrics.features import check_extractor_available, get_extractor

    if len(args.setting) < 2:
        raise ValueError(f"compare needs at least two --setting options, got {len(args.setting)} "
                         "(e.g. --setting sampler=heun,num_steps=18 --setting sampler=heun,num_steps=15)")
    if not 0 < args.level < 1 or args.groups < 2:
        raise ValueError(f"--level must be in (0, 1) and --groups >= 2, got {args.level} and {args.groups}")
    configs = [parse_setting(s) for s in args.setting]
    seeds = parse_seeds(args.seeds)
    if len(seeds) < 2 * args.groups:
        raise ValueError(f"--seeds {args.seeds} gives {len(seeds)} images; the paired jackknife needs at "
                         f"least 2 per group ({2 * args.groups} for --groups {args.groups})")
    device = _device(args)
    check_extractor_available(args.extractor, args.inception_weights)
    from edmbench.study.objectives import get_objective

    keep = 10_000 if get_objective(args.objective).needs_kid else 0  # KID needs reference feature rows
    reference = _reference(args.ref, args, device, keep_features=keep)
    extractor = get_extractor(args.extractor, args.inception_weights, device)
    denoiser = edmbench.load(args.denoiser, device=device)
    rows = compare_settings(denoiser, configs, seeds, extractor, reference, level=args.level,
                            groups=args.groups, objective=args.objective, batch_size=args.batch_size,
                            class_policy=args.class_policy, device=device)
    print(format_table(rows, args.level, args.objective))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0
