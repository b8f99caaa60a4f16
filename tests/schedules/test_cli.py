"""``edmbench schedule``: show levels, optimise into a knots snippet a spec can use; bad input exits 2."""

from __future__ import annotations

import tomllib

import pytest
import torch

from edmbench.cli import main
from edmbench.sampling import SamplerConfig, sigmas_for


def test_show_prints_the_levels(capsys):
    assert main(["schedule", "show", "--discretization", "logsnr", "--num-steps", "5"]) == 0
    out = capsys.readouterr().out
    # 5 levels uniform in log sigma on [0.002, 80], then 0: 80, 4 sqrt 2, 0.4, 0.02 sqrt 2, 0.002, 0
    assert out.strip() == "sigmas = [80, 5.656854249, 0.4, 0.02828427125, 0.002, 0]"


@pytest.mark.parametrize(("argv", "message"), [
    (["schedule", "show", "--discretization", "logsnrr", "--num-steps", "5"], "invalid choice: 'logsnrr'"),
    (["schedule", "optimise", "--model", "nowhere.npz", "--sampler", "euler", "--num-steps", "0"],
     "--num-steps must be >= 1, got 0"),
    (["schedule", "optimise", "--model", "nowhere.npz", "--sampler", "euler", "--num-steps", "4",
      "--sigma-min", "5", "--sigma-max", "1"], "need 0 < --sigma-min < --sigma-max"),
])
def test_bad_input_exits_2_naming_the_problem(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error" in last and message in last


def test_optimise_writes_a_knots_snippet_a_config_accepts(gmm, tmp_path):
    model = tmp_path / "gmm.npz"
    gmm.save_npz(model)
    out = tmp_path / "schedule.toml"
    assert main(["schedule", "optimise", "--model", str(model), "--sampler", "euler", "--num-steps", "4",
                 "--num-samples", "16", "--grid-size", "12", "--substeps", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "network calls per seed x 16 seeds" in text
    data = tomllib.loads(text)
    fixed = SamplerConfig.from_dict(data["fixed"])
    sigmas = sigmas_for(fixed)
    assert sigmas.tolist() == data["fixed"]["sigmas"] and len(sigmas) == 5 and sigmas[-1] == 0
    ends = {"sigma_min": data["fixed"]["sigmas"][-2], "sigma_max": data["fixed"]["sigmas"][0]}
    assert f"sigma_min = {ends['sigma_min']:.10g}" in text  # the knot fractions are relative to these ends
    knots = SamplerConfig.from_dict({**data["fixed"], "sigmas": None, **ends, **data["enqueue"][0]["params"]})
    torch.testing.assert_close(sigmas_for(knots), sigmas, rtol=1e-9, atol=0)


def test_one_thread_fixture_is_active():
    import torch

    assert torch.get_num_threads() == 1  # tests/conftest.py's one_thread, requested by this directory
