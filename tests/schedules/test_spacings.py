"""New spacings against their closed forms (values worked by hand or from the fact sheet)."""

from __future__ import annotations

import math

import pytest
import torch

from edmbench.sampling.spacings import logsnr_levels, polynomial_levels, time_uniform_levels, vp_time

# edm-facts.md §9.2: EDM rho = 7, N = 5 on [0.002, 80] (numpy float64).
EDM_5 = [80, 17.527831965, 2.5152189761, 0.16975275627, 0.002]
# logsnr, 5 levels on [0.002, 80]: ratio (0.002/80)^(1/4) = 1/(100 sqrt 2) -> 80, 40 sqrt2/10, 0.4, ...
LOGSNR_5 = [80, 4 * math.sqrt(2), 0.4, 0.02 * math.sqrt(2), 0.002]
# rho = 1: uniform in sigma, step (80 - 0.002)/4 = 19.9995.
LINEAR_5 = [80, 60.0005, 40.001, 20.0015, 0.002]
# rho = -1: uniform in 1/sigma from 1/80 = 0.0125 to 1/0.002 = 500, step 124.996875.
INVERSE_5 = [1 / (0.0125 + i * 124.996875) for i in range(5)]


def close(a: torch.Tensor, b: list[float], rtol: float = 1e-9) -> None:
    torch.testing.assert_close(a, torch.tensor(b, dtype=torch.float64), rtol=rtol, atol=0)


def test_logsnr_closed_form():
    close(logsnr_levels(5, 0.002, 80.0), LOGSNR_5, rtol=1e-12)
    logs = torch.log(logsnr_levels(11, 0.002, 80.0))
    torch.testing.assert_close(logs.diff(), torch.full((10,), math.log(0.002 / 80) / 10, dtype=torch.float64))


@pytest.mark.parametrize(("rho", "expected"), [(7.0, EDM_5), (1.0, LINEAR_5), (-1.0, INVERSE_5)])
def test_polynomial_closed_form(rho, expected):
    close(polynomial_levels(5, 0.002, 80.0, rho), expected)


def test_polynomial_tends_to_logsnr():
    # (a + u (b - a))^rho -> exp(log a + u (log b - log a)) as rho -> inf: error O(1/rho)
    big = polynomial_levels(6, 0.002, 80.0, 1e5)
    close(big, logsnr_levels(6, 0.002, 80.0).tolist(), rtol=1e-3)


def test_time_uniform_closed_form():
    # Independent re-derivation: t(sigma) = (sqrt(b^2 + 2 bd log(1 + s^2)) - b) / bd, EDM Table 1 VP.
    bd, b = 19.9, 0.1
    t_of = lambda s: (math.sqrt(b * b + 2 * bd * math.log(1 + s * s)) - b) / bd  # noqa: E731
    sigma_of = lambda t: math.sqrt(math.exp(0.5 * bd * t * t + b * t) - 1)  # noqa: E731
    t_hi, t_lo = t_of(80.0), t_of(0.002)
    assert t_hi == pytest.approx(0.933511, abs=1e-6)  # (sqrt(0.01 + 39.8 * 8.764210) - 0.1) / 19.9, by hand
    expected = [sigma_of(t_hi + i / 5 * (t_lo - t_hi)) for i in range(6)]
    close(time_uniform_levels(6, 0.002, 80.0), expected, rtol=1e-9)
    assert float(vp_time(80.0)) == pytest.approx(t_hi, rel=1e-12)


@pytest.mark.parametrize("fn", [logsnr_levels, time_uniform_levels, polynomial_levels])
def test_levels_decrease_from_max_to_min(fn):
    for n in (2, 3, 7, 40):
        levels = fn(n, 0.002, 80.0)
        assert levels.dtype == torch.float64 and levels.shape == (n,)
        assert (levels.diff() < 0).all()
        assert levels[0].item() == pytest.approx(80.0, rel=1e-12)
        assert levels[-1].item() == pytest.approx(0.002, rel=1e-9)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: logsnr_levels(5, 0.0, 80.0), "0 < sigma_min < sigma_max"),
    (lambda: time_uniform_levels(5, 1.0, 0.5), "0 < sigma_min < sigma_max"),
    (lambda: polynomial_levels(5, 0.002, 80.0, 0.0), "rho must be a finite non-zero"),
    (lambda: logsnr_levels(0, 0.002, 80.0), "num_levels must be an integer >= 1"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
