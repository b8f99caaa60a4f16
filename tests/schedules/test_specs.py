"""The low-NFE specs validate (without weights) and carry their published points with conventions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edmbench.study.spec import load_spec, load_specs

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.mark.parametrize("name", ["digits-low-nfe-knots", "cifar10-low-nfe-schedules"])
def test_spec_validates(name):
    spec = load_spec(STUDIES / f"{name}.toml", check_files=False)
    assert spec.name == name


def test_digits_low_nfe_is_one_study_per_nfe_with_every_solver_and_schedule_family():
    from edmbench.study.record import sampler_config

    specs = load_specs(STUDIES / "digits-low-nfe.toml", check_files=False)
    assert [s.fixed["num_steps"] for s in specs] == list(range(4, 11))
    solvers = {"euler", "ipndm", "dpmpp_2m", "unipc"}
    for spec in specs:
        n = spec.fixed["num_steps"]
        assert spec.name == f"digits-low-nfe-num_steps-{n}"
        space = {p.name: p for p in spec.space}
        assert set(space["sampler"].choices) == solvers
        assert set(space["discretization"].choices) == {"edm", "logsnr", "knots"}
        assert sorted(k for k in space if k.startswith("knot_")) == [f"knot_{k}" for k in range(1, n - 1)]
        by_family: dict[tuple[str, bool], set[str]] = {}
        for e in spec.enqueue:
            config = sampler_config(spec.fixed, e.params)  # every enqueued point is a valid configuration
            assert config.nfe == n  # single-evaluation solvers, EDM end point
            by_family.setdefault((e.params["discretization"], e.baseline), set()).add(e.params["sampler"])
        # baselines: every solver on rho = 7; starting points: every solver on logsnr and on the optimiser's
        assert by_family == {("edm", True): solvers, ("logsnr", False): solvers, ("knots", False): solvers}
        assert spec.enqueue[0].params == {"sampler": "ipndm", "discretization": "edm", "sigma_min": 0.002}
        assert spec.rescore is not None and spec.rescore.num_images == 2000


def test_cifar10_published_points_carry_source_and_convention():
    spec = load_spec(STUDIES / "cifar10-low-nfe-schedules.toml", check_files=False)
    points = {(p.label, p.nfe): p for p in spec.published}
    # issue 11's list: iPNDM 13.59@5, 2.77@10; GITS 8.38@5, 4.88@6, 3.24@8, 2.49@10;
    # LD3 9.31@4, 3.35@6, 2.81@8, 2.38@10; DMN/UniPC 2.45@10
    assert len(points) == 11
    assert points[("iPNDM-4, rho = 7", 5)].fid == 13.59 and points[("GITS + iPNDM", 6)].fid == 4.88
    assert points[("LD3 (learned schedule)", 4)].fid == 9.31
    assert points[("DMN (optimised steps) + UniPC", 10)].fid == 2.45
    assert all(p.source and p.convention is not None for p in spec.published)
    assert all(p.convention.endpoint == "sigma_min" and p.convention.counts == "calls"
               for p in spec.published)
    # diff-sampler states AFS off (ecosystem-facts 7.1): exact on the calls axis; the others are flagged
    exact = {p.label for p in spec.published if p.on_axis().exact}
    assert exact == {"iPNDM-4, rho = 7"}
    assert spec.fixed["endpoint"] == "sigma_min"


def test_a_knots_spec_missing_a_searched_fraction_is_refused_at_validation(tmp_path):
    from edmbench.study._checks import SpecError

    text = (STUDIES / "digits-low-nfe-knots.toml").read_text()
    # 6 steps need knot_1..knot_4; drop the search of knot_4 (SamplerConfig now refuses the complete configs)
    text = text.replace('[space.knot_4]\ntype = "float"\nlow = 0.0\nhigh = 1.0\n', "")
    text = text.replace(", knot_4 = 0.3930601813", "").replace(", knot_4 = 0.5", "")
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"missing: \['knot_4'\]"):
        load_spec(path, check_files=False)
