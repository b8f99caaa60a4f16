"""Outputs in ``runs/<study>/`` from storage alone: CSV tables, PNG+SVG plots, sample grids, Markdown summary.

This module only reads the storage and writes files; the final re-scoring is computed and stored by
:mod:`edmbench.study.rescore`, and reported here apart from the search scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edmbench.study import results
from edmbench.study.spec import StudySpec


def _save(fig: Any, outdir: Path, name: str) -> list[str]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "svg"):
        path = outdir / f"{name}.{ext}"
        fig.savefig(path, bbox_inches="tight", dpi=120)
        paths.append(path.name)
    plt.close(fig)
    return paths


def published_points(spec: StudySpec) -> list[Any]:
    """The spec's ``[[published]]`` rows plus the manifest's published numbers for the model."""
    from edmbench.pretrained import read_manifest
    from edmbench.study._sections import PublishedPoint

    points = list(spec.published)
    entry = read_manifest().get(spec.denoiser.model)
    seen = {(p.nfe, p.fid) for p in points}
    for row in (entry.extra.get("published", []) if entry else []):
        if "nfe" in row and "fid" in row and (int(row["nfe"]), float(row["fid"])) not in seen:
            label = f"{spec.denoiser.model}, {row.get('sampler', 'sampler')} (manifest)"
            points.append(PublishedPoint(label, int(row["nfe"]), float(row["fid"]), row.get("source", "")))
            seen.add((int(row["nfe"]), float(row["fid"])))
    return points


def heldout_points(rescored: Any, name: str) -> list[Any]:
    """The held-out confirmation as plot points: per confirmed trial, the bias-corrected mean over the
    held-out ranges with its interval (:func:`edmbench.study.confirm.confirmed`), at the trial's NFE."""
    from edmbench.plots import HeldOut
    from edmbench.study.confirm import confirmed

    if rescored is None or rescored.empty:
        return []
    points = []
    for item in confirmed(rescored.to_dict("records"), name).values():
        if item.mean is not None:
            points.append(HeldOut(item.nfe, item.mean.debiased, item.mean.interval, item.mean.num_images,
                                  _short_role(item.role), item.mean.level))
    return points


def _short_role(role: str) -> str:
    """"rank 1, baseline: EDM default (...)" -> "rank 1 = baseline"."""
    import re

    return " = ".join(dict.fromkeys(re.findall(r"rank \d+|baseline", role))) or role


def known_floor(spec: StudySpec) -> Any:
    """The manifest's real-data FID floor for the model (``fid_floor``), when it was measured with the
    spec's extractor; else None."""
    from edmbench.plots import Floor
    from edmbench.pretrained import read_manifest

    entry = read_manifest().get(spec.denoiser.model)
    floor = entry.extra.get("fid_floor") if entry else None
    if not floor or entry.extra.get("feature_extractor") != spec.metric.extractor:
        return None
    return Floor(float(floor["fid"]), float(floor["fid_err"]), int(floor["num_images"]),
                 floor.get("label", "real-data floor"))


def write_report(study: Any, spec: StudySpec, outdir: str | Path, *,
                 scorer: Any = None) -> dict[str, list[str]]:
    """Write every output; ``scorer`` (optional) is used only for the sample grids."""
    from edmbench import plots

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    table = results.trials_table(study, spec)
    written: dict[str, list[str]] = {"tables": [], "plots": [], "samples": []}
    table.to_csv(outdir / "trials.csv", index=False)
    written["tables"].append("trials.csv")
    rescored = results.rescore_table(study)
    if not rescored.empty:
        rescored.to_csv(outdir / "rescore.csv", index=False)
        written["tables"].append("rescore.csv")
    objective = results.primary(spec)
    if not results.complete(table).empty:
        if objective.name == "fid":  # the published points and edmbench.plots are FID figures
            figure = plots.fid_vs_nfe(table, published_points(spec), floor=known_floor(spec),
                                      title=f"{spec.name}: FID vs NFE", full_count=spec.metric.num_images,
                                      heldout=heldout_points(rescored, objective.name))
            written["plots"] += _save(figure, outdir, "fid_vs_nfe")
            if spec.multi_objective:
                figure = plots.fid_nfe_pareto(table, results.pareto_rows(table, spec))
                written["plots"] += _save(figure, outdir, "pareto")
        for name, fig in plots.optuna_figures(study, [p.name for p in spec.space]).items():
            written["plots"] += _save(fig, outdir, name)
    if scorer is not None:
        written["samples"] += _sample_grid(study, table, spec, scorer, outdir)
    (outdir / "summary.md").write_text(summary_markdown(spec, table, rescored, written))
    return written


def _sample_grid(study: Any, table: Any, spec: StudySpec, scorer: Any, outdir: Path,
                 n: int = 32) -> list[str]:
    from edmbench import plots
    from edmbench.generate import generate_images
    from edmbench.study.record import sampler_config

    panels, objective = [], results.primary(spec)
    best = _chosen_row(table, results.rescore_table(study), results.best_row(table, spec))
    for role, row in (("chosen", best), ("baseline", results.baseline_row(table, spec))):
        if row is None:
            continue
        number = int(row["number"])
        config = sampler_config(spec.fixed, study.trials[number].params)
        seeds = list(spec.seeds)[:n]
        images = [b.images for b in generate_images(scorer.denoiser, config, seeds, batch_size=n,
                                                    class_policy=scorer.class_policy, device=scorer.device)]
        panels.append((f"{role}: trial {number}, NFE {config.nfe}, {objective.label} "
                       f"{row[objective.name]:.3f}", images[0]))
    if not panels:
        return []
    figure = plots.sample_grids(panels, row_labels=plots.seed_row_labels(list(spec.seeds)[:n]),
                                suptitle="the same seeds in every panel")
    return _save(figure, outdir, "samples")


def _chosen_row(table: Any, rescored: Any, fallback: Any) -> Any:
    """The table row of the held-out confirmation's chosen trial (rank 1), else ``fallback``."""
    if rescored is None or rescored.empty:
        return fallback
    from edmbench.study.confirm import chosen_trial

    rows = table[table["number"] == chosen_trial(rescored.to_dict("records"))]
    return fallback if rows.empty else rows.iloc[0]


def _present(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value))


def _fmt_knobs(row: Any, spec: StudySpec) -> str:
    names = ["sampler", *(p.name for p in spec.space if p.name != "sampler")]
    return ", ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                     for k in dict.fromkeys(names) if k in row and _present(row[k]))


def _score(row: Any, objective: Any) -> str:
    """``value ± error`` of ``objective`` in a table row (no error part when it is unknown)."""
    err = row.get(objective.err_column)
    return f"{row[objective.name]:.4f}" + (f" ± {err:.4f}" if err is not None and _present(err) else "")


def summary_markdown(spec: StudySpec, table: Any, rescored: Any, written: dict[str, list[str]]) -> str:
    """The study's Markdown summary: counts, the held-out confirmation (headline numbers, paired verdicts
    against every baseline, images spent), the search-stage best and baseline (labelled as such), files."""
    objective = results.primary(spec)
    label, name = objective.label, objective.name
    lines = [f"# Study `{spec.name}`", "", spec.description.strip(), ""]
    finished = results.counted(table)
    states = finished["state"].value_counts().to_dict() if not finished.empty else {}
    by_state = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
    lines += [f"Trials finished: {len(finished)} ({by_state}); "
              f"images per trial: {spec.metric.num_images} (seeds {spec.seeds.start}-{spec.seeds.stop - 1}); "
              f"extractor `{spec.metric.extractor}`; reference `{spec.metric.reference}`.", ""]
    best, base = results.best_row(table, spec), results.baseline_row(table, spec)
    if not rescored.empty:  # the headline: held-out numbers with paired intervals and verdicts
        from edmbench.study.confirm import confirmation_markdown

        lines += confirmation_markdown(spec, table, rescored)
    stage = f"search stage: {spec.metric.num_images} images on the search seeds"
    if spec.multi_objective:
        lines += [f"## Pareto front ({label} vs NFE; {stage})", "", f"| trial | NFE | {label} | settings |",
                  "|---|---|---|---|"]
        lines += [f"| {int(r['number'])} | {int(r['nfe'])} | {_score(r, objective)} | {_fmt_knobs(r, spec)} |"
                  for _, r in results.pareto_rows(table, spec).iterrows()]
    elif best is not None:
        lowest = best
        best = _chosen_row(table, rescored, best)
        lines += [f"## Best settings ({stage})", "",
                  f"Trial {int(best['number'])}{'' if rescored.empty else ' (the chosen setting)'}: "
                  f"{_fmt_knobs(best, spec)}; NFE {int(best['nfe'])}; "
                  f"search-stage {label} {_score(best, objective)} at {int(best['num_images'])} images.", ""]
        if int(lowest["number"]) != int(best["number"]):
            lines += [f"The lowest search-stage {label} was trial {int(lowest['number'])} "
                      f"({_fmt_knobs(lowest, spec)}; {_score(lowest, objective)}), not chosen: its "
                      "paired difference to the baseline plus one paired SE was larger (a lead within the "
                      "noise).", ""]
    if base is not None and best is not None:
        delta = best[name] - base[name]
        lines += [f"## Against the baseline ({stage})", "", f"Baseline `{base['enqueue_label']}` (trial "
                  f"{int(base['number'])}): {_fmt_knobs(base, spec)}; NFE {int(base['nfe'])}; "
                  f"search-stage {label} {_score(base, objective)}.",
                  f"Search-stage chosen minus baseline: {delta:+.4f} {label} at NFE {int(best['nfe'])} vs "
                  f"{int(base['nfe'])} (it was selected on these seeds, so this favours it; no verdict "
                  + ("here: see the held-out confirmation)." if not rescored.empty
                     else "without a [rescore] held-out confirmation)."), ""]
    if spec.published:
        lines += ["## Published numbers this study should reproduce", ""]
        lines += [f"- {p.label}: FID {p.fid} at NFE {p.nfe} ({p.source})" for p in spec.published]
        lines += [""]
    lines += ["## Files", ""] + [f"- {name}" for group in written.values() for name in group] + [""]
    return "\n".join(lines)
