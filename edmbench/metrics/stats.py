"""Float64 streaming feature statistics and EDM's reference ``.npz`` format (EDM Sec. 7.6 / fid.py).

EDM's statistics are mu = sum(f) / N and the unbiased covariance Sigma = (sum(f f^T) - N mu mu^T) / (N - 1),
both float64. ``StreamingStats`` computes the same numbers batch by batch with Chan et al.'s pairwise update
(mean and centred scatter matrix), so any split of the stream gives the batch result to rounding.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_KEYS = ("mu", "sigma")
OPTIONAL_KEYS = ("n", "features", "provenance")


def _as_rows(features: Any) -> np.ndarray:
    """Features ``[B, D]`` (torch or numpy) as a float64 numpy array."""
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"features must have shape [B, D], got {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError("features contain NaN or infinity; the extractor or the images are broken")
    return rows


class StreamingStats:
    """Running mean and unbiased covariance of feature rows, float64 (Chan, Golub & LeVeque 1979).

    State: ``n`` rows seen, their ``mean`` and centred scatter matrix ``m2 = sum (f - mean)(f - mean)^T``.
    ``cov = m2 / (n - 1)`` matches ``numpy.cov(rowvar=False)`` and EDM's formula.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.n = 0
        self.dim = dim
        self.mean = np.zeros(dim) if dim is not None else None
        self.m2 = np.zeros((dim, dim)) if dim is not None else None

    def update(self, features: Any) -> StreamingStats:
        """Add a batch of feature rows ``[B, D]``; returns ``self``."""
        rows = _as_rows(features)
        if rows.shape[0] == 0:
            return self
        batch = StreamingStats(rows.shape[1])
        batch.n = rows.shape[0]
        batch.mean = rows.mean(axis=0)
        centred = rows - batch.mean
        batch.m2 = centred.T @ centred
        return self.merge(batch)

    def merge(self, other: StreamingStats) -> StreamingStats:
        """Fold ``other`` into ``self`` (pairwise update); returns ``self``."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.dim, self.mean, self.m2 = other.n, other.dim, other.mean.copy(), other.m2.copy()
            return self
        if other.dim != self.dim:
            raise ValueError(f"feature dimension {other.dim} does not match {self.dim}")
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.n / n)
        self.m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        self.n = n
        return self

    def copy(self) -> StreamingStats:
        out = StreamingStats(self.dim)
        if self.n:
            out.merge(self)
        return out

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance ``[D, D]`` (needs at least two rows)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 feature rows, have {self.n}")
        return self.m2 / (self.n - 1)

    def to_reference(self, provenance: dict | None = None) -> ReferenceStats:
        return ReferenceStats(self.mean.copy(), self.cov, n=self.n, provenance=dict(provenance or {}))


@dataclass
class ReferenceStats:
    """Reference statistics for FID: ``mu`` ``(D,)`` and ``sigma`` ``(D, D)``, float64, validated.

    ``n`` is the number of images behind them (None for EDM files, which do not record it). ``features``
    optionally holds a bounded sample of reference feature rows (needed for KID and precision/recall).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    provenance: dict = field(default_factory=dict)
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        _validate(self.mu, self.sigma, self.features)
        if self.n is not None:
            self.n = int(self.n)
        if self.features is not None:
            self.features = np.asarray(self.features, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @cached_property
    def sqrt_sigma(self) -> np.ndarray:
        """The symmetric PSD square root of ``sigma``, computed once per reference (``symmetric_sqrt``)."""
        return symmetric_sqrt(self.sigma)


def symmetric_sqrt(sigma: np.ndarray) -> np.ndarray:
    """A^(1/2) = V diag(sqrt(max(lambda, 0))) V^T from ``sigma = V diag(lambda) V^T`` (float64; negative
    rounding-level eigenvalues of a PSD matrix are clipped to 0)."""
    lam, vec = np.linalg.eigh(np.asarray(sigma, dtype=np.float64))
    root = vec * np.sqrt(np.clip(lam, 0.0, None))
    return root @ vec.T


def _validate(mu: np.ndarray, sigma: np.ndarray, features: np.ndarray | None) -> None:
    if mu.ndim != 1 or mu.shape[0] == 0:
        raise ValueError(f"'mu' must have shape (D,), got {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"'sigma' must have shape ({d}, {d}) to match 'mu', got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError("'mu' and 'sigma' must be finite (found NaN or infinity)")
    scale = max(float(np.abs(sigma).max()), 1e-300)
    if float(np.abs(sigma - sigma.T).max()) > 1e-6 * scale:
        raise ValueError("'sigma' is not symmetric, so it is not a covariance matrix")
    if features is not None:
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != d or not np.isfinite(features).all():
            raise ValueError(f"'features' must be finite rows of shape (K, {d}), got {features.shape}")


def save_reference(path: str | os.PathLike, stats: ReferenceStats) -> Path:
    """Write EDM's ``.npz`` (``mu``, ``sigma`` float64) plus our optional keys, atomically."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"mu": stats.mu, "sigma": stats.sigma}
    if stats.n is not None:
        arrays["n"] = np.asarray(stats.n, dtype=np.int64)
    if stats.features is not None:
        arrays["features"] = stats.features
    if stats.provenance:
        arrays["provenance"] = np.asarray(json.dumps(stats.provenance, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_reference(path: str | os.PathLike) -> ReferenceStats:
    """Read reference statistics from an EDM ``.npz`` (keys ``mu``, ``sigma``; optional ``n``, ``features``,
    ``provenance``). Wrong keys, shapes or non-finite values raise ``CheckpointError`` (a ``ValueError``);
    nothing is half-loaded."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"reference statistics file not found: {path}")
    from edmbench.errors import CheckpointError
    from edmbench.npzio import read_npz  # bounded: sizes checked before inflating, numeric dtypes only

    arrays = read_npz(path, "reference statistics", allow_unicode=("provenance",))
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    unknown = sorted(set(arrays) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        raise CheckpointError(f"{path}: reference .npz must hold keys {list(REQUIRED_KEYS)} (optional "
                              f"{list(OPTIONAL_KEYS)}); missing {missing}, unknown {unknown}")
    provenance = {"file": str(path)}
    if "provenance" in arrays:
        try:
            recorded = json.loads(str(arrays["provenance"]))
        except (json.JSONDecodeError, RecursionError):
            recorded = None
        if not isinstance(recorded, dict):
            raise CheckpointError(f"{path}: 'provenance' must be a JSON object string")
        provenance.update(recorded)
    if "n" in arrays and (arrays["n"].size != 1 or arrays["n"].dtype.kind not in "iu"):
        raise CheckpointError(f"{path}: 'n' must be one integer (the image count)")
    n = int(arrays["n"]) if "n" in arrays else None
    try:
        return ReferenceStats(arrays["mu"], arrays["sigma"], n=n, features=arrays.get("features"),
                              provenance=provenance)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
