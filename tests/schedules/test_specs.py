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


def test_cifar10_published_points_are_labelled_with_their_convention():
    spec = load_spec(STUDIES / "cifar10-low-nfe-schedules.toml", check_files=False)
    points = {(p.label.split(" [")[0], p.nfe): p.fid for p in spec.published}
    # issue 11's list: iPNDM 13.59@5, 2.77@10; GITS 8.38@5, 4.88@6, 3.24@8, 2.49@10;
    # LD3 9.31@4, 3.35@6, 2.81@8, 2.38@10; DMN/UniPC 2.45@10
    assert len(points) == 11
    assert points[("iPNDM-4, rho = 7", 5)] == 13.59 and points[("GITS + iPNDM", 6)] == 4.88
    assert points[("LD3 (learned schedule)", 4)] == 9.31
    assert points[("DMN (optimised steps) + UniPC", 10)] == 2.45
    assert all("sigma_min stop" in p.label and p.source for p in spec.published)
    assert spec.fixed["endpoint"] == "sigma_min"
