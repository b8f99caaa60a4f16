"""Reference statistics from folders, zips and arrays; the cache keyed by extractor and content hash."""

import zipfile

import numpy as np
import pytest
import torch

from edmbench.generate import ImageBatch, save_png
from edmbench.metrics import reference as R
from edmbench.metrics.stats import load_reference


@pytest.fixture(scope="module")
def images(make_images):
    return make_images(70, seed=11)


@pytest.fixture
def sources(tmp_path, images):
    """The same 70 images as a PNG folder (EDM layout), a zip, an NHWC .npy and an NCHW .npz."""
    save_png(ImageBatch(list(range(995, 1065)), images, None, 1), tmp_path / "folder")
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as zf:
        for path in sorted((tmp_path / "folder").rglob("*.png")):
            zf.write(path, path.relative_to(tmp_path / "folder"))
    np.save(tmp_path / "nhwc.npy", images.permute(0, 2, 3, 1).numpy())
    np.savez(tmp_path / "nchw.npz", images=images.numpy())
    return {name: tmp_path / name for name in ("folder", "data.zip", "nhwc.npy", "nchw.npz")}


def test_every_source_reads_the_same_images(sources, images):
    for path in sources.values():
        batches = list(R.iter_dataset_images(path, batch_size=32))
        assert [len(b) for b in batches] == [32, 32, 6]
        # seed-named files sort in seed order, so every source yields the images in the same order
        assert torch.equal(torch.cat(batches), images), path


def test_greyscale_and_bad_arrays(tmp_path):
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.save(tmp_path / "grey.npy", grey)
    (batch,) = R.iter_dataset_images(tmp_path / "grey.npy")
    assert batch.shape == (2, 1, 4, 4) and torch.equal(batch[:, 0], torch.from_numpy(grey))
    np.save(tmp_path / "float.npy", grey.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        list(R.iter_dataset_images(tmp_path / "float.npy"))
    np.save(tmp_path / "odd.npy", np.zeros((2, 5, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="C in"):
        list(R.iter_dataset_images(tmp_path / "odd.npy"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list(R.iter_dataset_images(tmp_path / "empty"))
    (tmp_path / "grey.txt").write_text("x")
    with pytest.raises(ValueError, match="must be a folder"):
        R.iter_dataset_images(tmp_path / "grey.txt")


def test_reference_is_cached_by_extractor_and_content(tmp_path, sources, extractor, monkeypatch):
    cache = tmp_path / "cache"
    first = R.reference_for_dataset(sources["nhwc.npy"], "random-conv", cache_dir=cache)
    direct = R.compute_reference(R.iter_dataset_images(sources["folder"]), extractor)
    np.testing.assert_allclose(first.sigma, direct.sigma, rtol=0, atol=1e-12)  # same images, same stats
    assert first.n == 70 and first.provenance["dataset_sha256"] == R.dataset_hash(sources["nhwc.npy"])
    (cached,) = cache.glob("random-conv-*-k0.npz")

    import edmbench.metrics.features as F

    monkeypatch.setattr(F, "get_extractor", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    again = R.reference_for_dataset(sources["nhwc.npy"], "random-conv", cache_dir=cache)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    # a changed dataset has another hash, so it misses the cache
    data = np.load(sources["nhwc.npy"])
    data[0, 0, 0, 0] ^= 1
    np.save(sources["nhwc.npy"], data)
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        R.reference_for_dataset(sources["nhwc.npy"], "random-conv", cache_dir=cache)
    assert load_reference(cached).n == 70


def test_folder_hash_covers_names_and_bytes(sources):
    folder = sources["folder"]
    before = R.dataset_hash(folder)
    first = sorted(folder.rglob("*.png"))[0]
    first.rename(first.with_name("renamed.png"))
    assert R.dataset_hash(folder) != before


def test_kept_feature_rows_and_stats_files_pass_through(tmp_path, sources):
    ref = R.reference_for_dataset(sources["data.zip"], "random-conv", keep_features=50, use_cache=False)
    assert ref.features.shape == (50, 64)
    from edmbench.metrics.stats import save_reference

    save_reference(tmp_path / "stats.npz", ref)
    back = R.reference_for_dataset(tmp_path / "stats.npz", "random-conv")
    np.testing.assert_array_equal(back.features, ref.features)
