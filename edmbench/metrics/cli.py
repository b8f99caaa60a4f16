"""``edmbench fid`` (score a denoiser + sampler on seeds) and ``edmbench ref`` (reference statistics)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edmbench.metrics.inception import INCEPTION, WEIGHTS_ENV


def _literal(text: str) -> Any:
    """A command-line value as int, float (``inf`` too), None (``none``) or str."""
    if text.lower() in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _sampler_defaults() -> dict:
    from edmbench.sampling import SamplerConfig

    return SamplerConfig.defaults()  # every knob (fields and registered ones) with its default


def _add_sampler_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampler (SamplerConfig fields; unset = the dataclass default)")
    for name, default in _sampler_defaults().items():
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", type=_literal, default=None,
                           metavar="V", help=f"default {default!r}")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any SamplerConfig key (repeatable); wins over the flags above")


def sampler_config_from_args(args: argparse.Namespace):
    """``SamplerConfig.from_dict`` of the flags that were given, then the ``--set`` pairs."""
    from edmbench.sampling import SamplerConfig

    values = {name: getattr(args, f"cfg_{name}") for name in _sampler_defaults()
              if getattr(args, f"cfg_{name}") is not None}
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        values[key.strip()] = _literal(value.strip())
    return SamplerConfig.from_dict(values)


def _class_policy(text: str) -> str | int | None:
    value = _literal(text)
    if value == "random" or value is None or isinstance(value, int):
        return value
    raise argparse.ArgumentTypeError(f"--class must be 'random', 'none' or a class index, got {text!r}")


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _add_extractor_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--extractor", default=INCEPTION,
                        help=f"registered feature extractor (default {INCEPTION})")
    parser.add_argument("--inception-weights", metavar="PATH", default=None,
                        help=f"local Inception weights file (or set ${WEIGHTS_ENV})")
    parser.add_argument("--device", default=None, help="cuda if available, else cpu")
    parser.add_argument("--batch-size", type=int, default=64)


def add_parser(subparsers) -> None:
    fid = subparsers.add_parser("fid", help="FID (KID, precision/recall) of a denoiser and sampler settings",
                                description=__doc__)
    fid.add_argument("--denoiser", required=True, help="manifest name or path (EDM .pkl, .safetensors, .npz)")
    fid.add_argument("--ref", required=True, help="reference statistics .npz, or a dataset (folder, zip, "
                                                  "uint8 .npy/.npz) whose statistics are computed and cached")
    fid.add_argument("--seeds", default="0-49999", help="EDM syntax, e.g. 0-49999 or 1,2,5-10")
    fid.add_argument("--class", dest="class_policy", type=_class_policy, default="random",
                     help="'random' (default), a class index, or 'none'")
    fid.add_argument("--noise-device", default="cpu", help="where the per-seed generators live")
    fid.add_argument("--rungs", type=_int_list, default=None, help="also report FID at these counts")
    fid.add_argument("--uncertainty", choices=["jackknife", "none"], default="jackknife")
    fid.add_argument("--groups", type=int, default=10, help="jackknife groups")
    fid.add_argument("--level", type=float, default=0.95, help="interval coverage level")
    fid.add_argument("--repeats", type=int, default=1,
                     help="EDM protocol: score this many disjoint seed ranges (seeds shifted by their count)")
    fid.add_argument("--kid", action="store_true", help="also KID (needs reference feature rows)")
    fid.add_argument("--prc", action="store_true",
                     help="also precision/recall (needs reference feature rows)")
    fid.add_argument("--max-feature-rows", type=int, default=10_000, help="rows kept for KID/PR")
    fid.add_argument("--kid-subset-size", type=int, default=1000)
    fid.add_argument("--outdir", default=None, help="also save the images as PNGs (EDM layout)")
    fid.add_argument("--json", default=None, metavar="PATH", help="write the result record as JSON")
    _add_extractor_flags(fid)
    _add_sampler_flags(fid)
    fid.set_defaults(func=run_fid)

    ref = subparsers.add_parser("ref", help="reference statistics (.npz: mu, sigma) of a dataset")
    ref.add_argument("dataset", help="image folder, zip of images, or uint8 .npy/.npz array")
    ref.add_argument("--out", required=True, help="output .npz")
    ref.add_argument("--keep-features", type=int, default=0, help="also keep N feature rows (for KID/PR)")
    ref.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    _add_extractor_flags(ref)
    ref.set_defaults(func=run_ref)


def _device(args: argparse.Namespace) -> str:
    import torch

    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _reference(path: str, args: argparse.Namespace, device: str, keep_features: int = 0):
    from edmbench.metrics.reference import reference_for_dataset

    return reference_for_dataset(path, args.extractor, weights_path=args.inception_weights, device=device,
                                 keep_features=keep_features, batch_size=args.batch_size,
                                 use_cache=not getattr(args, "no_cache", False))


def _friendly(run):
    """Report bad input (ValueError, missing files or weights) as one line on stderr, exit status 2."""
    def wrapper(args: argparse.Namespace) -> int:
        from edmbench.errors import debug_enabled

        try:
            return run(args)
        except (ValueError, FileNotFoundError) as err:
            if debug_enabled():  # edmbench --debug: the traceback (edmbench/cli.py main)
                raise
            print(f"edmbench {args.command}: error: {err}", file=sys.stderr)
            return 2
    return wrapper


@_friendly
def run_fid(args: argparse.Namespace) -> int:
    import edmbench
    from edmbench.generate import format_seeds, parse_seeds, shift_seeds
    from edmbench.metrics.evaluate import evaluate_fid
    from edmbench.metrics.features import check_extractor_available, get_extractor
    from edmbench.metrics.kid_pr import KIDPROptions
    from edmbench.metrics.shard import Shard

    config = sampler_config_from_args(args)
    seeds, device = parse_seeds(args.seeds), _device(args)
    if len(seeds) < 2:
        raise ValueError(f"--seeds {args.seeds} selects {len(seeds)} seed; FID needs at least 2 images "
                         "(e.g. --seeds 0-49999 or 5-104)")
    check_extractor_available(args.extractor, args.inception_weights)  # before any generation work
    shard = Shard.from_env(device=device)  # torchrun: every rank generates its share of the seeds
    device = shard.device if shard is not None else device
    kid_pr = KIDPROptions(kid=args.kid, prc=args.prc, max_rows=args.max_feature_rows,
                          kid_subset_size=args.kid_subset_size)
    reference = _reference(args.ref, args, device, keep_features=args.max_feature_rows if kid_pr.any else 0)
    extractor = get_extractor(args.extractor, args.inception_weights, device)
    denoiser = edmbench.load(args.denoiser, device=device)
    uncertainty = None if args.uncertainty == "none" else "jackknife"
    records = []
    for i in range(args.repeats):
        shifted = shift_seeds(seeds, i * len(seeds))  # lazy for ranges of any length
        result = evaluate_fid(denoiser, config, shifted, reference, extractor, batch_size=args.batch_size,
                              class_policy=args.class_policy, device=device, noise_device=args.noise_device,
                              rungs=args.rungs, uncertainty=uncertainty,
                              groups=args.groups, level=args.level, kid_pr=kid_pr, outdir=args.outdir,
                              shard=shard)
        result.provenance.update(denoiser=args.denoiser, extractor=args.extractor,
                                 world_size=1 if shard is None else shard.world_size)
        if shard is not None and not shard.is_main:
            continue  # every rank holds the merged result; rank 0 reports it
        _print_result(result, format_seeds(shifted))
        records.append(result.to_dict())
    if not records:
        return 0
    if args.repeats > 1:
        fids = [r["fid"] for r in records]
        print(f"EDM protocol: FID min {min(fids):.5g}, spread (max - min) {max(fids) - min(fids):.3g} "
              f"over {len(fids)} seed ranges")
    if args.json:
        Path(args.json).write_text(json.dumps(records if args.repeats > 1 else records[0], indent=2,
                                              default=_json_default))
    return 0


def _print_result(result, seeds: str) -> None:
    for rung in result.rungs[:-1]:
        print(f"  rung num_images={rung.num_images}: FID {rung.fid:.5g} +- {rung.fid_err:.3g}")
    print(f"seeds {seeds}: {result.summary()}")
    shown = ("kid", "kid_std", "precision", "recall", "f_score")
    extra = {k: v for k, v in result.extra.items() if k in shown}
    if extra:
        print("  " + ", ".join(f"{k} {v:.5g}" for k, v in extra.items()))


def _json_default(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


@_friendly
def run_ref(args: argparse.Namespace) -> int:
    from edmbench.metrics.features import check_extractor_available
    from edmbench.metrics.stats import save_reference

    check_extractor_available(args.extractor, args.inception_weights)
    reference = _reference(args.dataset, args, _device(args), keep_features=args.keep_features)
    path = save_reference(args.out, reference)
    print(f"wrote {path}: {args.extractor} statistics, D={reference.dim}, n={reference.n}, "
          f"sha256 {reference.provenance.get('dataset_sha256', '?')[:16]}", file=sys.stdout)
    return 0
