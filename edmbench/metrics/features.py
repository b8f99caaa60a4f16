"""Feature extractors through torch-fidelity's registry: look-up, offline weights, uint8 images -> features.

Extractors are torch-fidelity ``FeatureExtractorBase`` subclasses registered by name. Project extractors
register themselves when their module is imported; this module imports the plug-in modules that
``edmbench.plugins`` lists for ``FEATURE_EXTRACTORS`` (lazily) so their names resolve.
``inception-v3-compat`` needs the TF-ported Inception weights (ecosystem facts 1.6): a path given
explicitly, ``$EDMBENCH_INCEPTION_WEIGHTS``, or the file in ``$TORCH_HOME/hub/checkpoints/``; otherwise
torch-fidelity downloads it, which needs a network.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from edmbench.metrics.inception import INCEPTION, INCEPTION_FILE, INCEPTION_URL, WEIGHTS_ENV  # noqa: F401


class MissingWeightsError(FileNotFoundError):
    """Extractor weights are neither on disk nor downloadable."""


def register_extractor(name: str, cls: type) -> None:
    """Register ``cls`` with torch-fidelity under ``name``; re-registering the same class is a no-op."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    existing = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if existing is None:
        register_feature_extractor(name, cls)
    elif existing.__qualname__ != cls.__qualname__ or existing.__module__ != cls.__module__:
        raise ValueError(f"feature extractor name {name!r} is already taken by {existing.__module__}."
                         f"{existing.__qualname__}")


def extractor_names() -> list[str]:
    """All registered extractor names (torch-fidelity's and the project's)."""
    _import_project_extractors()
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    return sorted(FEATURE_EXTRACTORS_REGISTRY)


def _import_project_extractors() -> None:
    from edmbench.plugins import FEATURE_EXTRACTORS, import_plugins

    import_plugins(FEATURE_EXTRACTORS)


def _check_name(name: str) -> None:
    names = extractor_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown feature extractor {name!r}.{hint} Registered: {', '.join(names)}")


def inception_weights_path(weights_path: str | os.PathLike | None = None) -> Path | None:
    """The local Inception weights file: explicit path, then ``$EDMBENCH_INCEPTION_WEIGHTS``, then torch's
    hub cache. A path or variable that points nowhere is an error; None if nothing is set or cached."""
    candidates = ((weights_path, "the weights path"), (os.environ.get(WEIGHTS_ENV), f"${WEIGHTS_ENV}"))
    for given, origin in candidates:
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise MissingWeightsError(f"{origin} {str(path)!r} is not a file; it must be "
                                          f"{INCEPTION_FILE} (download: {INCEPTION_URL})")
            return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cached if cached.is_file() else None


def network_available(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host`` accepts a TCP connection (the weight download's first step)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _missing_inception_message() -> str:
    return (f"Inception weights for {INCEPTION!r} are not available and this machine cannot download them.\n"
            f"  file: {INCEPTION_FILE}\n  URL:  {INCEPTION_URL}\n"
            f"Download it elsewhere, then either pass its path (--inception-weights PATH, or "
            f"weights_path=... in Python), set {WEIGHTS_ENV}=PATH, or put it in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}/ ($TORCH_HOME/hub/checkpoints/).")


def check_extractor_available(name: str, weights_path: str | os.PathLike | None = None) -> None:
    """Raise (before any generation) when ``name`` is unknown or its weights can be neither found nor
    fetched."""
    _check_name(name)
    if name == INCEPTION and inception_weights_path(weights_path) is None and not network_available():
        raise MissingWeightsError(_missing_inception_message())


def get_extractor(name: str, weights_path: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu") -> torch.nn.Module:
    """A ready torch-fidelity extractor (eval mode, on ``device``) returning the metric layer's features."""
    check_extractor_available(name, weights_path)
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    layer = cls.get_default_feature_layer_for_metric("fid")
    kwargs = {"verbose": False}
    if name == INCEPTION:
        kwargs["feature_extractor_weights_path"] = _str_or_none(inception_weights_path(weights_path))
    elif weights_path is not None:
        kwargs["feature_extractor_weights_path"] = str(weights_path)
    try:
        extractor = cls(name, [layer], **kwargs)
    except OSError as err:  # urllib's URLError is an OSError: the download failed after all
        if name == INCEPTION:
            raise MissingWeightsError(_missing_inception_message()) from err
        raise
    return extractor.requires_grad_(False).eval().to(device)


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def extractor_device(extractor: torch.nn.Module) -> torch.device:
    for tensor in list(extractor.parameters()) + list(extractor.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _no_tf32(device: torch.device) -> Iterator[None]:
    """TF32 off for cuDNN/cuBLAS while extracting on CUDA; the previous flags are restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def to_rgb(images: Tensor) -> Tensor:
    """uint8 ``[B, C, H, W]`` with C = 1 or 3 -> 3 channels (greyscale repeated, as EDM does)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be uint8 [B, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def extract_features(extractor: torch.nn.Module, images: Tensor) -> Tensor:
    """Features ``[B, D]`` (on the CPU) of uint8 images ``[B, C, H, W]``, through ``extractor.forward``."""
    device = extractor_device(extractor)
    with torch.no_grad(), _no_tf32(device):
        features = extractor(to_rgb(images).to(device))[0]
    return features.reshape(images.shape[0], -1).cpu()
