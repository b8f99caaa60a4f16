"""Safe reading of NVIDIA EDM checkpoint pickles (``edm-*.pkl``, ``baseline-*.pkl``, training snapshots).

EDM pickles store each network module as a call to ``torch_utils.persistence._reconstruct_persistent_obj``
whose argument holds the module's *source code*, class name and ``__dict__`` (edm-facts.md Sec. 5). The
original loader executes that source. Here a restricted unpickler resolves only an allow-list of globals
(``ALLOWED_GLOBALS``), each mapped to an inert, data-only function; any other global is refused by name,
so nothing from the file runs. The embedded source is kept only as a sha256 for provenance. The network
is then rebuilt from the recorded class name and constructor keywords with edmbench's own modules and
loaded strictly.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edmbench.denoisers.native import CheckpointError, instantiate
from edmbench.denoisers.precond import Precond

PERSISTENCE_VERSION = 6  # torch_utils.persistence format version (edm-facts 5.2)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list; nothing from it was executed."""


@dataclass
class PersistentRecord:
    """Inert stand-in for an EDM persistent object: class name, source hash and the instance ``__dict__``."""

    class_name: str
    module_src_sha256: str
    state: dict[str, Any]


class ModuleDictRecord:
    """Inert stand-in for ``torch.nn.ModuleDict``: created by pickle's NEWOBJ, ``__dict__`` kept by BUILD."""

    class_name = "ModuleDict"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"ModuleDict state must be a dict, got {type(state).__name__}")
        self.state = dict(state)


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> PersistentRecord:
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never executes."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        kind = meta.get("type") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"unsupported persistent object {kind!r}; EDM pickles hold type 'class'")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise CheckpointError(
            f"unsupported EDM persistence version {meta.get('version')!r}; "
            f"this reader supports version {PERSISTENCE_VERSION}"
        )
    src = meta.get("module_src", "")
    digest = hashlib.sha256(src.encode("utf-8") if isinstance(src, str) else bytes(src)).hexdigest()
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {meta.get('class_name')!r} has no state dict")
    return PersistentRecord(class_name=str(meta.get("class_name")), module_src_sha256=digest, state=state)


def _load_storage(data: bytes) -> Any:
    """``torch.storage._load_from_bytes``: a legacy ``torch.save`` of one storage, read weights-only."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(f"refused a tensor storage payload: {exc}") from exc


def _rebuild_tensor(
    storage: Any,
    offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> Tensor:
    """``torch._utils._rebuild_tensor_v2`` without hooks or metadata side effects: data only."""
    return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(
    data: Tensor, requires_grad: bool = False, backward_hooks: Any = None, state: Any = None
) -> Tensor:
    """``torch._utils._rebuild_parameter[_with_state]``: the tensor itself (grad flag and hooks dropped)."""
    return data


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    """``numpy.core.multiarray.scalar`` restricted to plain numeric dtypes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError(f"refused numpy scalar of dtype {dtype!r}: only numeric scalars are allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(spec: str, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError(f"refused numpy dtype {spec!r}: object dtypes are not allowed")
    return dtype


class _CheckedArray(np.ndarray):
    """ndarray created by ``numpy.core.multiarray._reconstruct``; its BUILD state may not hold objects."""

    def __setstate__(self, state: tuple) -> None:
        if len(state) < 3 or np.dtype(state[2]).hasobject:
            raise UnsafePickleError(
                "refused a numpy array with an object dtype: only numeric arrays are allowed"
            )
        super().__setstate__(state)


def _numpy_reconstruct(cls: type, shape: tuple, dtype: bytes) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for plain ndarrays (EDM2 encoder scale/bias)."""
    if cls is not np.ndarray:
        raise UnsafePickleError(f"refused numpy array subclass {cls!r}: only numpy.ndarray is allowed")
    return _CheckedArray(shape, dtype=np.uint8)


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access; here just a dict)."""


# (module, name) -> inert replacement. Verified against fixtures written by the tests (see
# tests/checkpoints/); numpy's module is spelled numpy.core (NumPy 1) or numpy._core (NumPy 2).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("dnnlib.util", "EasyDict"): _EasyDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose global lookup returns only ``ALLOWED_GLOBALS`` mappings and refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: not on the allow-list of EDM checkpoint globals "
                f"({', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}); nothing was executed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refused persistent id {pid!r}: EDM pickles carry none (is this a torch.save file?)"
        )


def read_edm_pickle(path: str | os.PathLike) -> Any:
    """Unpickle an EDM checkpoint into inert records (dicts, tensors, ``PersistentRecord``s)."""
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f).load()
        except UnsafePickleError:
            raise
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        except (
            EOFError,
            pickle.UnpicklingError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
            RuntimeError,
            UnicodeDecodeError,
        ) as exc:
            raise CheckpointError(
                f"{path}: corrupt or truncated EDM pickle ({type(exc).__name__}: {exc})"
            ) from exc


def network_record(obj: Any) -> PersistentRecord:
    """The network inside an unpickled checkpoint: ``obj['ema']`` (EDM snapshots), or ``obj`` itself."""
    if isinstance(obj, dict) and "ema" in obj:
        obj = obj["ema"]
    if not isinstance(obj, PersistentRecord):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"no EDM network found: expected a dict with key 'ema' holding a persistent network, got {keys}"
        )
    return obj


def flat_state_dict(record: PersistentRecord | ModuleDictRecord, prefix: str = "") -> dict[str, Tensor]:
    """State dict of a recorded module tree: parameters, persistent buffers, then children (torch order)."""
    state = record.state
    out: dict[str, Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    entries = list(state.get("_parameters", {}).items())
    entries += [(k, v) for k, v in state.get("_buffers", {}).items() if k not in skip]
    for name, value in entries:
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{prefix}{name} is a {type(value).__name__}, expected a tensor")
        out[prefix + name] = value
    for name, child in state.get("_modules", {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord | ModuleDictRecord):
            raise CheckpointError(
                f"submodule {prefix}{name} is a {type(child).__name__}, not a network module"
            )
        out.update(flat_state_dict(child, f"{prefix}{name}."))
    return out


def source_hashes(record: PersistentRecord | ModuleDictRecord) -> set[str]:
    """sha256 of every embedded module source in the tree (provenance; the sources are never run)."""
    hashes = {record.module_src_sha256} if isinstance(record, PersistentRecord) else set()
    for child in record.state.get("_modules", {}).values():
        if isinstance(child, PersistentRecord | ModuleDictRecord):
            hashes |= source_hashes(child)
    return hashes


def _plain(value: Any) -> Any:
    """Constructor keywords as plain Python (numpy scalars -> numbers, tuples -> lists) for JSON configs."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def init_config(record: PersistentRecord) -> dict[str, Any]:
    """EDM class name + constructor keywords recorded by the persistence decorator."""
    args = record.state.get("_init_args") or ()
    kwargs = record.state.get("_init_kwargs")
    if args or not isinstance(kwargs, dict):
        raise CheckpointError(
            f"{record.class_name}: expected keyword-only constructor arguments "
            f"(_init_kwargs), got args={args!r}"
        )
    return {"class_name": record.class_name, "init_kwargs": _plain(kwargs)}


def load_edm_pickle(path: str | os.PathLike, device: str | torch.device = "cpu") -> Precond:
    """Read an EDM pickle without running its code and rebuild the network in edmbench's modules."""
    record = network_record(read_edm_pickle(path))
    config = init_config(record)
    try:
        model = instantiate(
            config["class_name"], config["init_kwargs"], flat_state_dict(record), device=device
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot rebuild {config['class_name']} from its recorded config: {exc}"
        ) from exc
    model.provenance = {
        "format": "edm-pickle",
        "class_name": record.class_name,
        "module_src_sha256": sorted(source_hashes(record)),
    }
    return model
