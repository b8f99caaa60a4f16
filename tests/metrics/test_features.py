"""Extractor registry, offline Inception weights, and image preparation."""

import pytest
import torch

from edmbench.metrics import features as F
from edmbench.metrics.extractors import RANDOM_CONV, RandomConvExtractor


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, an empty torch hub cache, no weights variable."""
    monkeypatch.setattr(F, "network_available", lambda *a, **k: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(F.WEIGHTS_ENV, raising=False)
    return tmp_path


def test_project_extractor_is_registered_once(extractor):
    assert RANDOM_CONV in F.extractor_names() and "inception-v3-compat" in F.extractor_names()
    F.register_extractor(RANDOM_CONV, RandomConvExtractor)  # re-import: a no-op, not an error

    class Other(RandomConvExtractor):
        pass

    with pytest.raises(ValueError, match="already taken"):
        F.register_extractor(RANDOM_CONV, Other)


def test_unknown_extractor_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"Did you mean 'random-conv'.*inception-v3-compat"):
        F.get_extractor("random-cnv")


def test_extractor_is_deterministic_and_batch_invariant(extractor, make_images):
    images = make_images(10)
    whole = F.extract_features(extractor, images)
    parts = torch.cat([F.extract_features(extractor, images[:3]), F.extract_features(extractor, images[3:])])
    # float64 inside, one row never depends on its batch-mates: exact on CPU (design.md tolerances)
    assert whole.shape == (10, 64) and torch.equal(whole, parts)
    assert torch.equal(whole, F.extract_features(F.get_extractor(RANDOM_CONV), images))


def test_greyscale_is_repeated_to_three_channels(extractor, make_images):
    grey = make_images(4, channels=1)
    rgb = grey.repeat(1, 3, 1, 1)
    assert torch.equal(F.extract_features(extractor, grey), F.extract_features(extractor, rgb))
    with pytest.raises(ValueError, match="uint8"):
        F.extract_features(extractor, grey.float())
    with pytest.raises(ValueError, match="1 or 3"):
        F.extract_features(extractor, torch.zeros(1, 4, 8, 8, dtype=torch.uint8))


def test_missing_inception_weights_offline_names_file_url_and_places(offline):
    with pytest.raises(F.MissingWeightsError) as info:
        F.check_extractor_available("inception-v3-compat")
    message = str(info.value)
    for needle in (F.INCEPTION_FILE, F.INCEPTION_URL, "--inception-weights", F.WEIGHTS_ENV,
                   str(offline / "torch-home" / "hub" / "checkpoints")):
        assert needle in message
    with pytest.raises(F.MissingWeightsError):
        F.get_extractor("inception-v3-compat")


def test_local_inception_weights_are_found_in_order(offline, monkeypatch):
    cached = offline / "torch-home" / "hub" / "checkpoints" / F.INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")  # only located here, never loaded
    assert F.inception_weights_path() == cached
    F.check_extractor_available("inception-v3-compat")  # found locally: no network needed
    explicit = offline / "mine.pth"
    explicit.write_bytes(b"x")
    monkeypatch.setenv(F.WEIGHTS_ENV, str(offline / "env.pth"))
    assert F.inception_weights_path(explicit) == explicit  # explicit path beats the variable
    with pytest.raises(F.MissingWeightsError, match=r"\$EDMBENCH_INCEPTION_WEIGHTS .*env.pth"):
        F.inception_weights_path()  # the variable points nowhere: an error, not a silent fallback
    with pytest.raises(F.MissingWeightsError, match="absent.pth"):
        F.inception_weights_path(offline / "absent.pth")


def test_small_extractors_need_no_weights_offline(offline):
    F.check_extractor_available(RANDOM_CONV)
