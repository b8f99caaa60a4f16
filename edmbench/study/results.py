"""Tables from storage alone: one row per trial (every knob, NFE, FID +- error, images, time, status,
provenance) and one row per final re-scoring."""

from __future__ import annotations

from typing import Any

from edmbench.study.objectives import get_objective, score_columns
from edmbench.study.record import TrialRecord, rescore_records, sampler_config
from edmbench.study.spec import StudySpec, parse_spec
from edmbench.study.storage import ATTR_SPEC_TEXT

PROVENANCE_COLUMNS = ("spec_hash", "seeds", "edmbench_version", "git_commit", "python_version",
                      "torch_version", "threads", "device", "dtype", "host", "model", "extractor",
                      "reference")


def spec_from_study(study: Any) -> StudySpec:
    """The spec a study was created from (stored in the study at creation)."""
    text = study.user_attrs.get(ATTR_SPEC_TEXT)
    if text is None:
        raise ValueError(f"study {study.study_name!r} was not created by edmbench (no stored spec)")
    return parse_spec(text, source=f"storage:{study.study_name}", check_files=False)


def knobs_of(trial: Any, spec: StudySpec) -> dict[str, Any]:
    """Every SamplerConfig field of a trial: fixed + suggested + defaults for knobs it did not use (a
    searched knob that a stopped trial never chose is None)."""
    try:
        knobs = sampler_config(spec.fixed, trial.params).to_dict()
    except (ValueError, TypeError):  # e.g. pruned for breaking a constraint: the values it was given
        from edmbench.sampling import SamplerConfig

        knobs = {**SamplerConfig.defaults(), **spec.fixed, **trial.params}
    if trial.state.name not in ("COMPLETE", "PRUNED"):  # stopped before choosing: unknown, not default
        knobs.update({p.name: None for p in spec.space if p.name not in trial.params})
    return knobs


def trial_row(trial: Any, spec: StudySpec) -> dict[str, Any]:
    record = TrialRecord.read(trial)
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name, "retired": record.retired}
    row.update(knobs_of(trial, spec))
    row["nfe"] = record.nfe
    row.update({column: record.scores.get(column) for column in score_columns(spec.objectives)})
    row.update({"num_images": record.num_images, "wall_time_s": record.wall_time_s})
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        row["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    row.update(record.notes())
    provenance = record.provenance or {}
    row.update({key: provenance.get(key) for key in PROVENANCE_COLUMNS})
    row["datetime_start"] = trial.datetime_start
    row["datetime_complete"] = trial.datetime_complete
    return row


def trials_table(study: Any, spec: StudySpec | None = None) -> Any:
    """A pandas DataFrame with one row per trial, ordered by trial number."""
    import pandas as pd

    spec = spec or spec_from_study(study)
    rows = [trial_row(t, spec) for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows).sort_values("number").reset_index(drop=True) if rows else pd.DataFrame()


def counted(table: Any) -> Any:
    """Rows that count as finished trials: COMPLETE, PRUNED, or FAIL that was not retired."""
    if table.empty:
        return table
    return table[table["state"].isin(["COMPLETE", "PRUNED", "FAIL"]) & table["retired"].isna()]


def complete(table: Any) -> Any:
    return table[table["state"] == "COMPLETE"] if not table.empty else table


def primary(spec: StudySpec) -> Any:
    """The objective that ranks trials (the first of ``[study] objectives``)."""
    return get_objective(spec.objectives[0])


def ranked(table: Any, spec: StudySpec) -> Any:
    """COMPLETE trials, best first by the primary objective (pruned trials never qualify)."""
    done = complete(table)
    if done.empty:
        return done
    objective = primary(spec)
    return done.assign(_key=done[objective.name].astype(float)).sort_values(
        "_key", ascending=objective.direction == "minimize", kind="stable").drop(columns="_key")


def best_row(table: Any, spec: StudySpec) -> Any | None:
    """The COMPLETE trial with the best primary objective."""
    done = ranked(table, spec)
    return None if done.empty else done.iloc[0]


def is_baseline(label: Any, spec: StudySpec) -> bool:
    """Whether a trial enqueued with ``label`` is a baseline: every labelled one, except the spec's
    ``[[enqueue]]`` entries marked ``baseline = false`` (starting points)."""
    return isinstance(label, str) and label not in {e.label for e in spec.enqueue if not e.baseline}


def baseline_row(table: Any, spec: StudySpec) -> Any | None:
    """The first COMPLETE enqueued baseline (the spec's first baseline [[enqueue]] entry)."""
    done = complete(table)
    if done.empty or "enqueue_label" not in done:
        return None
    labelled = done[[is_baseline(label, spec) for label in done["enqueue_label"]]]
    return None if labelled.empty else labelled.iloc[0]


def pareto_rows(table: Any, spec: StudySpec) -> Any:
    """COMPLETE trials not dominated in (primary objective, NFE), sorted by NFE."""
    objective = primary(spec)
    sign = 1.0 if objective.direction == "minimize" else -1.0
    done = complete(table).assign(_key=lambda t: sign * t[objective.name].astype(float))
    done = done.sort_values(["nfe", "_key"])
    best, keep = float("inf"), []
    for index, row in done.iterrows():
        if row["_key"] < best:
            best = row["_key"]
            keep.append(index)
    return done.loc[keep].drop(columns="_key")


def rescore_table(study: Any) -> Any:
    """Final re-scoring results (EDM protocol: fresh seed ranges, full image count), one row each."""
    import pandas as pd

    return pd.DataFrame(rescore_records(study))
