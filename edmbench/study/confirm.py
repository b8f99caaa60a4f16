"""Held-out confirmation: the search's top ``k`` AND every enqueued baseline re-scored at the full image
count on seed ranges no trial has seen (``[rescore] seed_starts``; EDM's protocol repeats 50k images on
three ranges), stored in the study (``rescore:<trial>:<seed_start>``, :mod:`edmbench.study.record`), then
read back as held-out numbers with intervals:

- per setting: each range's value, the minimum and the spread over ranges (EDM reports min and spread),
  and the mean over ranges with its jackknife-t interval (:func:`edmbench.metrics.paired.combine`);
- the chosen setting (the search's best, chosen before any held-out image was seen, so its held-out
  interval carries no winner's curse) against every baseline: the held-out difference, paired on each
  range's shared seeds and combined over ranges, with its verdict word;
- the images per setting that would separate the top two candidates, from their measured paired variance.

Selection happens on search seeds, judgement on held-out seeds: nothing here re-ranks by held-out values.
The order of the candidates (:func:`search_order`, rank 1 = the chosen setting) is not the plain search
FID: a trial is ranked by its paired search-stage difference to the baseline plus ``CHOICE_Z`` paired
standard errors. The minimum of many noisy search FIDs is biased towards the noisiest settings (with churn
the noise streams diverge, so a stochastic setting's paired SE at 500 images is tens of times a
deterministic one's); the penalty keeps a setting that only looks better by chance from being chosen, while
a deterministic setting better by many SEs still wins (``benchmarks/bench_decisions.py``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from edmbench.metrics.paired import Difference, combine, loo_from_per_seed, paired_difference, single_estimate
from edmbench.study import results
from edmbench.study.record import TrialRecord, rescore_key, rescore_records, rung_evidence, sampler_config
from edmbench.study.spec import StudySpec

LEVEL = 0.95
CHOICE_Z = 1.0  # the candidates' order: (trial - baseline) + CHOICE_Z paired SE on the search seeds


def heldout_ranges(spec: StudySpec) -> list[range]:
    """The held-out seed ranges; ValueError when one overlaps the search seeds (then it is not held out)."""
    if spec.rescore is None:
        return []
    ranges = [range(s, s + spec.rescore.num_images) for s in spec.rescore.seed_starts]
    search = spec.seeds
    for r in ranges:
        if r.start < search.stop and search.start < r.stop:
            raise ValueError(f"[rescore] seed range {r.start}-{r.stop - 1} overlaps the search seeds "
                             f"{search.start}-{search.stop - 1}; held-out seeds must be ones no trial used")
    return ranges


def search_order(study: Any, spec: StudySpec, z: float = CHOICE_Z) -> list[int]:
    """COMPLETE trial numbers, the chosen one first: by (trial - baseline) + ``z`` x paired SE in the
    objective's direction, on the search seeds. The difference is of the full-count values; the SE comes
    from the deepest evidence both trials hold (:mod:`edmbench.study.record`: each rung and the full
    count), scaled by sqrt(rung / full count) when that is a rung below the full count. Without a complete
    baseline, or when a trial has no evidence shared with it, the plain search-score order."""
    table = results.trials_table(study, spec)
    plain = [int(n) for n in results.ranked(table, spec)["number"]] if not table.empty else []
    base = results.baseline_row(table, spec)
    if base is None or not plain:
        return plain
    objective = results.primary(spec)
    sign = 1.0 if objective.direction == "minimize" else -1.0
    values = {int(r["number"]): float(r[objective.name]) for _, r in results.complete(table).iterrows()}
    trials, b = study.trials, int(base["number"])
    ses = {n: _paired_se(trials[n], trials[b], spec.metric.num_images) for n in plain}
    if any(se is None for se in ses.values()):
        return plain
    return sorted(plain, key=lambda n: sign * (values[n] - values[b]) + z * ses[n])  # stable for ties


def _paired_se(trial: Any, base: Any, full: int) -> float | None:
    """The paired SE of trial - base at the full count, from their deepest shared rung evidence."""
    if trial.number == base.number:
        return 0.0
    own, other = TrialRecord.read(trial).rungs, TrialRecord.read(base).rungs
    for n in sorted({int(k) for k in own} & {int(k) for k in other}, reverse=True):
        a, b = rung_evidence(trial, n), rung_evidence(base, n)
        if a is not None and b is not None and len(a[1]) == len(b[1]):
            return paired_difference(*a, *b, n).se * math.sqrt(n / full)
    return None


def candidates(study: Any, spec: StudySpec) -> list[tuple[int, str]]:
    """(trial number, role) to confirm: the top ``k`` COMPLETE trials in :func:`search_order` ("rank 1",
    ...) and every enqueued baseline whatever its state ("baseline: <label>"); a trial in both gets both.
    An entry marked ``baseline = false`` (a starting point) is confirmed only if it ranks in the top k."""
    roles: dict[int, list[str]] = {}
    top = search_order(study, spec)[:spec.rescore.top_k if spec.rescore else 0]
    for rank, number in enumerate(top, start=1):
        roles.setdefault(int(number), []).append(f"rank {rank}")
    for trial in study.get_trials(deepcopy=False):
        label = TrialRecord.read(trial).enqueue_label
        if results.is_baseline(label, spec) and trial.params:
            roles.setdefault(trial.number, []).append(f"baseline: {label}")
    return [(number, ", ".join(r)) for number, r in roles.items()]


def pending(study: Any, spec: StudySpec) -> list[tuple[int, str, int]]:
    """(trial number, role, seed range start) of every held-out scoring of a candidate not yet stored."""
    if spec.rescore is None or spec.multi_objective:
        return []
    ranges = heldout_ranges(spec)
    return [(number, role, seeds.start) for number, role in candidates(study, spec) for seeds in ranges
            if rescore_key(number, seeds.start) not in study.user_attrs]


def confirm_one(study: Any, spec: StudySpec, scorer: Any, number: int, role: str, seed_start: int) -> None:
    """Score trial ``number``'s setting on the held-out range from ``seed_start`` and store the record."""
    objective, trial = results.primary(spec), study.trials[number]
    seeds = range(seed_start, seed_start + spec.rescore.num_images)
    config = sampler_config(spec.fixed, trial.params)
    start = time.perf_counter()
    final, scores = list(scorer.score(config, seeds, ()))[-1]
    score = scores[objective.name]
    study.set_user_attr(rescore_key(number, seeds.start), {
        "number": number, "role": role,
        f"search_{objective.name}": TrialRecord.read(trial).scores.get(objective.name), "nfe": config.nfe,
        "seed_start": seeds.start, "seeds": f"{seeds.start}-{seeds.stop - 1}", "num_images": final.num_images,
        objective.name: float(score.value), objective.err_column: _finite(score.err),
        "loo": heldout_loo(objective.name, final, score, seeds),
        "wall_time_s": round(time.perf_counter() - start, 3), **trial.params})


def confirm(study: Any, spec: StudySpec, scorer: Any) -> list[dict[str, Any]]:
    """Score every candidate on every held-out range not yet stored (resumable, idempotent); returns the
    stored records."""
    for number, role, seed_start in pending(study, spec):
        confirm_one(study, spec, scorer, number, role, seed_start)
    return rescore_records(study)


def heldout_loo(name: str, rung: Any, score: Any, seeds: range) -> list[float] | None:
    """The K leave-one-seed-group-out values of objective ``name`` at a rung (FID: the jackknife's; a
    per-seed objective: means over the other groups), or None when the objective has neither."""
    if len(getattr(score, "loo", ())) > 1:
        return [float(v) for v in score.loo]
    if name == "fid" and len(getattr(rung, "fid_loo", ())) > 1:
        return [float(v) for v in rung.fid_loo]
    if getattr(score, "per_seed", None) is not None:
        return loo_from_per_seed(score.per_seed, seeds)[1]
    return None


# ---- reading the confirmation back -------------------------------------------------------------------

@dataclasses.dataclass
class Confirmed:
    """One setting's held-out results: per-range values (by seed start), min, spread, mean interval."""

    number: int
    role: str
    nfe: int
    search_value: float | None
    values: dict[int, float]
    mean: Difference | None  # the mean over ranges as an interval (a "difference against 0")

    @property
    def best_of_ranges(self) -> float:
        return min(self.values.values())

    @property
    def spread(self) -> float:
        return max(self.values.values()) - min(self.values.values())


@dataclasses.dataclass
class Comparison:
    chosen: int
    other: int
    role: str
    difference: Difference | None  # chosen - other, paired per range, combined over ranges

    def verdict(self, direction: str) -> str:
        return self.difference.verdict(direction) if self.difference else "not distinguishable (no interval)"


def confirmed(records: list[dict[str, Any]], name: str, level: float = LEVEL) -> dict[int, Confirmed]:
    """Every confirmed setting of the stored records, keyed by trial number."""
    out: dict[int, Confirmed] = {}
    for number, rows in _by_trial(records).items():
        estimates = [single_estimate(r[name], _loo(r), r["num_images"], level) for r in rows if _loo(r)]
        mean = combine(estimates) if len(estimates) == len(rows) and estimates else None
        first = rows[0]
        out[number] = Confirmed(number, first.get("role", ""), int(first["nfe"]), first.get(f"search_{name}"),
                                {int(r["seed_start"]): float(r[name]) for r in rows}, mean)
    return out


def heldout_difference(records: list[dict[str, Any]], a: int, b: int, name: str,
                       level: float = LEVEL) -> Difference | None:
    """Held-out ``a - b``: paired on each range both were scored on, combined over those ranges."""
    by = _by_trial(records)
    rows_b = {r["seed_start"]: r for r in by.get(b, [])}
    diffs = []
    for ra in by.get(a, []):
        rb = rows_b.get(ra["seed_start"])
        if rb is None or not _loo(ra) or not _loo(rb) or len(_loo(ra)) != len(_loo(rb)):
            continue
        diffs.append(paired_difference(ra[name], _loo(ra), rb[name], _loo(rb), ra["num_images"], level))
    return combine(diffs) if diffs else None


def comparisons(records: list[dict[str, Any]], chosen: int, name: str) -> list[Comparison]:
    """The chosen setting against every baseline and against the next-ranked candidate."""
    out = []
    for number, item in confirmed(records, name).items():
        if number != chosen and ("baseline" in item.role or "rank" in item.role):
            diff = heldout_difference(records, chosen, number, name)
            out.append(Comparison(chosen, number, item.role, diff))
    return out


def images_spent(table: Any, records: Any) -> tuple[int, int]:
    """(images generated by the search trials, from the trials table's ``num_images``; images generated
    for the held-out confirmation)."""
    search = 0 if table is None or table.empty else int(table["num_images"].fillna(0).sum())
    return search, int(sum(int(r["num_images"]) for r in _as_records(records)))


def _as_records(records: Any) -> list[dict[str, Any]]:
    """Stored records as dicts (a ``rescore_table`` DataFrame is accepted too)."""
    return records.to_dict("records") if hasattr(records, "to_dict") else list(records)


def _loo(record: dict[str, Any]) -> list[float] | None:
    """A record's leave-one-group-out values (records written before they were stored have none)."""
    loo = record.get("loo")
    return list(loo) if isinstance(loo, list | tuple) and len(loo) > 1 else None


def _by_trial(records: Any) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in _as_records(records):
        out.setdefault(int(r["number"]), []).append(r)
    return out


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# ---- the summary's held-out section -------------------------------------------------------------------

def confirmation_markdown(spec: StudySpec, table: Any, records: Any) -> list[str]:
    """The summary lines of the held-out confirmation: headline held-out numbers (per setting: each range,
    min and spread, mean with interval), the chosen setting against every baseline (paired held-out
    difference, interval, verdict), the images the study cost, the images needed to separate the top two.
    ``table``: the trials table; ``records``: the stored records (or :func:`results.rescore_table`)."""
    objective = results.primary(spec)
    records = _as_records(records)
    if not records:
        return []
    name, label = objective.name, objective.label
    settings = confirmed(records, name)
    chosen = chosen_trial(records)
    per = records[0]["num_images"]
    lines = [f"## Held-out confirmation (the headline numbers: seeds no trial used, {per:,} per range)",
             "", f"| trial | role | NFE | held-out {label} per range | min | spread | "
             f"jackknife bias-corrected mean ({LEVEL:.0%} interval) | search-stage {label} |",
             "|---|---|---|---|---|---|---|---|"]
    for item in settings.values():
        per_range = ", ".join(f"{v:.4f} (seeds {s}-)" for s, v in sorted(item.values.items()))
        mean = (f"{item.mean.debiased:.4f} [{item.mean.interval[0]:.4f}, {item.mean.interval[1]:.4f}]"
                if item.mean else "-")
        search = f"{item.search_value:.4f}" if item.search_value is not None else "-"
        lines.append(f"| {item.number} | {item.role} | {item.nfe} | {per_range} | "
                     f"{item.best_of_ranges:.4f} | {item.spread:.4f} | {mean} | {search} (search stage) |")
    lines += ["", "The per-range values are plug-in estimates, biased upward at finite n; the bias-corrected "
              "mean and its interval come from the jackknife over seed groups.", "",
              f"The chosen setting is trial {chosen} (ranked first on the search seeds by its paired "
              f"{label} difference to the baseline plus {CHOICE_Z:g} paired SE, so a setting that only "
              "looks better by chance is not chosen; chosen before any held-out image was seen). Against "
              f"each baseline and the runner-up, on the held-out seeds (paired per range, {LEVEL:.0%} "
              "jackknife-t interval):", ""]
    if "baseline" in settings[chosen].role:
        lines.append("- the chosen setting is the baseline itself: no searched setting was better than it on "
                     f"the search seeds by more than {CHOICE_Z:g} paired SE, so there is nothing to confirm "
                     "against it (the search found no improvement it can show at this image count)")
    for c in comparisons(records, chosen, name):
        if c.difference is None:
            lines.append(f"- vs trial {c.other} ({c.role}): no paired interval (no seed groups)")
            continue
        d, verdict = c.difference, c.verdict(objective.direction)
        lines.append(f"- vs trial {c.other} ({c.role}): {d.describe(label, 4)}: **{verdict}**")
        need = d.images_to_separate()
        if verdict.startswith("not distinguishable") and need is not None:
            lines.append(f"  (about {need:,} held-out images per setting would separate a difference of "
                         f"this size, at the measured paired variance)")
    search, heldout = images_spent(table, records)
    lines += ["", f"Images generated: {search:,} in the search, {heldout:,} in the held-out confirmation, "
              f"{search + heldout:,} in all.", ""]
    return lines


def chosen_trial(records: list[dict[str, Any]]) -> int:
    """The trial ranked 1 by the search (the role written by :func:`confirm`)."""
    for r in records:
        if "rank 1" in str(r.get("role", "")):
            return int(r["number"])
    return int(records[0]["number"])
