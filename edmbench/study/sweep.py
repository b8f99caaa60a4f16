"""The summary of a ``[sweep]``: one row per member study (e.g. per NFE), from each member's held-out
confirmation (:mod:`edmbench.study.confirm`).

Per member: the chosen setting (ranked first on the search seeds), its held-out value with interval, the
best baseline on the held-out seeds, and the chosen minus that baseline, paired per seed range, with its
interval and verdict word. Picking the best baseline by its held-out value favours the baseline, so the
verdict errs towards "not distinguishable", never towards "better".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edmbench.study import results
from edmbench.study.confirm import LEVEL, chosen_trial, confirmed, heldout_difference
from edmbench.study.record import rescore_records
from edmbench.study.spec import StudySpec

COLUMNS = ("value", "name", "nfe", "chosen", "chosen_setting", "heldout", "heldout_low", "heldout_high",
           "best_baseline", "baseline_setting", "baseline_heldout", "difference", "difference_low",
           "difference_high", "verdict", "num_images")
SETTING_KEYS = ("sampler", "discretization", "sigma_min", "rho")


def _setting(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {record[k]:.4g}" if isinstance(record[k], float) else f"{k} {record[k]}"
                     for k in SETTING_KEYS if record.get(k) is not None)


def member_row(spec: StudySpec, study: Any) -> dict[str, Any]:
    """One member's row (``COLUMNS``); the held-out fields are None without a confirmation."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(value=spec.sweep.value if spec.sweep else None, name=spec.name)
    records = rescore_records(study)
    if not records:
        return row
    objective = results.primary(spec)
    sign = 1.0 if objective.direction == "minimize" else -1.0
    settings = confirmed(records, objective.name)
    chosen = chosen_trial(records)
    first = {int(r["number"]): r for r in reversed(records)}
    item = settings[chosen]
    row.update(nfe=item.nfe, chosen=chosen, chosen_setting=_setting(first[chosen]),
               num_images=int(first[chosen]["num_images"]))
    if item.mean is not None:
        row.update(heldout=item.mean.debiased, heldout_low=item.mean.interval[0],
                   heldout_high=item.mean.interval[1])
    bases = [s for n, s in settings.items() if "baseline" in s.role and n != chosen and s.mean is not None]
    if not bases:
        return row
    best = min(bases, key=lambda s: sign * s.mean.debiased)
    row.update(best_baseline=best.number, baseline_setting=_setting(first[best.number]),
               baseline_heldout=best.mean.debiased)
    diff = heldout_difference(records, chosen, best.number, objective.name)
    if diff is not None:
        low, high = diff.interval
        row.update(difference=diff.debiased, difference_low=low, difference_high=high,
                   verdict=diff.verdict(objective.direction))
    return row


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def sweep_markdown(specs: list[StudySpec], rows: list[dict[str, Any]]) -> list[str]:
    """The sweep's summary.md lines."""
    member = specs[0].sweep
    label = results.primary(specs[0]).label
    lines = [f"# Sweep {member.parent}: {member.knob} = {list(member.values)}", "",
             f"One study per value; each chose its setting on its search seeds and confirmed it, with every "
             f"baseline, on held-out seeds (the members' own summary.md files have the details). "
             f"Difference = chosen minus the best baseline on the held-out seeds, paired per range "
             f"({LEVEL:.0%} jackknife-t interval); the verdict follows from the interval.", "",
             f"| {member.knob} | NFE | chosen (trial: setting) | held-out {label} | best baseline "
             f"(trial: setting) | baseline held-out {label} | chosen - baseline [{LEVEL:.0%} interval] | "
             "verdict | images/range |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["chosen"] is None:
            lines.append(f"| {row['value']} | - | not confirmed yet | | | | | | |")
            continue
        heldout = (f"{_num(row['heldout'])} [{_num(row['heldout_low'])}, {_num(row['heldout_high'])}]"
                   if row["heldout"] is not None else "-")
        diff = (f"{row['difference']:+.4f} [{row['difference_low']:+.4f}, {row['difference_high']:+.4f}]"
                if row["difference"] is not None else "-")
        base = (f"{row['best_baseline']}: {row['baseline_setting']}" if row["best_baseline"] is not None
                else "-")
        lines.append(f"| {row['value']} | {row['nfe']} | {row['chosen']}: {row['chosen_setting']} | "
                     f"{heldout} | {base} | {_num(row['baseline_heldout'])} | {diff} | "
                     f"{row['verdict'] or '-'} | {row['num_images']:,} |")
    return [*lines, ""]


def write_sweep_summary(specs: list[StudySpec], studies: list[Any], outdir: Path) -> Path:
    """``outdir/summary.md`` and ``outdir/sweep.csv`` of a sweep's member studies."""
    import pandas as pd

    rows = [member_row(spec, study) for spec, study in zip(specs, studies, strict=True)]
    outdir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(outdir / "sweep.csv", index=False)
    path = outdir / "summary.md"
    path.write_text("\n".join(sweep_markdown(specs, rows)), encoding="utf-8")
    return path
