"""``edmbench ref`` and ``edmbench fid`` end to end (in process), and their early, clear errors."""

import json

import numpy as np
import pytest

from edmbench.cli import main
from edmbench.denoisers.analytic import GaussianMixtureDenoiser
from edmbench.metrics import features as F
from edmbench.metrics.cli import sampler_config_from_args
from edmbench.metrics.evaluate import evaluate_fid
from edmbench.sampling import SamplerConfig


@pytest.fixture(scope="module")
def files(tmp_path_factory, gaussian, gaussian_data):
    root = tmp_path_factory.mktemp("cli")
    mixture = GaussianMixtureDenoiser([1.0], gaussian.mean.reshape(1, -1), 0.09 * np.eye(192)[None],
                                      image_shape=(3, 8, 8))
    mixture.save_npz(root / "gmm.npz")
    np.save(root / "data.npy", gaussian_data.permute(0, 2, 3, 1).numpy())  # NHWC, like EDM's datasets
    return root


def test_ref_then_fid_match_the_python_api(files, capsys, monkeypatch):
    monkeypatch.setenv("EDMBENCH_CACHE", str(files / "cache"))
    assert main(["ref", str(files / "data.npy"), "--out", str(files / "ref.npz"),
                 "--extractor", "random-conv", "--device", "cpu"]) == 0
    assert "D=64, n=300" in capsys.readouterr().out
    argv = ["fid", "--denoiser", str(files / "gmm.npz"), "--ref", str(files / "ref.npz"), "--seeds", "0-59",
            "--extractor", "random-conv", "--device", "cpu", "--sampler", "heun", "--num-steps", "3",
            "--set", "s_churn=0.5", "--rungs", "30", "--batch-size", "25", "--json", str(files / "out.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rung num_images=30" in out and "num_images=60 NFE=5" in out
    record = json.loads((files / "out.json").read_text())
    config = SamplerConfig(sampler="heun", num_steps=3, s_churn=0.5)
    expected = evaluate_fid(GaussianMixtureDenoiser.from_npz(files / "gmm.npz"), config, "0-59",
                            files / "ref.npz", "random-conv", batch_size=25)
    # same images and features; the CLI's rung at 30 splits the statistics updates differently: rounding only
    assert record["fid"] == pytest.approx(expected.fid, rel=1e-9)
    assert record["num_images"] == 60 and record["nfe"] == 5
    assert record["provenance"]["sampler"] == config.to_dict()


def test_fid_with_a_dataset_reference_and_repeats(files, capsys, monkeypatch):
    monkeypatch.setenv("EDMBENCH_CACHE", str(files / "cache"))
    argv = ["fid", "--denoiser", str(files / "gmm.npz"), "--ref", str(files / "data.npy"), "--seeds", "0-19",
            "--extractor", "random-conv", "--device", "cpu", "--sampler", "euler", "--num-steps", "2",
            "--repeats", "2", "--uncertainty", "none", "--kid", "--prc", "--kid-subset-size", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "seeds 0-19:" in out and "seeds 20-39:" in out and "EDM protocol: FID min" in out
    assert "precision" in out and "kid" in out


def test_missing_inception_weights_stop_the_cli_before_loading_anything(files, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(F, "network_available", lambda *a, **k: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(F.WEIGHTS_ENV, raising=False)
    # the denoiser and reference do not exist: the weights error must come first
    code = main(["fid", "--denoiser", "no-such-model", "--ref", str(tmp_path / "none.npz"),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and F.INCEPTION_FILE in err and F.INCEPTION_URL in err and "no-such-model" not in err


def test_sampler_flags_come_from_the_dataclass(files, capsys):
    code = main(["fid", "--denoiser", "x", "--ref", "y", "--set", "s_chrun=1", "--extractor", "random-conv"])
    assert code == 2 and "did you mean 's_churn'" in capsys.readouterr().err
    from edmbench.cli import build_parser

    args = build_parser().parse_args(["fid", "--denoiser", "x", "--ref", "y", "--s-tmax", "inf", "--order",
                                      "none", "--sampler", "ipndm", "--set", "order=3", "--num-steps", "6"])
    assert sampler_config_from_args(args) == SamplerConfig(sampler="ipndm", num_steps=6, order=3)
