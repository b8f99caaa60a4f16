"""``edmbench compare``: two or more sampler settings on the same seeds, a table of paired differences.

    edmbench compare --denoiser digits-edm-uncond --ref pretrained/digits-train-stats.npz \\
        --extractor digits-classifier --class none --seeds 0-999 \\
        --setting sampler=heun,num_steps=18 --setting sampler=heun,num_steps=15

The first ``--setting`` is the reference row. Every setting is scored on the same seeds (common random
numbers); each difference to the reference carries its paired jackknife-t interval (seed groups s mod K,
:mod:`edmbench.metrics.paired`), the unpaired SE for contrast, a verdict word read off the interval, and
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
                     level: float = DEFAULT_LEVEL, groups: int = 10, **score_kwargs: Any) -> list[dict]:
    """One row per setting: its FID with interval and, from the second on, the paired difference to the
    first (all on ``seeds``)."""
    from edmbench.metrics.evaluate import score_rungs

    finals = [list(score_rungs(denoiser, c, seeds, extractor, reference, groups=groups, level=level,
                               **score_kwargs))[-1] for c in configs]
    base = finals[0]
    rows = []
    for config, rung in zip(configs, finals, strict=True):
        row = {"setting": _describe(config), "nfe": config.nfe, "num_images": rung.n, "fid": rung.fid,
               "fid_interval": single_estimate(rung.fid, rung.fid_loo, rung.n, level).interval}
        if rung is not base:
            d = paired_difference(rung.fid, rung.fid_loo, base.fid, base.fid_loo, rung.n, level)
            u = unpaired_difference(rung.fid, rung.fid_loo, base.fid, base.fid_loo, rung.n, level)
            row.update(difference=d.debiased, interval=d.interval, paired_se=d.se, unpaired_se=u.se,
                       verdict=d.verdict("minimize"), images_to_separate=d.images_to_separate())
        rows.append(row)
    return rows


def _describe(config: Any) -> str:
    from edmbench.sampling import SamplerConfig

    defaults = SamplerConfig().to_dict()
    changed = {k: v for k, v in config.to_dict().items() if defaults.get(k) != v or k == "sampler"}
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())


def format_table(rows: list[dict], level: float) -> str:
    lines = [f"| setting | NFE | FID ({level:.0%} jackknife interval) | difference to row 1 ({level:.0%} "
             "paired interval) | paired SE | unpaired SE | verdict | images to separate |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        lo, hi = r["fid_interval"]
        head = f"| {r['setting']} | {r['nfe']} | {r['fid']:.4f} [{lo:.4f}, {hi:.4f}] |"
        if i == 0:
            lines.append(head + " (reference) | | | | |")
            continue
        dlo, dhi = r["interval"]
        need = r["images_to_separate"]
        lines.append(head + f" {r['difference']:+.4f} [{dlo:+.4f}, {dhi:+.4f}] | {r['paired_se']:.4f} | "
                     f"{r['unpaired_se']:.4f} | {r['verdict']} | {need if need is not None else '-'} |")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    from edmbench.metrics.cli import _add_extractor_flags, _class_policy

    p = subparsers.add_parser("compare", help="paired differences of FID between sampler settings on the "
                              "same seeds", description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--denoiser", required=True, help="manifest name or path")
    p.add_argument("--ref", required=True, help="reference statistics .npz (or a dataset, as for fid)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=V,KEY=V",
                   help="SamplerConfig keys of one setting (give two or more; the first is the reference)")
    p.add_argument("--seeds", default="0-999", help="EDM syntax; shared by every setting")
    p.add_argument("--class", dest="class_policy", type=_class_policy, default="random")
    p.add_argument("--groups", type=int, default=10, help="seed groups of the jackknife (seed mod K)")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval coverage level")
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
    reference = _reference(args.ref, args, device)
    extractor = get_extractor(args.extractor, args.inception_weights, device)
    denoiser = edmbench.load(args.denoiser, device=device)
    rows = compare_settings(denoiser, configs, seeds, extractor, reference, level=args.level,
                            groups=args.groups, batch_size=args.batch_size, class_policy=args.class_policy,
                            device=device)
    print(format_table(rows, args.level))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0
