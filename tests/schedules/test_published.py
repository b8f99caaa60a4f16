"""Published points: their NFE convention is a field, and ``to_axis`` puts them on one axis (network calls per
image), exact where the count is certain, flagged where it is not."""

from __future__ import annotations

import pytest

from edmbench.sampling.conventions import EDM, Convention, PointConvention, to_axis
from edmbench.study._sections import PublishedPoint, read_published

# Heun by hand (EDM Alg. 1): N steps ending at 0 cost 2N - 1 calls; N full steps stopping at sigma_min, 2N.
HEUN_CALLS = {"zero": lambda n: 2 * n - 1, "sigma_min": lambda n: 2 * n}


def test_counted_calls_with_known_afs_are_exact_whatever_the_endpoint():
    for endpoint in ("zero", "sigma_min", "sigma_min_denoise"):
        for afs in (False, True):
            point = to_axis(7, PointConvention(endpoint, afs))
            assert point.exact and point.nfe == 7.0


@pytest.mark.parametrize("endpoint", ["zero", "sigma_min"])
def test_counted_steps_convert_by_the_solver_formula(endpoint):
    for steps in (3, 5, 9):
        point = to_axis(steps, PointConvention(endpoint, False, counts="steps", sampler="heun"))
        assert point.exact and point.nfe == HEUN_CALLS[endpoint](steps)
        # AFS replaces the first call: one fewer, still exact
        with_afs = to_axis(steps, PointConvention(endpoint, True, counts="steps", sampler="heun"))
        assert with_afs.exact and with_afs.nfe == HEUN_CALLS[endpoint](steps) - 1


def test_unverified_afs_and_missing_convention_are_flagged():
    point = to_axis(5, PointConvention("sigma_min", None))
    assert not point.exact and point.nfe == 5.0 and "5 or 4 calls" in point.note
    steps = to_axis(4, PointConvention("sigma_min", None, counts="steps", sampler="heun"))
    assert not steps.exact and steps.nfe == 8.0 and "8 or 7 calls" in steps.note
    bare = to_axis(5, None)
    assert not bare.exact and "not stated" in bare.note


def test_notes_name_where_the_point_differs_from_the_runs():
    point = to_axis(5, PointConvention("sigma_min", True), axis=EDM)
    assert "sigma_min" in point.note and "AFS" in point.note
    assert to_axis(5, PointConvention("sigma_min", False), axis=Convention("sigma_min")).note == ""


@pytest.mark.parametrize(("table", "message"), [
    ({"endpoint": "sigmamin"}, "endpoint"),
    ({"endpoint": "zero", "counts": "evaluations"}, "counts"),
    ({"endpoint": "zero", "counts": "steps"}, "needs the sampler"),
    ({"endpoint": "zero", "afs": "maybe"}, "afs must be"),
    ({"endpoint": "zero", "sampler": "heunn"}, "heun"),
    ({"afs": False}, "needs an endpoint"),
    ({"endpoint": "zero", "solver": "heun"}, "unknown convention keys"),
])
def test_bad_conventions_are_refused(table, message):
    with pytest.raises((ValueError, KeyError), match=message):
        PointConvention.from_dict(table)


def test_spec_reader_collects_convention_problems():
    problems: list[str] = []
    points = read_published([
        {"label": "a", "nfe": 5, "fid": 3.0, "convention": {"endpoint": "sigma_min", "afs": "unverified"}},
        {"label": "b", "nfe": 5, "fid": 3.0, "convention": {"endpoint": "nowhere"}},
        {"label": "c", "nfe": 5, "fid": 3.0},
    ], problems)
    assert points[0].convention == PointConvention("sigma_min", None)
    assert points[2].convention is None and not points[2].on_axis().exact
    assert len(problems) == 1 and "published.1" in problems[0] and "endpoint" in problems[0]


def test_published_point_on_axis_uses_the_converter():
    point = PublishedPoint("x", 6, 4.88, "src", PointConvention("sigma_min", None, sampler="ipndm"))
    assert point.on_axis() == to_axis(6, point.convention, EDM)
