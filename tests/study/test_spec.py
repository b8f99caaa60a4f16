"""Spec validation: good specs load; each kind of bad spec gives a clear error before any work starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edmbench.study._checks import SpecError
from edmbench.study.space import Constraint, ParamSpec, grid_points, parse_constraint
from edmbench.study.spec import load_spec, parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from conftest import REPO, spec_text  # noqa: E402


def test_good_spec_loads(assets):
    spec = parse_spec(spec_text(assets, "ok"))
    assert spec.name == "ok" and spec.objectives == ("fid",)
    assert [p.name for p in spec.space] == ["num_steps", "rho"]
    assert spec.seeds == range(0, 32) and spec.metric.rungs == (8, 16)
    assert spec.fixed == {"sampler": "heun"}
    assert len(spec.spec_hash) == 64


# (what to change in a valid spec, a phrase the error must contain)
BAD = {
    "unknown key": (("[budget]", "[budget]\nn_trails = 3"),
                    "unknown key 'n_trails' (did you mean 'n_trials'?)"),
    "unknown section": (("[budget]", "[budgets]\n[budget]"), "unknown section [budgets]"),
    "unknown sampler": (('sampler = "heun"', 'sampler = "hune"'), "hune"),
    "unknown knob": (("[space.rho]", "[space.roh]"), "unknown key 'roh' (did you mean 'rho'?)"),
    "inverted range": (("low = 2.0\nhigh = 10.0", "low = 10.0\nhigh = 2.0"), "inverted range"),
    "missing reference": (('reference = "', 'reference = "/nonexistent/'), "reference file"),
    "missing model": (('model = "', 'model = "/nonexistent/'),
                      "neither a manifest name nor an existing file"),
    "unknown extractor": (('extractor = "random-conv"', 'extractor = "inceptoin"'), "not registered"),
    "bad type": (("num_images = 32", 'num_images = "many"'), "num_images must be an integer"),
    "rung beyond images": (("rungs = [8, 16]", "rungs = [8, 64]"), "must be below num_images"),
    "unsorted rungs": (("rungs = [8, 16]", "rungs = [16, 8]"), "strictly increasing"),
    "bad search sampler": (("n_startup_trials = 3", 'n_startup_trials = 3\nsampler = "bayes"'),
                           "sampler = 'bayes' is not valid"),
    "bad objectives": (('name = "bad"', 'name = "bad"\nobjectives = ["kid"]'), "objectives"),
    "bad constraint": (("n_startup_trials = 3", 'n_startup_trials = 3\nconstraints = ["s_tmin <= sigma"]'),
                       "neither searched nor fixed"),
    "fixed and searched": (('sampler = "heun"', 'sampler = "heun"\nrho = 7.0'), "either fixed or searched"),
    "out-of-range knob": (("low = 2.0\nhigh = 10.0", "low = -1.0\nhigh = 10.0"), "rho"),
    "continuous grid": (("n_startup_trials = 3", 'n_startup_trials = 3\nsampler = "grid"'),
                        "grid search needs a finite space"),
    "bad TOML": (("[budget]", "[budget"), "not valid TOML"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_spec_is_refused_with_a_clear_error(assets, kind):
    (old, new), phrase = BAD[kind]
    text = spec_text(assets, "bad")
    assert old in text, f"test bug: {old!r} not in the template"
    with pytest.raises(SpecError) as info:
        parse_spec(text.replace(old, new, 1))
    assert phrase in str(info.value)


def test_errors_are_collected_not_first_only(assets):
    text = spec_text(assets, "bad").replace("[budget]", "[budget]\nn_trails = 3").replace(
        'sampler = "heun"', 'sampler = "hune"')
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert len(info.value.problems) >= 2


def test_bad_spec_starts_no_work(assets, tmp_path):
    from conftest import run_cli, write_spec

    path = write_spec(tmp_path, spec_text(assets, "nowork").replace("[space.rho]", "[space.roh]"))
    proc = run_cli(str(path), "--no-progress", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown key 'roh'" in proc.stderr
    assert not (tmp_path / "runs").exists()  # no storage, no outputs


def test_missing_spec_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "absent.toml")


def test_enqueue_must_name_searched_knobs(assets):
    text = spec_text(assets, "enq", extra='[[enqueue]]\nlabel = "x"\nparams = {s_churn = 1.0}\n')
    with pytest.raises(SpecError, match="not a searched knob"):
        parse_spec(text)


def test_axis_probes_change_one_knob_at_a_time_from_the_first_baseline(assets):
    base = '[[enqueue]]\nlabel = "default"\nparams = {num_steps = 6, rho = 7.0}\n'
    spec = parse_spec(spec_text(assets, "probes", search='probes = "axes"', extra=base))
    probes = spec.enqueue[1:]
    assert [(e.label, e.params, e.baseline) for e in probes] == [
        ("probe: num_steps = 2", {"num_steps": 2, "rho": 7.0}, False),
        ("probe: num_steps = 12", {"num_steps": 12, "rho": 7.0}, False),
        ("probe: rho = 2", {"num_steps": 6, "rho": 2.0}, False),
        ("probe: rho = 10", {"num_steps": 6, "rho": 10.0}, False)]
    at_end = '[[enqueue]]\nlabel = "default"\nparams = {num_steps = 12, rho = 7.0}\n'  # no duplicate point
    spec = parse_spec(spec_text(assets, "probes", search='probes = "axes"', extra=at_end))
    assert [e.params["num_steps"] for e in spec.enqueue] == [12, 2, 12, 12]
    assert len({tuple(e.params.items()) for e in spec.enqueue}) == len(spec.enqueue)
    with pytest.raises(SpecError, match="needs a first \\[\\[enqueue\\]\\] baseline"):
        parse_spec(spec_text(assets, "probes", search='probes = "axes"'))
    with pytest.raises(SpecError, match="probes"):
        parse_spec(spec_text(assets, "probes", search='probes = "corners"', extra=base))


def test_param_extremes_are_the_range_ends_or_every_choice():
    assert ParamSpec("rho", "float", low=2.0, high=12.0).extremes() == [2.0, 12.0]
    assert ParamSpec("s", "float", low=0.0, high=1.0, step=0.3).extremes() == [0.0, 0.9]  # on the step grid
    assert ParamSpec("n", "int", low=4, high=24, step=3).extremes() == [4, 22]
    assert ParamSpec("sampler", "categorical", choices=("euler", "heun")).extremes() == ["euler", "heun"]


def test_grid_points_respect_constraints():
    space = [ParamSpec("s_tmin", "float", low=0.0, high=1.0, step=0.5),
             ParamSpec("s_tmax", "categorical", choices=(0.5, 2.0))]
    constraint = parse_constraint("s_tmin <= s_tmax", ["s_tmin", "s_tmax"])
    points = list(grid_points(space, {}, [constraint]))
    # 3 x 2 = 6 combinations; only (1.0, 0.5) breaks s_tmin <= s_tmax
    assert len(points) == 5 and {"s_tmin": 1.0, "s_tmax": 0.5} not in points


def test_constraint_parsing():
    c = parse_constraint(" s_tmin <= s_tmax ", ["s_tmin", "s_tmax"])
    assert c == Constraint("s_tmin <= s_tmax", "s_tmin", "<=", "s_tmax")
    assert parse_constraint("rho > 2", ["rho"]).holds({"rho": 3.0})
    with pytest.raises(ValueError, match="must look like"):
        parse_constraint("s_tmin <=", ["s_tmin"])


SHIPPED = sorted((REPO / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_specs_validate_and_plan(path):
    """Every shipped spec is valid (local files may be absent: real weights are downloaded at run time); a
    sweep's every member is."""
    from edmbench.study.plan import make_plan
    from edmbench.study.spec import load_specs

    for spec in load_specs(path, check_files=False):
        plan = make_plan(spec)
        assert plan.n_trials >= 1 and plan.nfe_min >= 1 and plan.image_evaluations > 0
        if not spec.denoiser.model.startswith("digits-"):  # the embedded default has no published numbers
            assert spec.published, "specs for real checkpoints state the published numbers they reproduce"
            assert plan.gpu_hours is not None, "specs for real checkpoints state an estimated GPU time"


def test_quickstart_inputs_exist():
    """The README's main-job spec validates with its files checked (the embedded default ships them)."""
    spec = load_spec(REPO / "studies" / "quickstart.toml")
    assert spec.enqueue[0].params["num_steps"] == 18 and spec.search.sampler == "tpe"


def test_published_points_merge_spec_and_manifest_without_duplicates():
    from edmbench.study.report import published_points

    spec = load_spec(REPO / "studies" / "edm-table5-cifar10-vp.toml", check_files=False)
    points = published_points(spec)
    pairs = [(p.nfe, p.fid) for p in points]
    assert (383, 2.27) in pairs and (35, 3.01) in pairs  # the spec's Table 5 row; the manifest's Table 2 row
    assert len(pairs) == len(set(pairs))


def test_real_checkpoint_spec_fails_before_any_work_without_inception_weights(tmp_path):
    """No Inception weights and no network here: the run stops with the metrics package's message and
    leaves no storage behind."""
    from conftest import run_cli

    from edmbench.metrics.features import inception_weights_path, network_available

    if inception_weights_path() is not None or network_available():
        pytest.skip("Inception weights are available here, so the run would start")
    proc = run_cli(str(REPO / "studies" / "edm-rho-sweep.toml"), "--no-progress", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Inception weights" in proc.stderr
    assert not (tmp_path / "runs").exists()
