"""The study layer's contracts (issue 9): knobs judged together, objectives and samplers as one registry
entry each, the trial record filled for every trial, and rescoring/reporting split."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import optuna
import pytest
import torch

from edmbench.study import results
from edmbench.study._checks import SpecError
from edmbench.study.cli import main as cli_main
from edmbench.study.objective import trial_config
from edmbench.study.record import TrialRecord
from edmbench.study.runner import RunOptions, run_study
from edmbench.study.spec import parse_spec
from edmbench.study.storage import open_storage

sys.path.insert(0, str(Path(__file__).parent))
from conftest import spec_text, write_spec  # noqa: E402

EDM_VP_RHO = ('[space.discretization]\ntype = "categorical"\nchoices = ["edm", "vp"]\n'
              '[space.rho]\ntype = "float"\nlow = 2.0\nhigh = 10.0\n'
              '[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 6\n')


def _run(spec, tmp_path: Path):
    options = RunOptions(storage=f"journal:{tmp_path / 'journal.log'}", runs_dir=str(tmp_path / "runs"),
                         progress=False, heartbeat_s=1.0, grace_s=30.0)
    run_study(spec, options)
    study = optuna.load_study(study_name=spec.name, storage=open_storage(options.storage_url(spec)))
    return study, results.trials_table(study, spec)


# ---- knobs judged together --------------------------------------------------------------------------------

def test_issue_spec_edm_vp_with_rho_runs_every_trial(assets, tmp_path):
    """The issue's spec: discretization in {edm, vp} plus [space.rho]. rho is suggested only with edm."""
    text = spec_text(assets, "edmvp", space=EDM_VP_RHO, search='sampler = "random"', n_trials=6,
                     num_images=16, rungs="[8]")
    study, table = _run(parse_spec(text), tmp_path)
    assert table["state"].isin(["COMPLETE", "PRUNED"]).all(), table[["state", "fail_reason"]]  # no FAIL
    assert set(table["discretization"]) == {"edm", "vp"}  # seed 0 reaches both (random sampler)
    for trial in study.trials:
        assert ("rho" in trial.params) == (trial.params["discretization"] == "edm")
    assert (table.loc[table["discretization"] == "vp", "rho"] == 7.0).all()  # SamplerConfig's default


def test_fixed_knob_unread_by_a_reachable_parent_is_refused_before_any_work(assets, tmp_path, capsys):
    space = EDM_VP_RHO.replace('[space.rho]\ntype = "float"\nlow = 2.0\nhigh = 10.0\n', "")
    text = spec_text(assets, "refused", space=space).replace('sampler = "heun"',
                                                             'sampler = "heun"\nrho = 5.0')
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    assert len(err.value.problems) == 1
    problem = err.value.problems[0]
    assert problem.startswith("[fixed] rho = 5.0 has no effect") and "discretization = 'vp'" in problem
    runs = tmp_path / "runs"
    assert cli_main([str(write_spec(tmp_path, text)), "--runs-dir", str(runs), "--no-progress"]) == 2
    assert "rho = 5.0" in capsys.readouterr().err
    assert not runs.exists()  # no storage, no images


def test_searched_knob_that_no_trial_reads_is_refused(assets):
    space = EDM_VP_RHO.replace('choices = ["edm", "vp"]', 'choices = ["vp", "ve"]')
    with pytest.raises(SpecError, match=r"\[space.rho\] has no effect in any trial"):
        parse_spec(spec_text(assets, "never", space=space))


_SAMPLERS = ["euler", "heun", "dpm_2", "dpmpp_2m", "ipndm", "unipc", "euler_ancestral"]
_PARENTS = {"sampler": _SAMPLERS, "discretization": ["edm", "vp", "ve", "iddpm"],
            "schedule": ["linear", "vp", "ve"], "scaling": ["none", "vp"]}
_KNOBS = {"rho": (2.0, 10.0), "epsilon_s": (1e-3, 1e-2), "alpha": (0.5, 1.0), "eta": (0.0, 1.0),
          "s_churn": (0.0, 5.0), "s_noise": (1.0, 1.01), "order": (1, 3)}


def _random_spec(rng: random.Random, assets: dict[str, str], index: int) -> str:
    """A spec with random parents (fixed, searched or default) and knobs (fixed, searched or absent)."""
    fixed, space = [], []
    for parent, values in _PARENTS.items():
        roll = rng.random()
        if roll < 0.3:
            choices = rng.sample(values, rng.randint(1, 2))
            space.append(f'[space.{parent}]\ntype = "categorical"\nchoices = {choices!r}\n'.replace("'", '"'))
        elif roll < 0.5:
            fixed.append(f'{parent} = "{rng.choice(values)}"')
    for knob, (low, high) in _KNOBS.items():
        roll = rng.random()
        kind = "int" if isinstance(low, int) else "float"
        if roll < 0.25:
            space.append(f'[space.{knob}]\ntype = "{kind}"\nlow = {low}\nhigh = {high}\n')
        elif roll < 0.32:
            fixed.append(f"{knob} = {high}")
    space.append('[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 8\n')
    return spec_text(assets, f"prop{index}", space="".join(space)).replace('[fixed]\nsampler = "heun"',
                                                                            "[fixed]\n" + "\n".join(fixed))


def test_property_every_accepted_spec_runs_every_trial(assets):
    """Random spaces over sampler x discretization x schedule x scaling x knobs (seeded): an accepted spec's
    trials all build a SamplerConfig (no "has no effect" or other refusal), for many trials suggested by
    Optuna's samplers; a refused spec is refused by parse_spec, which runs before any storage exists."""
    rng, accepted, refused = random.Random(0), 0, 0
    for index in range(120):
        text = _random_spec(rng, assets, index)
        try:
            spec = parse_spec(text, check_files=False)
        except SpecError as exc:
            refused += 1
            assert exc.problems and all("\n" not in p for p in exc.problems)
            continue
        accepted += 1
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=index))
        for _ in range(25):
            trial = study.ask()
            trial_config(trial, spec)  # raises on any knob the trial's parents ignore
            study.tell(trial, 0.0)
    assert accepted >= 20 and refused >= 20, (accepted, refused)  # both sides are exercised


def test_new_sampler_with_a_new_knob_is_one_registry_entry(assets):
    """Registering a sampler and its knob is enough: the spec accepts the knob and the space suggests it
    only for that sampler."""
    from edmbench.sampling import SamplerConfig, get_sampler
    from edmbench.sampling.knobs import Knob, registered
    from edmbench.sampling.registry import SamplerInfo

    def check(value):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"test_knob must be in [0, 1], got {value}")
        return float(value)

    euler = get_sampler("euler")
    info = SamplerInfo("test_sampler", euler.fn, 1, euler.nfe, False, False, ("test_knob",), "test only")
    space = ('[space.sampler]\ntype = "categorical"\nchoices = ["heun", "test_sampler"]\n'
             '[space.test_knob]\ntype = "float"\nlow = 0.1\nhigh = 0.9\n')
    with registered("sampler", info, Knob("test_knob", 0.0, check, "test only")):
        spec = parse_spec(spec_text(assets, "newknob", space=space).replace('sampler = "heun"', ""))
        study, seen = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)), set()
        for _ in range(20):
            trial = study.ask()
            config = trial_config(trial, spec)
            seen.add(config.sampler)
            assert ("test_knob" in trial.params) == (config.sampler == "test_sampler")
            assert isinstance(config, SamplerConfig)
            study.tell(trial, 0.0)
        assert seen == {"heun", "test_sampler"}
    with pytest.raises(SpecError):  # gone with the registration
        parse_spec(spec_text(assets, "newknob", space=space).replace('sampler = "heun"', ""))


def test_dry_run_plan_reads_defaults_from_sampler_config(assets):
    """No hard-coded sampler or num_steps: without either, the plan's NFE is SamplerConfig()'s."""
    from edmbench.sampling import SamplerConfig
    from edmbench.study.plan import make_plan

    space = '[space.rho]\ntype = "float"\nlow = 2.0\nhigh = 10.0\n'
    spec = parse_spec(spec_text(assets, "plan", space=space).replace('sampler = "heun"', ""))
    plan = make_plan(spec)
    assert plan.nfe_min == plan.nfe_max == SamplerConfig().nfe


# ---- objectives keyed by name ------------------------------------------------------------------------------

class _MeanPixel:
    """Test-only meter: mean uint8 pixel value of the images seen, and its per-seed values."""

    def __init__(self) -> None:
        self.per_seed: list[float] = []

    def update(self, batch) -> None:
        self.per_seed += batch.images.to(torch.float64).flatten(1).mean(1).tolist()

    def result(self):
        from edmbench.metrics.evaluate import Score

        return Score(sum(self.per_seed) / len(self.per_seed), None, per_seed=list(self.per_seed))


def test_registered_objective_runs_a_study(assets, tmp_path):
    """A new objective is one ``register`` call: spec, directions, record, table and report pick it up."""
    from edmbench.generate import generate_images
    from edmbench.pretrained import load
    from edmbench.study.objectives import OBJECTIVES, Objective
    from edmbench.study.report import summary_markdown

    objective = Objective("mean_pixel", "maximize", "mean pixel", "test only",
                          score=lambda rung: rung.extra["mean_pixel"],
                          meter=lambda denoiser, config, seeds, device: _MeanPixel(), per_seed=True)
    with OBJECTIVES.override("mean_pixel", objective):  # the one entry (register() outside a test)
        text = spec_text(assets, "meanpix", n_trials=3, num_images=12, rungs="[4]").replace(
            'name = "meanpix"', 'name = "meanpix"\nobjectives = ["mean_pixel"]')
        spec = parse_spec(text)
        study, table = _run(spec, tmp_path)
        assert study.direction == optuna.study.StudyDirection.MAXIMIZE
        assert "mean_pixel" in table and "fid" not in table
        best = results.best_row(table, spec)
        assert best["mean_pixel"] == table.loc[table["state"] == "COMPLETE", "mean_pixel"].max()
        # oracle: the same configuration's images, averaged here independently of the pipeline
        config = trial_config(optuna.trial.FixedTrial(study.trials[int(best["number"])].params), spec)
        images = torch.cat([b.images for b in generate_images(load(assets["model"]), config, range(12))])
        assert best["mean_pixel"] == pytest.approx(images.to(torch.float64).mean().item(), rel=1e-12)
        assert "mean pixel" in summary_markdown(spec, table, results.rescore_table(study), {})
    with pytest.raises(SpecError, match="unknown objective 'mean_pixel'"):  # gone with the registration
        parse_spec(text)


def test_unknown_objective_is_refused_with_the_valid_names(assets):
    text = spec_text(assets, "badobj").replace('name = "badobj"', 'name = "badobj"\nobjectives = ["fdi"]')
    message = r"unknown objective 'fdi'; did you mean 'fid'\? Valid objective names: fid, kid, nfe"
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


# ---- the trial record -------------------------------------------------------------------------------------

def test_every_trial_records_its_image_count(assets, tmp_path):
    """num_images is filled for COMPLETE, PRUNED (the rung it reached) and constraint-pruned (0) trials."""
    space = ('[space.num_steps]\ntype = "int"\nlow = 2\nhigh = 4\n'
             '[space.rho]\ntype = "float"\nlow = 0.3\nhigh = 12.0\n')
    text = spec_text(assets, "counts", space=space, search='constraints = ["rho >= 1.0"]', n_trials=10,
                     num_images=16, rungs="[4, 8]")
    study, table = _run(parse_spec(text), tmp_path)
    assert table["num_images"].notna().all(), table[["state", "num_images"]]
    for _, row in table.iterrows():
        record = TrialRecord.read(study.trials[int(row["number"])])
        assert record.num_images == row["num_images"]
        if row["state"] == "COMPLETE":
            assert row["num_images"] == 16 and record.provenance["git_commit"] == row["git_commit"]
        elif row["pruned_reason"] and "constraint" in row["pruned_reason"]:
            assert row["num_images"] == 0
        else:
            assert row["num_images"] in (4, 8)


def test_record_round_trip():
    study = optuna.create_study()
    trial = study.ask()
    TrialRecord(scores={"fid": 1.5, "fid_err": 0.25}, num_images=8, wall_time_s=0.1234, nfe=7,
                provenance={"device": "cpu"}, enqueue_label="base").write(trial)
    study.tell(trial, 1.5)
    record = TrialRecord.read(study.trials[0])
    assert record.scores == {"fid": 1.5, "fid_err": 0.25} and record.num_images == 8
    assert record.wall_time_s == 0.123 and record.nfe == 7 and record.enqueue_label == "base"
    assert record.retired is None and record.pruned_reason is None
