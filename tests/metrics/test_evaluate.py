"""The one-call API, EDM's repeated-seed protocol, and failing early."""

import pytest
import torch
import torch_fidelity

from edmbench.denoisers.base import CountingDenoiser
from edmbench.generate import generate_images
from edmbench.metrics import features as F
from edmbench.metrics.evaluate import edm_protocol, evaluate_fid
from edmbench.metrics.fid import fid_at_rungs
from edmbench.metrics.kid_pr import KIDPROptions
from edmbench.metrics.reference import compute_reference
from edmbench.sampling import SamplerConfig

CONFIG = SamplerConfig(sampler="heun", num_steps=4)


@pytest.fixture(scope="module")
def reference(extractor, gaussian_data):
    return compute_reference(gaussian_data.split(100), extractor)


def test_evaluate_fid_record_and_saved_pngs_score_the_same_elsewhere(tmp_path, gaussian, gaussian_data,
                                                                     reference):
    result = evaluate_fid(gaussian, CONFIG, "0-119", reference, "random-conv", batch_size=32, rungs=[80],
                          outdir=tmp_path / "png")
    assert result.num_images == 120 and [r.num_images for r in result.rungs] == [80, 120]
    assert result.nfe == CONFIG.nfe == 7  # counted per image; Heun 2N - 1
    assert result.interval[0] < result.fid_debiased < result.interval[1] and result.fid_err > 0
    assert result.provenance["seeds"] == "0-119" and result.provenance["sampler"]["num_steps"] == 4
    assert result.images_per_second > 0 and "num_images=120 NFE=7" in result.summary()
    # the PNGs (EDM layout) scored by torch-fidelity from the folder give the same FID (design.md: 1e-6)
    expected = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "png"), samples_find_deep=True, input2=_Dataset(gaussian_data), fid=True,
        feature_extractor="random-conv", cuda=False, cache=False, save_cpu_ram=True, verbose=False)
    assert result.fid == pytest.approx(expected["frechet_inception_distance"], rel=1e-6)


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_edm_protocol_scores_disjoint_seed_ranges(gaussian, extractor, reference):
    protocol = edm_protocol(gaussian, CONFIG, reference, extractor, num_images=70, repeats=2, batch_size=35)
    assert [r.provenance["seeds"] for r in protocol.results] == ["0-69", "70-139"]
    (second,) = fid_at_rungs(generate_images(gaussian, CONFIG, range(70, 140), batch_size=35), extractor,
                             reference)
    assert protocol.results[1].fid == second.fid  # the same computation, seed range 70-139
    fids = protocol.fids
    assert protocol.fid_min == min(fids) and protocol.fid_spread == max(fids) - min(fids)
    assert "spread" in protocol.summary()


def test_missing_weights_fail_before_any_generation(monkeypatch, tmp_path, gaussian, reference):
    monkeypatch.setattr(F, "network_available", lambda *a, **k: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(F.WEIGHTS_ENV, raising=False)
    counting = CountingDenoiser(gaussian)
    with pytest.raises(F.MissingWeightsError, match=F.INCEPTION_FILE):
        evaluate_fid(counting, CONFIG, "0-9", reference, "inception-v3-compat")
    assert counting.calls == 0


def test_kid_without_reference_rows_fails_before_generation(gaussian, reference):
    counting = CountingDenoiser(gaussian)
    with pytest.raises(ValueError, match="--keep-features"):
        evaluate_fid(counting, CONFIG, "0-9", reference, "random-conv", kid_pr=KIDPROptions(kid=True))
    assert counting.calls == 0
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_fid(counting, CONFIG, "0-9", reference, "random-conv", rungs=[20])
