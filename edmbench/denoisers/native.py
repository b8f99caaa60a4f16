"""edmbench's native checkpoint format: one safetensors file whose header carries a JSON config.

The tensors are the preconditioner's state dict (EDM key names); the header's ``__metadata__`` holds
``{"edmbench": JSON}`` with ``format``, ``version``, ``class_name``, ``init_kwargs`` and ``provenance``.
Reading it needs no pickle at all: safetensors cannot carry code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from edmbench.denoisers.layers import skip_init
from edmbench.denoisers.precond import Precond, build_precond

FORMAT = "edmbench-native"
VERSION = 1
METADATA_KEY = "edmbench"


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, of an unknown format or inconsistent with its config."""


def save_native(model: Precond, path: str | os.PathLike, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a preconditioner) as safetensors + JSON config; atomic (``.part`` then rename)."""
    from safetensors.torch import save_file

    if not isinstance(model, Precond):
        raise TypeError(
            f"save_native needs an edmbench preconditioner (VP/VE/iDDPM/EDMPrecond), got {type(model)}"
        )
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, **model.config, "provenance": provenance or {}}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    part = path.with_name(path.name + ".part")
    save_file(tensors, str(part), metadata={METADATA_KEY: json.dumps(header)})
    os.replace(part, path)
    return path


def read_native_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config stored in a native file's header (class name, constructor keywords, provenance)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{path}: safetensors file without an edmbench config (header key {METADATA_KEY!r})"
        )
    config = json.loads(metadata[METADATA_KEY])
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: unsupported native format {config.get('format')!r} version "
            f"{config.get('version')!r}; this edmbench reads {FORMAT!r} version {VERSION}"
        )
    return config


def load_native(path: str | os.PathLike, device: str | torch.device = "cpu") -> Precond:
    """Rebuild the network from a native file: config from the header, weights loaded strictly."""
    from safetensors.torch import load_file

    config = read_native_config(path)
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors data ({exc})") from exc
    model = instantiate(config["class_name"], config["init_kwargs"], state, device=device)
    model.provenance = config.get("provenance", {})
    return model


def instantiate(
    class_name: str, init_kwargs: dict[str, Any], state: dict[str, Tensor], device: str | torch.device = "cpu"
) -> Precond:
    """Build a preconditioner (weights left uninitialised) and load ``state`` into it strictly, as float32.

    Missing, unexpected or wrongly shaped entries raise ``CheckpointError`` naming them. Returns the network
    in eval mode with gradients off.
    """
    with torch.device(device), skip_init():
        model = build_precond(class_name, dict(init_kwargs))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{class_name} state dict does not match its config: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}"
        )
    bad = [k for k, v in expected.items() if tuple(v.shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{class_name}: {len(bad)} tensors have the wrong shape, e.g. {k} is "
            f"{tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
        )
    model.load_state_dict(state, strict=True)  # copies (and casts to float32) into the module's tensors
    return model.to(device).eval().requires_grad_(False)


def _few(keys: list[str], n: int = 8) -> str:
    return str(keys[:n])[:-1] + (", ...]" if len(keys) > n else "]")
