"""The low-NFE specs validate (without weights) and carry their published points with conventions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edmbench.study.spec import load_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.mark.parametrize("name", ["digits-low-nfe", "digits-low-nfe-knots", "cifar10-low-nfe-schedules"])
def test_spec_validates(name):
    spec = load_spec(STUDIES / f"{name}.toml", check_files=False)
    assert spec.name == name


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
