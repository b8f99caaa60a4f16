"""Safe reading of NVIDIA EDM checkpoint pickles (``edm-*.pkl``, ``baseline-*.pkl``, training snapshots).

EDM pickles store each network module as a call to ``torch_utils.persistence._reconstruct_persistent_obj``
whose argument holds the module's *source code*, class name and ``__dict__`` (edm-facts.md Sec. 5). The
original loader executes that source. Here nothing from the file runs and nothing is built from its state
that the format does not need:

1. the opcode stream is scanned first (``scan_pickle``): opcode count, memo size and indices, MARK nesting,
   declared byte/string/integer sizes are checked against ``PickleLimits`` before anything is built;
2. a restricted unpickler resolves only ``ALLOWED_GLOBALS``, each mapped to an inert, data-only token
   (no ``numpy.dtype``/``numpy.ndarray``/``torch.Tensor`` is ever built from the file's state; numeric arrays
   and scalars are constructed here from an allow-listed dtype string, a shape and an exact byte count);
3. tensor storages (torch's legacy ``torch.save`` of one storage) are parsed by hand with the same limits;
4. the network is rebuilt from the recorded class name and constructor keywords with edmbench's modules,
   after its parameter count and every tensor shape were checked against the file (``native.instantiate``).

Every refusal is a ``CheckpointError`` (``UnsafePickleError``, ``LimitError``) naming the file and the rule.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import mmap
import os
import pickle
import pickletools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edmbench.denoisers.native import check_readable_file, instantiate, reader_boundary
from edmbench.denoisers.precond import Precond
from edmbench.errors import CheckpointError, LimitError, UnsafePickleError, describe, env_int

PERSISTENCE_VERSION = 6  # torch_utils.persistence format version (edm-facts 5.2)
MAX_DEPTH = 64  # nesting of module records / containers walked after unpickling
MAX_NDIM = 8


@dataclass(frozen=True)
class PickleLimits:
    """Bounds on one pickle stream, checked by ``scan_pickle`` before anything is unpickled.

    Defaults fit every published EDM/EDM2 checkpoint with a wide margin (ADM-ImageNet: ~1.2 GB, a few
    thousand tensors). ``max_file_bytes`` is set by ``$EDMBENCH_MAX_CHECKPOINT_BYTES``.
    """

    max_file_bytes: int = 16 << 30
    max_opcodes: int = 1_000_000  # published EDM networks: ~45k
    max_memo: int = 500_000
    max_marks: int = 256
    max_int_bytes: int = 64
    max_str_bytes: int = 16 << 20  # strings (module sources) and non-storage bytes

    @classmethod
    def from_env(cls) -> PickleLimits:
        return cls(max_file_bytes=env_int("EDMBENCH_MAX_CHECKPOINT_BYTES", cls.max_file_bytes))


_STR_OPS = {
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "BINSTRING",
    "SHORT_BINSTRING",
    "STRING",
}
_REFUSED_OPS = {
    "PERSID",
    "BINPERSID",
    "EXT1",
    "EXT2",
    "EXT4",
    "INST",
    "OBJ",
    "NEXT_BUFFER",
    "READONLY_BUFFER",
}
_MARK_CONSUMERS = {
    "TUPLE",
    "LIST",
    "DICT",
    "APPENDS",
    "SETITEMS",
    "ADDITEMS",
    "FROZENSET",
    "POP_MARK",
    "INST",
    "OBJ",
}
_LENGTH_BYTES = {-2: 1, -3: 4, -4: 4, -5: 8}  # pickletools' TAKEN_FROM_ARGUMENT{1,4,4U,8U}


def _opcode_table() -> list[tuple[str, int, int] | None]:
    """Per opcode byte: (name, argument kind, size). Kinds: 0 fixed ``size`` bytes, 1 a ``size``-byte
    little-endian length then that many bytes, 2 one text line, 3 two text lines (GLOBAL, INST)."""
    table: list[tuple[str, int, int] | None] = [None] * 256
    for op in pickletools.opcodes:
        n = op.arg.n if op.arg is not None else 0
        if n >= 0:
            entry = (op.name, 0, n)
        elif n == pickletools.UP_TO_NEWLINE:
            entry = (op.name, 3 if op.arg.name == "stringnl_noescape_pair" else 2, 0)
        else:
            entry = (op.name, 1, _LENGTH_BYTES[n])
        table[ord(op.code)] = entry
    return table


_OPCODES = _opcode_table()
_MAX_LINE = 1 << 16


def scan_pickle(
    buf: Any, limits: PickleLimits, what: str = "pickle", start: int = 0, persid: bool = False
) -> int:
    """Walk one pickle's opcodes in ``buf`` (bytes or mmap) without building anything; refuse what exceeds
    ``limits``: opcode count, memo indices and size, MARK nesting, integer and string sizes, declared
    lengths beyond the end of the data, and opcodes EDM checkpoints never use. Returns the end offset.
    """
    end, pos, count, memo, marks = len(buf), start, 0, 0, 0
    while pos < end:
        entry = _OPCODES[buf[pos]]
        if entry is None:
            raise CheckpointError(f"{what}: corrupt or truncated EDM pickle (unknown opcode at byte {pos})")
        name, kind, size = entry
        pos += 1
        count += 1
        if count > limits.max_opcodes:
            raise LimitError(f"{what} has more than {limits.max_opcodes:,} opcodes (limit)")
        arg = pos
        if kind == 0:
            pos += size
        elif kind == 1:
            length = int.from_bytes(buf[pos : pos + size], "little", signed=name in ("LONG4", "BINSTRING"))
            pos += size
            if length < 0 or length > end - pos:
                raise CheckpointError(
                    f"{what}: corrupt or truncated EDM pickle ({name} declares {length:,} "
                    f"bytes, {max(end - pos, 0):,} left)"
                )
            if name in ("LONG1", "LONG4") and length > limits.max_int_bytes:
                raise LimitError(
                    f"{what} holds a {length:,}-byte integer; limit {limits.max_int_bytes} bytes"
                )
            if name in _STR_OPS and length > limits.max_str_bytes:
                raise LimitError(f"{what} holds a {length:,}-byte string; limit {limits.max_str_bytes:,}")
            pos += length
        else:
            for _ in range(kind - 1):
                stop = buf.find(b"\n", pos, min(end, pos + _MAX_LINE))
                if stop < 0:
                    raise CheckpointError(
                        f"{what}: corrupt or truncated EDM pickle ({name} without a newline "
                        f"within {_MAX_LINE} bytes)"
                    )
                pos = stop + 1
        if pos > end:
            raise CheckpointError(f"{what}: corrupt or truncated EDM pickle ({name} runs past the end)")
        if name == "STOP":
            return pos
        if name == "MARK":
            marks += 1
            if marks > limits.max_marks:
                raise LimitError(f"{what} nests more than {limits.max_marks} MARKs (limit)")
        elif name in _MARK_CONSUMERS:
            marks -= 1
            if marks < 0:
                raise CheckpointError(f"{what}: corrupt or truncated EDM pickle ({name} without a MARK)")
        if name in _REFUSED_OPS and not (persid and name == "BINPERSID"):
            raise UnsafePickleError(
                f"{what} uses opcode {name}, which EDM checkpoints never need; nothing was executed"
            )
        if name == "MEMOIZE":
            memo += 1
            index = memo - 1
        elif name in ("LONG_BINPUT", "LONG_BINGET", "PUT", "GET"):
            raw = buf[arg:pos]
            index = int.from_bytes(raw, "little") if name[0] == "L" else _decimal(raw, what)
            memo += name.endswith("PUT")
        elif name == "FRAME":
            frame = int.from_bytes(buf[arg:pos], "little")
            if frame > end - pos:
                raise CheckpointError(
                    f"{what}: corrupt or truncated EDM pickle (a frame of {frame:,} bytes, "
                    f"{end - pos:,} left)"
                )
            continue
        elif name == "LONG" and pos - arg > 4 * limits.max_int_bytes:
            raise LimitError(f"{what} holds a {pos - arg:,}-digit integer (limit)")
        else:
            continue
        if index >= limits.max_memo or memo > limits.max_memo:
            raise LimitError(f"{what} memo index {index:,} exceeds the limit of {limits.max_memo:,}")
    raise CheckpointError(f"{what}: corrupt or truncated EDM pickle (no STOP opcode)")


def _decimal(raw: bytes, what: str) -> int:
    text = bytes(raw).strip()
    if not text.isdigit() or len(text) > 12:
        raise CheckpointError(f"{what}: corrupt EDM pickle (memo index {text[:20]!r})")
    return int(text)


def _short(exc: BaseException, limit: int = 120) -> str:
    """First line of an exception message, bounded and printable (no heap contents beyond that)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:limit] + ("..." if len(text) > limit else "")


# --- inert tokens: what the allow-listed globals produce --------------------------------------------------

# numpy dtype strings accepted in pickled numpy scalars/arrays: plain numeric types only
NUMPY_DTYPES = frozenset(
    {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"}
)


class _Token:
    """Base for the inert objects the unpickler builds: refuse BUILD unless a subclass allows it."""

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"refused BUILD on {type(self).__name__.lstrip('_')}: not part of the format")


class DtypeToken(_Token):
    """``numpy.dtype(spec, align, copy)`` + BUILD (version 3, byte order, no fields, no object flags)."""

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or spec not in NUMPY_DTYPES:
            raise UnsafePickleError(
                f"refused numpy dtype {describe(spec)}: only plain numeric dtypes "
                f"({', '.join(sorted(NUMPY_DTYPES))}) are allowed"
            )
        self.spec, self.order = spec, "|" if spec in ("b1", "i1", "u1") else "<"

    def __setstate__(self, state: Any) -> None:
        ok = (
            isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and state[1] in ("<", "|", "=")
            and state[2:5] == (None, None, None)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in state[5:8])
            and state[5:7] == (-1, -1)
            and state[7] == 0
        )
        if not ok:
            raise UnsafePickleError(
                f"refused numpy dtype state for {self.spec!r}: only little-endian plain numeric dtypes "
                "(no fields, subarrays or object flags) are allowed"
            )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<" + self.spec)


def _numpy_scalar(dtype: Any = None, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` for plain numeric dtypes, built from exact bytes."""
    if not isinstance(dtype, DtypeToken) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise UnsafePickleError(
            "refused numpy scalar: expected an allow-listed numeric dtype and exactly its item size in bytes"
        )
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0].copy()


class _NdarrayClass:
    """Stands for the global ``numpy.ndarray``: usable only as ``_reconstruct``'s first argument."""

    __slots__ = ()


NDARRAY = _NdarrayClass()


class ArrayToken(_Token):
    """``_reconstruct(ndarray, (0,), b'b')`` + BUILD (1, shape, dtype, fortran, bytes) -> numeric array."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise UnsafePickleError("refused a second BUILD on a numpy array")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise UnsafePickleError("refused numpy array state: expected (1, shape, dtype, fortran, bytes)")
        _, shape, dtype, fortran, data = state
        shape = _check_shape(shape, "numpy array shape")
        if not isinstance(dtype, DtypeToken):
            raise UnsafePickleError("refused numpy array: its dtype must be an allow-listed numeric dtype")
        if not isinstance(data, bytes) or not isinstance(fortran, bool):
            raise UnsafePickleError(
                "refused numpy array: only numeric arrays stored as raw bytes are allowed"
            )
        need = math.prod(shape) * dtype.dtype.itemsize
        if len(data) != need:
            raise CheckpointError(
                f"numpy array of shape {shape} needs {need:,} bytes, the file holds {len(data):,}"
            )
        flat = np.frombuffer(data, dtype=dtype.dtype).copy()
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _numpy_reconstruct(cls: Any = None, shape: Any = None, dtype: Any = None) -> ArrayToken:
    if cls is not NDARRAY:
        raise UnsafePickleError("refused numpy array subclass: only numpy.ndarray is allowed")
    return ArrayToken()


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if (
        not isinstance(shape, tuple | list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < (1 << 40) for s in shape)
    ):
        raise CheckpointError(
            f"{what} must be at most {MAX_NDIM} non-negative integers, got {describe(shape)}"
        )
    return tuple(shape)


class StorageToken(_Token):
    """One tensor storage: its dtype and raw little-endian bytes (parsed by ``read_legacy_storage``)."""

    def __init__(self, dtype: torch.dtype, data: memoryview, numel: int) -> None:
        self.dtype, self.data, self.numel = dtype, data, numel
        self._flat: Tensor | None = None

    def flat(self) -> Tensor:
        """The storage as a 1-D tensor over the file's bytes (read-only use: it is copied into the model)."""
        if self._flat is None:
            if self.numel == 0:
                self._flat = torch.empty(0, dtype=self.dtype)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # non-writable buffer: never written to
                    self._flat = torch.frombuffer(self.data, dtype=self.dtype)
        return self._flat


class TensorToken(_Token):
    """``_rebuild_tensor_v2(storage, offset, size, stride, ...)``, the view checked against the storage."""

    def __init__(
        self, storage: StorageToken, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    def tensor(self) -> Tensor:
        return torch.as_strided(self.storage.flat(), self.size, self.stride, self.offset)


def _rebuild_tensor(
    storage: Any = None, offset: Any = None, size: Any = None, stride: Any = None, *_ignored: Any
) -> TensorToken:
    """``torch._utils._rebuild_tensor_v2`` without hooks or metadata: a checked view of a storage."""
    if not isinstance(storage, StorageToken):
        raise UnsafePickleError("refused a tensor whose storage is not a tensor storage payload")
    size, stride = _check_shape(size, "tensor size"), _check_shape(stride, "tensor stride")
    if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
        raise CheckpointError("tensor view: size and stride must have equal lengths and offset be >= 0")
    if math.prod(size) > 0:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise CheckpointError(
                f"tensor view of size {size} reaches element {last:,} of a {storage.numel:,}-element storage"
            )
    return TensorToken(storage, offset, size, stride)


def _rebuild_parameter(data: Any = None, *_ignored: Any) -> TensorToken:
    """``torch._utils._rebuild_parameter[_with_state]``: the tensor (grad flag, hooks, state dropped)."""
    if not isinstance(data, TensorToken):
        raise UnsafePickleError("refused a parameter that does not wrap a tensor")
    return data


@dataclass
class PersistentRecord(_Token):
    """Inert stand-in for an EDM persistent object: class name, source hash and the instance ``__dict__``."""

    class_name: str
    module_src_sha256: str
    state: dict[str, Any]


class ModuleDictRecord(_Token):
    """Inert stand-in for ``torch.nn.ModuleDict``: created by pickle's NEWOBJ, ``__dict__`` kept by BUILD."""

    class_name = "ModuleDict"

    def __init__(self, *_args: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or getattr(self, "state", None):
            raise CheckpointError(f"ModuleDict state must be one dict, got {describe(state)}")
        self.state = dict(state)


def _reconstruct_persistent_obj(meta: Any = None) -> PersistentRecord:
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never executes."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        kind = meta.get("type") if isinstance(meta, dict) else meta
        raise CheckpointError(
            f"unsupported persistent object {describe(kind)}; EDM pickles hold type 'class'"
        )
    if meta.get("version") != PERSISTENCE_VERSION:
        raise CheckpointError(
            f"unsupported EDM persistence version {describe(meta.get('version'))}; "
            f"this reader supports version {PERSISTENCE_VERSION}"
        )
    src, name, state = meta.get("module_src", ""), meta.get("class_name"), meta.get("state")
    if not isinstance(src, str):
        raise CheckpointError(f"persistent object: module_src must be a string, got {describe(src)}")
    if not isinstance(name, str) or not name.isidentifier() or len(name) > 128:
        raise CheckpointError(
            f"persistent object: class_name must be a Python identifier, got {describe(name)}"
        )
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {name!r} has no state dict")
    digest = hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()
    return PersistentRecord(class_name=name, module_src_sha256=digest, state=state)


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access; here just a dict)."""

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError("refused BUILD on EasyDict: not part of the format")


# --- tensor storages: torch's legacy single-storage format --------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: torch.dtype
    numel: int


class _StorageHeaderUnpickler(pickle.Unpickler):
    """Unpickler for the small pickles of a legacy storage: only ``torch.<X>Storage`` names, one pid."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise UnsafePickleError(
            f"refused a tensor storage payload: global {describe(module)}.{describe(name)} "
            f"is not a torch storage type; nothing was executed"
        )

    def persistent_load(self, pid: Any) -> Any:
        ok = (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], torch.dtype)
            and isinstance(pid[2], str)
            and len(pid[2]) <= 64
            and isinstance(pid[4], int)
            and 0 <= pid[4] < (1 << 40)
            and (len(pid) == 5 or pid[5] is None)
        )
        if not ok:
            raise UnsafePickleError("refused a tensor storage payload: malformed storage record")
        return _StorageRef(pid[2], pid[1], pid[4])


def _small_pickle(buf: bytes, pos: int, limits: PickleLimits, what: str) -> tuple[Any, int]:
    end = scan_pickle(buf, limits, what, start=pos, persid=True)
    return _StorageHeaderUnpickler(io.BytesIO(buf[pos:end])).load(), end


def read_legacy_storage(data: Any, limits: PickleLimits | None = None) -> StorageToken:
    """Parse ``torch.save(storage, _use_new_zipfile_serialization=False)`` bytes without ``torch.load``.

    Layout: pickles of the magic number, protocol 1001 and sys_info, the storage's persistent record, the
    storage keys; then per storage an int64 element count and the raw bytes. Every size is checked.
    """
    if not isinstance(data, bytes):
        raise UnsafePickleError("refused a tensor storage payload: expected bytes")
    if data[:2] == b"PK":
        raise UnsafePickleError(
            "refused a tensor storage payload: a zip archive; EDM pickles store storages "
            "in torch's legacy (non-zip) format"
        )
    limits = limits or PickleLimits(max_opcodes=200, max_memo=64, max_marks=4, max_str_bytes=256)
    buf, what = data, "tensor storage payload"
    magic, pos = _small_pickle(buf, 0, limits, what)
    proto, pos = _small_pickle(buf, pos, limits, what)
    sys_info, pos = _small_pickle(buf, pos, limits, what)
    if magic != LEGACY_MAGIC or proto != LEGACY_PROTOCOL:
        raise UnsafePickleError("refused a tensor storage payload: not torch's legacy storage format")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise CheckpointError(f"{what}: only little-endian storages are supported")
    ref, pos = _small_pickle(buf, pos, limits, what)
    keys, pos = _small_pickle(buf, pos, limits, what)
    if not isinstance(ref, _StorageRef) or keys != [ref.key]:
        raise UnsafePickleError("refused a tensor storage payload: expected exactly one storage")
    if len(buf) - pos < 8:
        raise CheckpointError(f"{what}: corrupt or truncated EDM pickle (no element count)")
    count = int.from_bytes(buf[pos : pos + 8], "little", signed=True)
    nbytes = ref.numel * torch.empty(0, dtype=ref.dtype).element_size()
    if count != ref.numel or len(buf) - pos - 8 != nbytes:
        raise CheckpointError(
            f"{what}: declares {count:,} elements ({ref.numel:,} in its record) but holds "
            f"{len(buf) - pos - 8:,} bytes; expected {nbytes:,}"
        )
    return StorageToken(ref.dtype, memoryview(data)[pos + 8 :], ref.numel)


# (module, name) -> inert replacement; numpy's module is spelled numpy.core (NumPy 1) or numpy._core (NumPy 2)
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): read_legacy_storage,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): DtypeToken,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): NDARRAY,
    ("dnnlib.util", "EasyDict"): _EasyDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose global lookup returns only ``ALLOWED_GLOBALS`` mappings and refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refused to load global {_short(module, 80)}.{_short(name, 80)}: not on the allow-list of "
                "EDM "
                f"checkpoint globals ({', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}); "
                "nothing was executed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            "refused a persistent id: EDM pickles carry none (is this a torch.save file?)"
        )


def read_edm_pickle(path: str | os.PathLike, limits: PickleLimits | None = None) -> Any:
    """Unpickle an EDM checkpoint into inert records (dicts, ``TensorToken``s, ``PersistentRecord``s)."""
    limits = limits or PickleLimits.from_env()
    path = check_readable_file(path, limits.max_file_bytes)
    with reader_boundary(path, "EDM pickle"), open(path, "rb") as f:
        if path.stat().st_size == 0:
            raise CheckpointError("corrupt or truncated EDM pickle (empty file)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            scan_pickle(buf, limits, "EDM pickle")
            buf.seek(0)
            try:
                return RestrictedUnpickler(buf).load()
            except (pickle.UnpicklingError, EOFError) as exc:
                if isinstance(exc, CheckpointError):
                    raise
                raise CheckpointError(f"corrupt or truncated EDM pickle ({_short(exc)})") from None


def network_record(obj: Any) -> PersistentRecord:
    """The network inside an unpickled checkpoint: ``obj['ema']`` (EDM snapshots), or ``obj`` itself."""
    if isinstance(obj, dict) and "ema" in obj:
        obj = obj["ema"]
    if not isinstance(obj, PersistentRecord):
        keys = sorted(str(k)[:40] for k in list(obj)[:20]) if isinstance(obj, dict) else describe(obj)
        raise CheckpointError(
            f"no EDM network found: expected a dict with key 'ema' holding a persistent network, got {keys}"
        )
    return obj


def _entries(state: dict[str, Any], key: str, prefix: str) -> list[tuple[str, Any]]:
    value = state.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CheckpointError(f"{prefix or 'network'}: {key} must be a dict keyed by names")
    return list(value.items())


def flat_tokens(
    record: PersistentRecord | ModuleDictRecord, prefix: str = "", depth: int = 0
) -> dict[str, TensorToken]:
    """State dict of a recorded module tree as checked tensor views (shapes known, nothing copied yet):
    parameters, persistent buffers, then children (torch order)."""
    if depth > MAX_DEPTH:
        raise LimitError(f"module tree nested deeper than {MAX_DEPTH} levels (limit)")
    state = record.state
    out: dict[str, TensorToken] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(skip, set | frozenset) or not all(isinstance(k, str) for k in skip):
        raise CheckpointError(f"{prefix or 'network'}: _non_persistent_buffers_set must be a set of names")
    entries = _entries(state, "_parameters", prefix)
    entries += [(k, v) for k, v in _entries(state, "_buffers", prefix) if k not in skip]
    for name, value in entries:
        if value is None:
            continue
        if not isinstance(value, TensorToken):
            raise CheckpointError(f"{prefix}{name} is a {type(value).__name__}, expected a tensor")
        out[prefix + name] = value
    for name, child in _entries(state, "_modules", prefix):
        if child is None:
            continue
        if not isinstance(child, PersistentRecord | ModuleDictRecord):
            raise CheckpointError(
                f"submodule {prefix}{name} is a {type(child).__name__}, not a network module"
            )
        out.update(flat_tokens(child, f"{prefix}{name}.", depth + 1))
    return out


def flat_state_dict(record: PersistentRecord | ModuleDictRecord) -> dict[str, Tensor]:
    """``flat_tokens`` as tensors (views of the file's storages)."""
    return {k: v.tensor() for k, v in flat_tokens(record).items()}


def source_hashes(record: PersistentRecord | ModuleDictRecord, depth: int = 0) -> set[str]:
    """sha256 of every embedded module source in the tree (provenance; the sources are never run)."""
    hashes = {record.module_src_sha256} if isinstance(record, PersistentRecord) else set()
    if depth > MAX_DEPTH:
        return hashes
    for child in (record.state.get("_modules") or {}).values():
        if isinstance(child, PersistentRecord | ModuleDictRecord):
            hashes |= source_hashes(child, depth + 1)
    return hashes


def _plain(value: Any, depth: int = 0) -> Any:
    """Constructor keywords as plain Python (numpy -> numbers/lists, tuples -> lists) for JSON configs."""
    if depth > 8:
        raise LimitError("constructor keywords nested deeper than 8 levels (limit)")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, ArrayToken) and value.array is not None and value.array.size <= 4096:
        return value.array.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(f"constructor keyword of type {type(value).__name__.lstrip('_')} is not plain data")


def init_config(record: PersistentRecord) -> dict[str, Any]:
    """EDM class name + constructor keywords recorded by the persistence decorator."""
    args = record.state.get("_init_args") or ()
    kwargs = record.state.get("_init_kwargs")
    if args or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(
            f"{record.class_name}: expected keyword-only constructor arguments (_init_kwargs), "
            f"got args={describe(args)}"
        )
    return {"class_name": record.class_name, "init_kwargs": _plain(kwargs)}


def load_edm_pickle(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    max_parameters: int | None = None,
    allow_nonfinite: bool = False,
) -> Precond:
    """Read an EDM pickle without running its code and rebuild the network in edmbench's modules.

    ``max_parameters`` caps the network size computed from the recorded config before anything is built
    (default ``native.DEFAULT_MAX_PARAMETERS`` or ``$EDMBENCH_MAX_PARAMETERS``); non-finite weights are
    refused unless ``allow_nonfinite``.
    """
    path = Path(path)
    top = read_edm_pickle(path)
    with reader_boundary(path, "EDM pickle"):
        record = network_record(top)
        config = init_config(record)
        tokens = flat_tokens(record)
        model = instantiate(
            config["class_name"],
            config["init_kwargs"],
            {k: v.shape for k, v in tokens.items()},
            lambda: {k: v.tensor() for k, v in tokens.items()},
            device=device,
            max_parameters=max_parameters,
            allow_nonfinite=allow_nonfinite,
        )
    model.provenance = {
        "format": "edm-pickle",
        "class_name": record.class_name,
        "module_src_sha256": sorted(source_hashes(record)),
    }
    return model
