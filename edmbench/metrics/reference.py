"""Reference statistics from a dataset (image folder, zip of images, or a uint8 ``.npy``/``.npz`` array),
cached by extractor and dataset content hash (what ``edmbench ref`` runs)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from edmbench.metrics.features import extract_features
from edmbench.metrics.kid_pr import FeatureReservoir
from edmbench.metrics.stats import ReferenceStats, StreamingStats, load_reference, save_reference

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CACHE_ENV = "EDMBENCH_CACHE"


def _pil_to_chw(data: bytes | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        arr = np.asarray(img.convert("L") if img.mode in ("L", "I", "I;16", "1") else img.convert("RGB"))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _stack(arrays: list[np.ndarray], origin: str) -> torch.Tensor:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images in {origin} differ in shape: {sorted(shapes)[:3]}; resize them first")
    return torch.from_numpy(np.stack(arrays))


def array_images(array: np.ndarray, origin: str = "array") -> np.ndarray:
    """A uint8 image array as ``[N, C, H, W]``: accepts [N,H,W] (grey), NHWC or NCHW with C in {1, 3}."""
    if array.dtype != np.uint8:
        raise ValueError(f"{origin}: images must be uint8 (quantise first), got {array.dtype}")
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4 and array.shape[-1] in (1, 3):
        return array.transpose(0, 3, 1, 2)
    if array.ndim == 4 and array.shape[1] in (1, 3):
        return array
    raise ValueError(f"{origin}: expected images [N,H,W], [N,H,W,C] or [N,C,H,W] with C in (1, 3), "
                     f"got shape {array.shape}")


def _load_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    with np.load(path, allow_pickle=False) as data:
        keys = data.files
        if "images" in keys or len(keys) == 1:
            return data["images" if "images" in keys else keys[0]]
    raise ValueError(f"{path}: an image .npz must hold one array or one named 'images', found {keys}")


def _folder_batches(path: Path, batch_size: int) -> Iterator[torch.Tensor]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{path}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    for start in range(0, len(files), batch_size):
        yield _stack([_pil_to_chw(f) for f in files[start:start + batch_size]], str(path))


def _zip_batches(path: Path, batch_size: int) -> Iterator[torch.Tensor]:
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        if not names:
            raise ValueError(f"{path}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
        for start in range(0, len(names), batch_size):
            yield _stack([_pil_to_chw(zf.read(n)) for n in names[start:start + batch_size]], str(path))


def _array_batches(path: Path, batch_size: int) -> Iterator[torch.Tensor]:
    images = array_images(_load_array(path), str(path))
    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.array(images[start:start + batch_size]))  # a writable copy


def iter_dataset_images(path: str | os.PathLike, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """uint8 ``[B, C, H, W]`` batches from a folder (recursive, sorted), a zip, or a ``.npy``/``.npz``."""
    path = Path(path)
    if path.is_dir():
        return _folder_batches(path, batch_size)
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.suffix.lower() == ".zip":
        return _zip_batches(path, batch_size)
    if path.suffix.lower() in (".npy", ".npz"):
        return _array_batches(path, batch_size)
    raise ValueError(f"{path}: a dataset must be a folder of images, a .zip, or a .npy/.npz uint8 array")


def dataset_hash(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of a folder's image files (sorted relative paths and contents)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                 and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{path}: nothing to hash (no file, or a folder without images)")
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def compute_reference(batches: Iterable, extractor: torch.nn.Module, *, keep_features: int = 0,
                      provenance: dict | None = None) -> ReferenceStats:
    """Float64 mu/sigma (EDM's unbiased covariance) of the features of all images in ``batches``,
    plus up to ``keep_features`` uniformly sampled feature rows (for KID / precision-recall)."""
    stats = StreamingStats()
    reservoir = FeatureReservoir(keep_features, seed=0) if keep_features > 0 else None
    for batch in batches:
        features = extract_features(extractor, getattr(batch, "images", batch))
        stats.update(features)
        if reservoir is not None:
            reservoir.update(features)
    ref = stats.to_reference(provenance)
    ref.features = None if reservoir is None else reservoir.rows
    return ref


def default_cache_dir() -> Path:
    """``$EDMBENCH_CACHE/refs``, else ``$XDG_CACHE_HOME/edmbench/refs`` (default ``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "refs"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edmbench" / "refs"


def reference_for_dataset(path: str | os.PathLike, extractor_name: str, *, weights_path=None,
                          device: str = "cpu", keep_features: int = 0, batch_size: int = 256,
                          cache_dir: str | os.PathLike | None = None,
                          use_cache: bool = True) -> ReferenceStats:
    """Reference statistics of a dataset for ``extractor_name``, computed once and then read from the cache
    ``<cache_dir>/<extractor>-<sha256[:16]>-k<keep_features>.npz``. A statistics ``.npz`` (``mu``/``sigma``
    keys) is returned as is."""
    from edmbench.metrics.features import get_extractor

    path = Path(path)
    if path.suffix.lower() == ".npz" and _is_stats_file(path):
        return load_reference(path)
    digest = dataset_hash(path)
    cached = Path(cache_dir or default_cache_dir()) / f"{extractor_name}-{digest[:16]}-k{keep_features}.npz"
    if use_cache and cached.is_file():
        return load_reference(cached)
    extractor = get_extractor(extractor_name, weights_path, device)
    provenance = {"dataset": str(path), "dataset_sha256": digest, "extractor": extractor_name}
    ref = compute_reference(iter_dataset_images(path, batch_size), extractor, keep_features=keep_features,
                            provenance=provenance)
    if use_cache:
        save_reference(cached, ref)
    return ref


def _is_stats_file(path: Path) -> bool:
    """True for a statistics ``.npz`` (member ``mu.npy``); reads only the archive's directory."""
    from edmbench.errors import CheckpointError

    try:
        with zipfile.ZipFile(path) as zf:
            return "mu.npy" in zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path} is not a readable .npz file ({type(err).__name__})") from None
