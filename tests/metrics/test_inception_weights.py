"""Real Inception weights (marked ``weights``; skipped when the file is not on this machine)."""

import pytest
import torch_fidelity

from edmbench.metrics import features as F
from edmbench.metrics.fid import fid_at_rungs
from edmbench.metrics.reference import compute_reference

pytestmark = pytest.mark.weights


def _weights():
    try:
        return F.inception_weights_path()
    except F.MissingWeightsError:
        return None


@pytest.mark.skipif(_weights() is None, reason=f"{F.INCEPTION_FILE} not found (set ${F.WEIGHTS_ENV} or "
                                               "put it in $TORCH_HOME/hub/checkpoints/)")
def test_inception_pipeline_matches_torch_fidelity(make_images, as_dataset):
    extractor = F.get_extractor(F.INCEPTION)
    gen, ref_images = make_images(80, seed=1, shift=0.3), make_images(90, seed=2)
    reference = compute_reference(ref_images.split(32), extractor)
    assert reference.dim == 2048
    (result,) = fid_at_rungs(gen.split(32), extractor, reference, uncertainty=None)
    expected = torch_fidelity.calculate_metrics(
        input1=as_dataset(gen), input2=as_dataset(ref_images), fid=True, cuda=False, cache=False,
        save_cpu_ram=True, verbose=False, feature_extractor_weights_path=str(_weights()))
    # design.md: float32 network outputs 1e-6 relative
    assert result.fid == pytest.approx(expected["frechet_inception_distance"], rel=1e-6)
