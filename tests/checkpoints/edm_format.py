"""Write pickles in NVIDIA EDM's persistence format (for tests and benchmarks; never used to load).

An EDM ``.pkl`` is a plain pickle whose network modules reduce to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with meta = {type: 'class', version: 6,
module_src, class_name, state} (edm-facts.md Sec. 5.2); containers are real ``torch.nn.ModuleDict``s and
tensors pickle the way ``pickle.dump`` of torch modules does (``torch.storage._load_from_bytes``). The
writer produces exactly that stream with a pure-Python pickler that spells chosen globals by name, so no
fake ``torch_utils`` module is needed. Load this file by path (it is not an importable package module).
"""

from __future__ import annotations

import collections
import copy
import io
import pickle
import pickletools
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from edmbench.denoisers.precond import Precond


class _Persistent:
    """Pickles as ``_reconstruct_persistent_obj(meta)``, like EDM's persistent classes."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def __reduce__(self) -> tuple[Callable, tuple]:
        return (_reconstruct_stub, (self.meta,))


def _reconstruct_stub(meta: dict[str, Any]) -> None:  # pragma: no cover - only its name is pickled
    raise AssertionError("never called")


class NamedGlobalPickler(pickle._Pickler):
    """Pure-Python pickler that writes chosen objects as globals with a given (module, name)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: io.BytesIO, names: dict[int, tuple[str, str]], protocol: int = 4) -> None:
        super().__init__(file, protocol=protocol)
        self.names = names

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if id(obj) not in self.names:
            return super().save_global(obj, name)
        module, qualname = self.names[id(obj)]
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    dispatch[types.FunctionType] = save_global


def _mirror(module: nn.Module, module_src: str, version: int = 6) -> Any:
    """EDM's pickled form of ``module``: persistent record, or a real ModuleDict for containers."""
    state = dict(module.__dict__)
    state["_modules"] = collections.OrderedDict(
        (k, None if v is None else _mirror(v, module_src, version)) for k, v in module._modules.items()
    )
    if "skip_scale" in state:  # EDM stores np.sqrt(0.5): a numpy float64 scalar
        state["skip_scale"] = np.float64(state["skip_scale"])
    if isinstance(module, nn.ModuleDict):
        container = nn.ModuleDict.__new__(nn.ModuleDict)
        container.__dict__.update(state)
        return container
    state.pop("init_kwargs", None)
    state["_init_args"] = ()
    state["_init_kwargs"] = dict(module.init_kwargs) if isinstance(module, Precond) else {}
    meta = dict(
        type="class",
        version=version,
        module_src=module_src,
        class_name=getattr(module, "edm_class_name", None) or type(module).__name__,
        state=state,
    )
    return _Persistent(meta)


def edm_pickle_bytes(
    net: Precond,
    module_src: str = "# networks.py\n",
    numpy_module: str = "numpy._core.multiarray",
    version: int = 6,
) -> bytes:
    """Bytes of an EDM snapshot dict {ema, loss_fn, augment_pipe, dataset_kwargs} holding ``net``."""
    data = {
        "ema": _mirror(net, module_src, version),
        "loss_fn": None,
        "augment_pipe": None,
        "dataset_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "resolution": 8},
    }
    names = {
        id(_reconstruct_stub): ("torch_utils.persistence", "_reconstruct_persistent_obj"),
        id(np._core.multiarray.scalar): (numpy_module, "scalar"),
    }
    buf = io.BytesIO()
    NamedGlobalPickler(buf, names).dump(data)
    return buf.getvalue()


class EasyDictStub(dict):
    """Pickled under the name ``dnnlib.util.EasyDict`` (EDM2's top-level snapshot dict)."""


def edm2_pickle_bytes(net: Precond, module_src: str = "# networks_edm2.py\n") -> bytes:
    """Bytes of an EDM2 snapshot: EasyDict {encoder, dataset_kwargs, loss_fn, ema}; ``ema`` stored in fp16,
    the encoder record carrying numpy arrays (as StabilityVAEEncoder's scale/bias do)."""
    ema = copy.deepcopy(net).half()
    encoder_state = {
        "_init_args": (),
        "_init_kwargs": {},
        "scale": np.float32([0.1199, 0.1082, 0.1348, 0.1524]),
        "bias": np.float32([-0.6966, -0.3517, -0.0162, 0.3277]),
    }
    encoder = _Persistent(
        dict(
            type="class",
            version=6,
            module_src="# encoders.py\n",
            class_name="StabilityVAEEncoder",
            state=encoder_state,
        )
    )
    data = EasyDictStub(
        encoder=encoder, dataset_kwargs={"resolution": 8}, loss_fn=None, ema=_mirror(ema, module_src)
    )
    names = {
        id(_reconstruct_stub): ("torch_utils.persistence", "_reconstruct_persistent_obj"),
        id(EasyDictStub): ("dnnlib.util", "EasyDict"),
    }
    buf = io.BytesIO()
    NamedGlobalPickler(buf, names).dump(data)
    return buf.getvalue()


def payload_pickle(func: Callable, args: tuple, name: tuple[str, str], protocol: int = 4) -> bytes:
    """A pickle whose loading calls ``func(*args)``, with the global spelled ``name``."""

    class Payload:
        def __reduce__(self) -> tuple:
            return (func, args)

    buf = io.BytesIO()
    NamedGlobalPickler(buf, {id(func): name}, protocol=protocol).dump({"ema": Payload()})
    return buf.getvalue()


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """(module, name) of every GLOBAL / STACK_GLOBAL opcode, found by disassembling with pickletools."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []  # values pushed by recent opcodes; strings kept, anything else None
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            recent.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1] if recent else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            found.add((recent[-2], recent[-1]))
            recent.append(None)
        elif op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
            recent.append(None)
        else:
            recent.append(None)
    return found
