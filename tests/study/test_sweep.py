"""``[sweep]``: one spec file, one whole study per value of a knob (e.g. per NFE); ``[space.knots]``: every
knot fraction the member's num_steps needs; ``[[enqueue]] baseline = false``: a starting point that is
confirmed only if it ranks in the top k."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import optuna
import pytest

from edmbench.study._checks import SpecError
from edmbench.study.spec import load_spec, load_specs, parse_spec, parse_specs

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_cli, spec_text, write_spec  # noqa: E402

SPACE = """
[space.discretization]
type = "categorical"
choices = ["edm", "knots"]

[space.knots]
type = "knots"

[sweep]
num_steps = [3, 4]
"""
ENQUEUE = """
[pruner]
type = "none"

[[enqueue]]
label = "rho 7"
params = { discretization = "edm" }

[[enqueue]]
label = "start at 3 steps"
baseline = false
params = { num_steps = 3, discretization = "knots", knot_1 = 0.5 }

[rescore]
top_k = 1
num_images = 32
seed_starts = [1000]
"""


def _text(assets, name="sw", space=SPACE, extra=ENQUEUE, **kw):
    return spec_text(assets, name, space=space, extra=extra, **kw).replace('sampler = "heun"',
                                                                         'sampler = "euler"')


def test_a_sweep_is_one_study_per_value_each_reparsing_on_its_own(assets):
    specs = parse_specs(_text(assets))
    assert [s.name for s in specs] == ["sw-num_steps-3", "sw-num_steps-4"]
    assert [s.fixed["num_steps"] for s in specs] == [3, 4]
    # euler, zero end point: L = num_steps levels, L - 2 knot fractions
    assert [[p.name for p in s.space if p.name.startswith("knot_")] for s in specs] == [
        ["knot_1"], ["knot_1", "knot_2"]]
    assert all((p.low, p.high) == (0.0, 1.0) for s in specs for p in s.space if p.name.startswith("knot_"))
    # the entry that names num_steps = 3 goes to that member only, without the swept knob
    assert [[e.label for e in s.enqueue] for s in specs] == [["rho 7", "start at 3 steps"], ["rho 7"]]
    assert specs[0].enqueue[1].params == {"discretization": "knots", "knot_1": 0.5}
    assert [e.baseline for e in specs[0].enqueue] == [True, False]
    for spec in specs:  # workers and reports re-parse the stored text: it must give this member back
        again = parse_spec(spec.source_text)
        assert (again.name, again.fixed, again.space, again.enqueue, again.sweep) == (
            spec.name, spec.fixed, spec.space, spec.enqueue, spec.sweep)
        assert spec.sweep.parent == "sw" and spec.sweep.values == (3, 4)
    assert specs[0].spec_hash != specs[1].spec_hash


def test_load_spec_of_a_sweep_says_it_is_several_studies(assets, tmp_path):
    path = write_spec(tmp_path, _text(assets))
    with pytest.raises(SpecError, match=r"sweep of 2 studies \(num_steps = \[3, 4\]\)"):
        load_spec(path)
    assert len(load_specs(path)) == 2


@pytest.mark.parametrize(("change", "message"), [
    (("num_steps = [3, 4]", "num_steps = []"), "non-empty list"),
    (("num_steps = [3, 4]", "num_steps = [3, 3]"), "distinct"),
    (("num_steps = [3, 4]", "num_steps = [3, 4]\nrho = [7.0]"), "exactly one knob"),
    (('sampler = "euler"', 'sampler = "euler"\nnum_steps = 5'), r"num_steps is also in \[fixed\]"),
    (("num_steps = [3, 4]", "num_steps = [3, 0]"), r"\[sweep\] num_steps = 0: "),
    (('params = { num_steps = 3, discretization = "knots", knot_1 = 0.5 }',
      'params = { num_steps = 4, discretization = "knots", knot_1 = 0.5 }'),
     r"\[sweep\] num_steps = 4: .*knot_2"),
])
def test_bad_sweeps_are_refused_naming_the_member(assets, change, message):
    with pytest.raises(SpecError, match=message):
        parse_specs(_text(assets).replace(*change))


def test_knots_space_needs_a_fixed_num_steps_and_no_explicit_knots(assets):
    no_sweep = SPACE.replace("[sweep]\nnum_steps = [3, 4]\n", "[space.num_steps]\ntype = \"int\"\nlow = 3\n"
                                                               "high = 4\n")
    with pytest.raises(SpecError, match=r"\[space.knots\] needs num_steps in \[fixed\] or \[sweep\]"):
        parse_specs(_text(assets, space=no_sweep, extra=""))
    both = SPACE + '[space.knot_1]\ntype = "float"\nlow = 0.0\nhigh = 1.0\n'
    with pytest.raises(SpecError, match=r"remove \[space.knot_1\]"):
        parse_specs(_text(assets, space=both, extra=""))


def test_a_sweep_runs_every_member_and_summarises(assets, tmp_path):
    path = write_spec(tmp_path, _text(assets, n_trials=4, num_images=32, rungs="[16]"))
    dry = run_cli(str(path), "--dry-run", cwd=tmp_path)
    assert "study 1 of 2: sw-num_steps-3" in dry.stdout and "study 2 of 2: sw-num_steps-4" in dry.stdout
    run_cli(str(path), "--no-progress", cwd=tmp_path, timeout=600)
    runs = tmp_path / "runs"
    for value in (3, 4):
        name = f"sw-num_steps-{value}"
        assert (runs / name / "summary.md").is_file()
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{runs / name / 'study.db'}")
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 4 and all(t.params.get("num_steps") is None for t in done)
        assert {t.user_attrs.get("enqueue_label") for t in done} >= {"rho 7"}
        roles = [v["role"] for k, v in study.user_attrs.items() if k.startswith("rescore:")]
        assert any("baseline: rho 7" in r for r in roles)
        assert not any("start at 3 steps" in r for r in roles)  # baseline = false: confirmed only if top k
    with open(runs / "sw" / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["value"] for r in rows] == ["3", "4"] and all(r["heldout"] for r in rows)
    summary = (runs / "sw" / "summary.md").read_text()
    assert "# Sweep sw: num_steps = [3, 4]" in summary and summary.count("| 3 | 3 |") == 1
    # the report command rebuilds the sweep summary from the storages alone
    (runs / "sw" / "summary.md").unlink()
    report = run_cli("report", str(path), cwd=tmp_path)
    assert "sweep summary written" in report.stdout and (runs / "sw" / "summary.md").is_file()
