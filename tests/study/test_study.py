"""End-to-end studies in one process on the exact mixture (CPU, seconds): outputs, report from storage,
pruning, failures, reproducibility, multi-objective, grid and re-scoring."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from edmbench.study import results
from edmbench.study.cli import main as cli_main
from edmbench.study.runner import RunOptions, run_study
from edmbench.study.spec import parse_spec
from edmbench.study.storage import open_storage

sys.path.insert(0, str(Path(__file__).parent))
from conftest import spec_text, write_spec  # noqa: E402

BASELINE = '[[enqueue]]\nlabel = "EDM default"\nparams = {num_steps = 8, rho = 7.0}\n'


def _run(spec, tmp_path: Path, **kw):
    """Run in this process; journal storage unless given (SQLite commits cost ~10 ms each here)."""
    kw.setdefault("storage", f"journal:{tmp_path / 'journal.log'}")
    options = RunOptions(runs_dir=str(tmp_path / "runs"), progress=False, heartbeat_s=1.0, grace_s=30.0, **kw)
    run_study(spec, options)
    study = optuna.load_study(study_name=spec.name, storage=open_storage(options.storage_url(spec)))
    return study, results.trials_table(study, spec)


def test_end_to_end_outputs_and_report_from_storage(assets, tmp_path, monkeypatch):
    rescore = "[rescore]\ntop_k = 2\nnum_images = 32\nseed_starts = [1000, 2000]\n"
    path = write_spec(tmp_path, spec_text(assets, "e2e", extra=BASELINE + rescore))
    monkeypatch.chdir(tmp_path)
    assert cli_main([str(path), "--no-progress"]) == 0
    out = tmp_path / "runs" / "e2e"
    expected = ["trials.csv", "rescore.csv", "summary.md", "samples.png", "fid_vs_nfe.png", "fid_vs_nfe.svg",
                "history.png", "slice.png", "importances.png", "contour.png", "intermediate.png"]
    assert all((out / name).is_file() for name in expected), sorted(p.name for p in out.iterdir())
    import pandas as pd

    table = pd.read_csv(out / "trials.csv")
    assert len(results.counted(table)) == 6  # the budget
    for column in ("num_steps", "rho", "sampler", "nfe", "fid", "fid_err", "num_images", "wall_time_s",
                   "state",
                   "spec_hash", "git_commit", "torch_version", "device", "dtype", "seeds"):
        assert column in table.columns
    baseline = table[table["enqueue_label"] == "EDM default"].iloc[0]
    assert baseline["number"] == 0 and baseline["nfe"] == 2 * 8 - 1  # heun, EDM NFE rule 2N-1
    rescored = pd.read_csv(out / "rescore.csv")
    # top 2 AND every enqueued baseline (trial 0), each on both held-out ranges (issue 10)
    assert 0 in set(rescored["number"]) and len(set(rescored["number"])) in (2, 3)
    assert len(rescored) == 2 * len(set(rescored["number"])) and set(rescored["seed_start"]) == {1000, 2000}
    summary = (out / "summary.md").read_text()
    assert "## Best settings" in summary and "## Against the baseline" in summary
    assert "## Held-out confirmation" in summary and "in all." in summary
    # regenerate everything from storage alone, into a fresh folder, without the spec file
    (tmp_path / "spec.toml").unlink()
    url = f"sqlite:///{out / 'study.db'}"
    assert cli_main(["report", "--storage", url, "--study", "e2e", "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "trials.csv")
    pd.testing.assert_frame_equal(again, table)
    assert (tmp_path / "again" / "fid_vs_nfe.svg").is_file() and (tmp_path / "again" / "summary.md").is_file()


def test_same_spec_and_seed_reproduce_params_and_fids(assets, tmp_path):
    spec = parse_spec(spec_text(assets, "repro", n_trials=4))
    _, first = _run(spec, tmp_path / "a")
    _, second = _run(spec, tmp_path / "b")
    columns = ["state", "num_steps", "rho", "fid", "num_images"]
    assert first[columns].equals(second[columns])


def test_pruning_stops_bad_trials_and_never_picks_them(assets, tmp_path):
    # rho in [0.3, 1] with 2..4 steps gives much worse FIDs than the enqueued paper settings
    space = ('[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 4\n'
             '[space.rho]\ntype = "float"\nlow = 0.3\nhigh = 1.0\n')
    enqueue = "".join(f'[[enqueue]]\nlabel = "good {n}"\nparams = {{num_steps = {n}, rho = 7.0}}\n'
                      for n in (10, 11, 12))
    text = spec_text(assets, "prune", space=space, extra=enqueue + "[pruner]\nn_startup_trials = 3\n",
                     n_trials=8, num_images=32, rungs="[8, 16]")
    study, table = _run(parse_spec(text), tmp_path)
    pruned = table[table["state"] == "PRUNED"]
    assert len(pruned) >= 3, table[["number", "state", "fid", "num_images"]]
    assert (pruned["num_images"] < 32).all()  # stopped before the full image count
    best = results.best_row(table, parse_spec(text))
    assert best["state"] == "COMPLETE" and study.best_trial.number == best["number"]
    assert best["number"] not in set(pruned["number"])


def test_failing_trial_is_recorded_and_the_study_goes_on(assets, tmp_path):
    # s_noise = 1e100 with churn makes the samples overflow to inf/NaN (generate.quantize refuses them)
    space = '[space.s_noise]\ntype = "float"\nlow = 1.0\nhigh = 1.01\n'
    extra = ('[[enqueue]]\nlabel = "diverges"\nparams = {s_noise = 1e100}\n')
    text = spec_text(assets, "fails", space=space, extra=extra, n_trials=3).replace(
        'sampler = "heun"', 'sampler = "heun"\ns_churn = 10.0\nnum_steps = 4')
    _, table = _run(parse_spec(text), tmp_path)
    failed = table[table["state"] == "FAIL"]
    assert len(failed) == 1 and "NaN or infinite" in failed.iloc[0]["fail_reason"]
    assert (table["state"] == "COMPLETE").sum() == 2


def test_multi_objective_pareto(assets, tmp_path):
    text = spec_text(assets, "pareto", n_trials=6).replace('name = "pareto"',
                                                          'name = "pareto"\nobjectives = ["fid", "nfe"]')
    spec = parse_spec(text)
    study, table = _run(spec, tmp_path)
    assert (table["state"] == "COMPLETE").all()  # never pruned: Optuna cannot report in multi-objective
    front = results.pareto_rows(table, spec)
    optuna_front = {t.number for t in study.best_trials}
    assert set(front["number"]) <= optuna_front
    from edmbench.plots import fid_nfe_pareto
    from edmbench.study.report import summary_markdown

    assert fid_nfe_pareto(table, front).axes[0].get_xlabel().startswith("NFE")
    summary = summary_markdown(spec, table, results.rescore_table(study), {})
    assert "Pareto front" in summary and all(f"| {n} |" in summary for n in front["number"])


def test_constraints_and_conditional_knobs(assets, tmp_path):
    space = ('[space.sampler]\ntype = "categorical"\nchoices = ["euler", "heun"]\n'
             '[space.alpha]\ntype = "float"\nlow = 0.5\nhigh = 1.0\n'
             '[space.s_churn]\ntype = "float"\nlow = 0.0\nhigh = 5.0\n'
             '[space.s_tmin]\ntype = "float"\nlow = 0.0\nhigh = 2.0\n'
             '[space.s_tmax]\ntype = "float"\nlow = 0.0\nhigh = 2.0\n')
    text = spec_text(assets, "cond", space=space, search='constraints = ["s_tmin <= s_tmax"]', n_trials=8)
    text = text.replace('[fixed]\nsampler = "heun"', '[fixed]\nnum_steps = 4')
    _, table = _run(parse_spec(text), tmp_path)
    for _, row in table.iterrows():
        if row["sampler"] == "euler":  # euler never reads alpha, so it is not suggested and stays default
            assert row["alpha"] == 1.0
        if row["state"] == "COMPLETE":
            assert row["s_tmin"] <= row["s_tmax"]
        else:
            assert row["state"] == "PRUNED" and "s_tmin <= s_tmax" in row["pruned_reason"]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_grid_runs_every_point_once_in_process(assets, tmp_path, kind):
    space = ('[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 4\n'
             '[space.rho]\ntype = "categorical"\nchoices = [5.0, 7.0]\n')
    text = spec_text(assets, f"grid-{kind}", space=space, search='sampler = "grid"', extra=BASELINE
                     .replace("num_steps = 8", "num_steps = 3"), num_images=16, rungs="[8]")
    storage = f"journal:{tmp_path / 'j.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'g.db'}"
    _, table = _run(parse_spec(text), tmp_path, storage=storage)
    assert len(table) == 6 and table["grid_index"].tolist() == list(range(6))
    assert table[["num_steps", "rho"]].drop_duplicates().shape[0] == 6
    assert table.loc[table["enqueue_label"].notna(), ["num_steps", "rho"]].values.tolist() == [[3, 7.0]]


@pytest.mark.parametrize("sampler", ["gp", "cmaes", "random"])
def test_other_optuna_samplers_run(assets, tmp_path, sampler):
    text = spec_text(assets, f"s-{sampler}", search=f'sampler = "{sampler}"', n_trials=4, num_images=16,
                     rungs="[8]").replace("n_startup_trials = 3", "n_startup_trials = 2")
    _, table = _run(parse_spec(text), tmp_path)
    assert len(results.counted(table)) == 4 and (table["state"] != "FAIL").all()
