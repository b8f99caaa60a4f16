"""Tables from storage alone: one row per trial (every knob, NFE, FID +- error, images, time, status,
provenance) and one row per final re-scoring."""

from __future__ import annotations

from typing import Any

from edmbench.study.spec import StudySpec, parse_spec
from edmbench.study.storage import ATTR_SPEC_TEXT

RESCORE_PREFIX = "rescore:"
PROVENANCE = ("spec_hash", "seeds", "code_version", "torch_version", "threads", "device", "dtype", "host",
              "model", "extractor", "reference")
NOTES = ("enqueue_label", "grid_index", "retry_of", "fail_reason", "pruned_reason")


def spec_from_study(study: Any) -> StudySpec:
    """The spec a study was created from (stored in the study at creation)."""
    text = study.user_attrs.get(ATTR_SPEC_TEXT)
    if text is None:
        raise ValueError(f"study {study.study_name!r} was not created by edmbench (no stored spec)")
    return parse_spec(text, source=f"storage:{study.study_name}", check_files=False)


def knobs_of(trial: Any, spec: StudySpec) -> dict[str, Any]:
    """Every SamplerConfig field of a trial: fixed + suggested + defaults for knobs it did not use (a
    searched knob that a stopped trial never chose is None)."""
    from edmbench.sampling import SamplerConfig

    try:
        knobs = SamplerConfig.from_dict({**spec.fixed, **trial.params}).to_dict()
    except (ValueError, TypeError):
        knobs = dict(trial.params)
    if trial.state.name not in ("COMPLETE", "PRUNED"):  # stopped before choosing: unknown, not default
        knobs.update({p.name: None for p in spec.space if p.name not in trial.params})
    return knobs


def trial_row(trial: Any, spec: StudySpec) -> dict[str, Any]:
    from edmbench.study.runner import ATTR_RETIRED

    attrs = {**trial.user_attrs, **trial.user_attrs.get("result", {}),
             **trial.user_attrs.get("provenance", {})}
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                           "retired": trial.system_attrs.get(ATTR_RETIRED)}
    row.update(knobs_of(trial, spec))
    row.update({"nfe": attrs.get("nfe"), "fid": attrs.get("fid"), "fid_err": attrs.get("fid_err"),
                "n_images": attrs.get("n_images"), "wall_time_s": attrs.get("wall_time_s")})
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        row["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    row.update({key: attrs.get(key) for key in NOTES})
    row.update({key: attrs.get(key) for key in PROVENANCE})
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


def best_row(table: Any) -> Any | None:
    """The COMPLETE trial with the lowest FID (pruned trials never qualify)."""
    done = complete(table)
    if done.empty:
        return None
    return done.loc[done["fid"].astype(float).idxmin()]


def baseline_row(table: Any) -> Any | None:
    """The first COMPLETE enqueued trial (the spec's first [[enqueue]] entry)."""
    done = complete(table)
    if done.empty or "enqueue_label" not in done:
        return None
    labelled = done[done["enqueue_label"].notna()]
    return None if labelled.empty else labelled.iloc[0]


def pareto_rows(table: Any) -> Any:
    """COMPLETE trials not dominated in (FID, NFE), sorted by NFE."""
    done = complete(table).sort_values(["nfe", "fid"])
    best, keep = float("inf"), []
    for index, row in done.iterrows():
        if row["fid"] < best:
            best = row["fid"]
            keep.append(index)
    return done.loc[keep]


def rescore_key(number: int, seed_start: int) -> str:
    return f"{RESCORE_PREFIX}{number}:{seed_start}"


def rescore_table(study: Any) -> Any:
    """Final re-scoring results (EDM protocol: fresh seed ranges, full image count), one row each."""
    import pandas as pd

    rows = [value for key, value in sorted(study.user_attrs.items()) if key.startswith(RESCORE_PREFIX)]
    return pd.DataFrame(rows)
