"""Slow: the documented training command regenerates weights whose FID-digits matches the shipped ones."""

import math
import subprocess
import sys

import pytest

from edmbench.sampling import SamplerConfig


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["uncond"])
def test_documented_command_reproduces_fid(tmp_path, shipped, extractor, variant):
    """Retrain with ``python -m edmbench.digits.train`` (default recipe; ~15-30 min on 2 idle cores) and
    compare Heun-35 FID-digits (n = |half A| images, seeds 0..n-1, reference = half B) with the shipped
    model's: the difference must lie within 3 combined jackknife standard errors."""
    from edmbench.digits.evaluate import fid_with_error, model_fid, real_halves
    from edmbench.digits.features import reference_stats
    from edmbench.metrics.features import extract_features
    from edmbench.pretrained import load

    shipped_model = shipped(f"digits-edm-{variant}")
    out = tmp_path / f"digits-edm-{variant}.safetensors"
    subprocess.run([sys.executable, "-m", "edmbench.digits.train", "--variant", variant, "--out", str(out),
                    "--threads", "2"], check=True)
    half_a, half_b = real_halves()
    reference = reference_stats(half_b, extractor, keep_features=False)
    n = fid_with_error(extract_features(extractor, half_a), reference).n
    config = SamplerConfig(sampler="heun", num_steps=18)
    ours = model_fid(load(str(out)), config, n, reference, extractor)
    theirs = model_fid(shipped_model, config, n, reference, extractor)
    assert abs(ours.fid - theirs.fid) <= 3 * math.hypot(ours.fid_err, theirs.fid_err)
