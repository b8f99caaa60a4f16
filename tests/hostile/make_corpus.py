"""Write the hostile-file corpus for issue 14: every class of malformed or malicious checkpoint, mixture
and reference file that edmbench's readers must refuse (nothing is committed; run this to regenerate).

    python tests/hostile/make_corpus.py OUTDIR        # writes OUTDIR/<files> and OUTDIR/corpus.json

``corpus.json`` lists each file with its class, the error class it must raise (``edmbench.errors``) and
the entry points to try: ``load`` (``edmbench.load``), ``convert`` (``edmbench convert``), ``reference``
(``edmbench.metrics.stats.load_reference``). Payloads that would run would touch ``OUTDIR/PWNED``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
P = pickle  # opcode constants


def _checkpoints_module(name: str):
    """``tests/checkpoints/<name>.py``, loaded by path (this script also runs outside pytest)."""
    path = HERE.parent / "checkpoints" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EDM = _checkpoints_module("edm_format")
SONG = _checkpoints_module("tiny_configs").DDPMPP  # the checkpoint tests' tiny DDPM++ (one owner)


def tiny_net():
    from edmbench.denoisers.precond import EDMPrecond

    torch.manual_seed(0)
    return EDMPrecond(img_resolution=8, img_channels=3, label_dim=10, augment_dim=9, **SONG).eval()


# --- raw pickle building blocks ------------------------------------------------------------------------


def s(text: str) -> bytes:
    raw = text.encode()
    return (
        P.SHORT_BINUNICODE + bytes([len(raw)]) + raw
        if len(raw) < 256
        else P.BINUNICODE + struct.pack("<I", len(raw)) + raw
    )


def glob(module: str, name: str) -> bytes:
    return s(module) + s(name) + P.STACK_GLOBAL


def proto(body: bytes) -> bytes:
    return b"\x80\x04" + body + P.STOP


def ema(body: bytes) -> bytes:
    """{'ema': <body>}"""
    return proto(P.EMPTY_DICT + s("ema") + body + P.SETITEM)


def dtype(spec: str, state: bytes | None = None) -> bytes:
    """numpy.dtype(spec, False, True) [+ BUILD state]."""
    out = glob("numpy", "dtype") + s(spec) + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE
    return out + (state + P.BUILD if state is not None else b"")


def plain_state(
    order: str = "<",
    names: bytes = P.NONE,
    fields: bytes = P.NONE,
    elsize: int = -1,
    align: int = -1,
    flags: int = 0,
    subarray: bytes = P.NONE,
) -> bytes:
    return (
        P.MARK
        + P.BININT1
        + b"\x03"
        + s(order)
        + subarray
        + names
        + fields
        + P.BININT
        + struct.pack("<i", elsize)
        + P.BININT
        + struct.pack("<i", align)
        + P.BININT
        + struct.pack("<i", flags)
        + P.TUPLE
    )


def ndarray(dtype_ops: bytes, shape: tuple[int, ...], data: bytes) -> bytes:
    shape_ops = P.MARK + b"".join(P.BININT + struct.pack("<i", n) for n in shape) + P.TUPLE
    return (
        glob("numpy._core.multiarray", "_reconstruct")
        + glob("numpy", "ndarray")
        + P.BININT1
        + b"\x00"
        + P.TUPLE1
        + P.SHORT_BINBYTES
        + b"\x01b"
        + P.TUPLE3
        + P.REDUCE
        + P.MARK
        + P.BININT1
        + b"\x01"
        + shape_ops
        + dtype_ops
        + P.NEWFALSE
        + P.BINBYTES
        + struct.pack("<I", len(data))
        + data
        + P.TUPLE
        + P.BUILD
    )


def legacy_storage(
    values: bytes, numel: int, storage: str = "FloatStorage", count: int | None = None
) -> bytes:
    """torch's legacy single-storage bytes, with a chosen declared element count."""
    out = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    out += pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
        protocol=2,
    )
    out += (
        b"\x80\x02(X\x07\x00\x00\x00storage"
        + b"ctorch\n"
        + storage.encode()
        + b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
        + P.BININT
        + struct.pack("<i", numel)
        + P.NONE
        + P.TUPLE
        + P.BINPERSID
        + P.STOP
    )
    out += pickle.dumps(["0"], protocol=2)
    return out + struct.pack("<q", numel if count is None else count) + values


def load_from_bytes(payload: bytes) -> bytes:
    return (
        glob("torch.storage", "_load_from_bytes")
        + P.BINBYTES8
        + struct.pack("<Q", len(payload))
        + payload
        + P.TUPLE1
        + P.REDUCE
    )


def rebuild_tensor(
    storage_ops: bytes, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0
) -> bytes:
    tup = lambda xs: P.MARK + b"".join(P.BININT + struct.pack("<i", x) for x in xs) + P.TUPLE  # noqa: E731
    return (
        glob("torch._utils", "_rebuild_tensor_v2")
        + P.MARK
        + storage_ops
        + P.BININT
        + struct.pack("<i", offset)
        + tup(size)
        + tup(stride)
        + P.NEWFALSE
        + glob("collections", "OrderedDict")
        + P.EMPTY_TUPLE
        + P.REDUCE
        + P.TUPLE
        + P.REDUCE
    )


def persistent(meta_items: bytes) -> bytes:
    return (
        glob("torch_utils.persistence", "_reconstruct_persistent_obj")
        + P.EMPTY_DICT
        + P.MARK
        + meta_items
        + P.SETITEMS
        + P.TUPLE1
        + P.REDUCE
    )


def zip_bomb_bytes(name: str, header: bytes, nbytes: int, declared: int | None = None) -> bytes:
    """A zip with one deflated member: ``header`` then ``nbytes`` zeros (optionally a false declared size).

    Built fast: after a full flush a 16 MiB block of zeros always deflates to the same bytes, so the
    stream is those bytes repeated (a valid deflate stream of the whole size, CRC included).
    """
    block = 1 << 24
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)]
    crc = zlib.crc32(header)
    zeros = bytes(block)
    repeated = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(nbytes, block)
    parts.append(repeated * n)
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    parts.append(comp.compress(bytes(rest)) + comp.flush())
    crc = zlib.crc32(bytes(rest), crc)
    data = b"".join(parts)
    size = len(header) + nbytes if declared is None else declared
    return _zip_one(name, data, crc, size)


def _zip_one(name: str, data: bytes, crc: int, size: int) -> bytes:
    fname = name.encode()
    zip64 = size >= 0xFFFFFFFF
    extra = struct.pack("<HHQQ", 1, 16, size, len(data)) if zip64 else b""
    usize, csize = (0xFFFFFFFF, 0xFFFFFFFF) if zip64 else (size, len(data))
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 8, 0, 0, crc, csize, usize, len(fname), len(extra)
    )
    local += fname + extra
    central = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45,
            45,
            0,
            8,
            0,
            0,
            crc,
            csize,
            usize,
            len(fname),
            len(extra),
            0,
            0,
            0,
            0,
            0,
        )
        + fname
        + extra
    )
    offset = len(local) + len(data)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), offset, 0)
    return local + data + central + end


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npz(arrays: dict[str, np.ndarray], extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=True)
            zf.writestr(f"{key}.npy", member.getvalue())
        for name, raw in (extra or {}).items():
            zf.writestr(name, raw)
    return buf.getvalue()


def mixture(**over: Any) -> dict[str, np.ndarray]:
    arrays = {
        "weights": np.array([0.5, 0.5]),
        "means": np.zeros((2, 4)),
        "covs": np.stack([np.eye(4)] * 2),
        "image_shape": np.array([1, 2, 2]),
        "component_classes": np.array([0, 1]),
    }
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def reference(**over: Any) -> dict[str, np.ndarray]:
    arrays = {"mu": np.zeros(8), "sigma": np.eye(8)}
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


# --- native files ----------------------------------------------------------------------------------------


def safetensors_bytes(
    header: Any, data: bytes = b"", raw_header: bytes | None = None, declared_len: int | None = None
) -> bytes:
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if declared_len is None else declared_len) + raw + data


def native_with(net, *, init_kwargs: dict | None = None, class_name: str | None = None, poison=None) -> bytes:
    from safetensors.torch import save

    config = {"format": "edmbench-native", "version": 1, **net.config, "provenance": {}}
    if init_kwargs is not None:
        config["init_kwargs"] = init_kwargs
    if class_name is not None:
        config["class_name"] = class_name
    tensors = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if poison is not None:
        poison(tensors)
    return save(tensors, metadata={"edmbench": json.dumps(config)})


def nan_poison(tensors: dict[str, torch.Tensor]) -> None:
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key][0] = float("nan")


# --- the corpus ------------------------------------------------------------------------------------------


def build(out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "PWNED"
    entries: list[dict[str, Any]] = []

    def add(
        name: str, cls: str, expect: str, data: bytes | None, via: tuple[str, ...] = ("load", "convert")
    ) -> None:
        path = out / name
        if data is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(data)
        entries.append({"file": name, "class": cls, "expect": expect, "via": list(via)})

    net = tiny_net()
    good = EDM.edm_pickle_bytes(net)
    cfg = dict(net.init_kwargs)

    # dtype abuse (numpy.dtype BUILD state from the file)
    self_ref = (
        glob("numpy", "dtype")
        + s("f8")
        + P.NEWFALSE
        + P.NEWTRUE
        + P.TUPLE3
        + P.REDUCE
        + P.MEMOIZE
        + plain_state(
            "|",
            names=P.MARK + s("a") + P.TUPLE,
            fields=P.EMPTY_DICT
            + s("a")
            + P.MARK
            + P.BINGET
            + b"\x00"
            + P.BININT1
            + b"\x00"
            + P.TUPLE
            + P.SETITEM,
            elsize=8,
            align=1,
            flags=16,
        )
        + P.BUILD
    )
    add("dtype-self-referencing.pkl", "dtype abuse", "UnsafePickleError", ema(self_ref))
    sub = P.MARK + dtype("i8") + P.MARK + P.BININT + struct.pack("<i", 1 << 20) + P.TUPLE + P.TUPLE
    add(
        "dtype-subarray.pkl",
        "dtype abuse",
        "UnsafePickleError",
        ema(
            glob("numpy._core.multiarray", "scalar")
            + dtype("f8", plain_state(subarray=sub, elsize=1 << 23))
            + P.SHORT_BINBYTES
            + b"\x08"
            + bytes(8)
            + P.TUPLE2
            + P.REDUCE
        ),
    )
    offset_fields = (
        P.EMPTY_DICT
        + s("x")
        + P.MARK
        + dtype("f8")
        + P.BININT
        + struct.pack("<i", 65536)
        + P.TUPLE
        + P.SETITEM
    )
    add(
        "dtype-field-offset.pkl",
        "dtype abuse",
        "UnsafePickleError",
        ema(
            dtype(
                "f8",
                plain_state("|", names=P.MARK + s("x") + P.TUPLE, fields=offset_fields, elsize=8, align=1),
            )
        ),
    )
    add(
        "dtype-false-hasobject.pkl",
        "dtype abuse",
        "UnsafePickleError",
        ema(dtype("f8", plain_state(flags=63))),
    )
    add("dtype-object.pkl", "dtype abuse", "UnsafePickleError", ema(dtype("O")))
    add("dtype-structured-spec.pkl", "dtype abuse", "UnsafePickleError", ema(dtype("f8,i4")))
    add(
        "numpy-scalar-short-bytes.pkl",
        "dtype abuse",
        "UnsafePickleError",
        ema(
            glob("numpy.core.multiarray", "scalar")
            + dtype("f8", plain_state())
            + P.SHORT_BINBYTES
            + b"\x03abc"
            + P.TUPLE2
            + P.REDUCE
        ),
    )
    # ndarray abuse
    add(
        "ndarray-object-dtype.pkl",
        "ndarray abuse",
        "UnsafePickleError",
        ema(ndarray(dtype("O", plain_state("|", flags=63)), (2,), bytes(16))),
    )
    add(
        "ndarray-shape-vs-bytes.pkl",
        "ndarray abuse",
        "CheckpointError",
        ema(ndarray(dtype("f8", plain_state()), (1 << 30,), bytes(8))),
    )
    list_data = (
        glob("numpy._core.multiarray", "_reconstruct")
        + glob("numpy", "ndarray")
        + P.BININT1
        + b"\x00"
        + P.TUPLE1
        + P.SHORT_BINBYTES
        + b"\x01b"
        + P.TUPLE3
        + P.REDUCE
        + P.MARK
        + P.BININT1
        + b"\x01"
        + P.MARK
        + P.BININT1
        + b"\x01"
        + P.TUPLE
        + dtype("f8", plain_state())
        + P.NEWFALSE
        + P.EMPTY_LIST
        + glob("os", "getcwd")
        + P.APPEND
        + P.TUPLE
        + P.BUILD
    )
    add("ndarray-object-list-data.pkl", "ndarray abuse", "UnsafePickleError", ema(list_data))
    add(
        "ndarray-direct-call.pkl",
        "ndarray abuse",
        "CheckpointError",
        ema(glob("numpy", "ndarray") + P.MARK + P.BININT1 + b"\x04" + P.TUPLE + P.REDUCE),
    )
    # foreign globals / persistent ids / opcodes
    add(
        "global-os-system.pkl",
        "foreign global",
        "UnsafePickleError",
        ema(glob("os", "system") + s(f"touch {marker}") + P.TUPLE1 + P.REDUCE),
    )
    add(
        "global-builtins-eval.pkl",
        "foreign global",
        "UnsafePickleError",
        ema(b"cbuiltins\neval\n" + s(f"open({str(marker)!r}, 'w')") + P.TUPLE1 + P.REDUCE),
    )
    add("persistent-id.pkl", "foreign global", "UnsafePickleError", ema(s("x") + P.BINPERSID))
    add("inst-opcode.pkl", "foreign global", "UnsafePickleError", proto(P.MARK + b"ios\nsystem\n"))
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf)
    add("torch-save-zip.pkl", "wrong format", "CheckpointError", buf.getvalue())
    # tensor storages
    add(
        "storage-zip-bomb.pkl",
        "zip bomb (tensor storage)",
        "UnsafePickleError",
        ema(load_from_bytes(zip_bomb_bytes("archive/data/0", b"", 1 << 30))),
    )
    add(
        "storage-payload-global.pkl",
        "foreign global",
        "UnsafePickleError",
        ema(load_from_bytes(proto(glob("os", "system") + s(f"touch {marker}") + P.TUPLE1 + P.REDUCE))),
    )
    add(
        "storage-declared-tib.pkl",
        "declared TiB sizes",
        "CheckpointError",
        ema(load_from_bytes(legacy_storage(bytes(16), 4, count=1 << 40))),
    )
    add(
        "storage-numel-tib.pkl",
        "declared TiB sizes",
        "CheckpointError",
        ema(load_from_bytes(legacy_storage(bytes(16), (1 << 31) - 1))),
    )
    add(
        "tensor-view-out-of-bounds.pkl",
        "wrong types",
        "CheckpointError",
        ema(rebuild_tensor(load_from_bytes(legacy_storage(bytes(16), 4)), (1000,), (1,))),
    )
    add(
        "tensor-build-state.pkl",
        "wrong types",
        "UnsafePickleError",
        ema(
            rebuild_tensor(load_from_bytes(legacy_storage(bytes(16), 4)), (4,), (1,))
            + P.MARK
            + glob("torch", "FloatStorage")
            + P.TUPLE
            + P.BUILD
        ),
    )
    # memo / stack / size bombs
    add(
        "memo-index-2e28.pkl",
        "memo bomb",
        "LimitError",
        b"\x80\x04N" + P.LONG_BINPUT + struct.pack("<I", 1 << 28) + b".",
    )
    add(
        "memo-get-2e30.pkl",
        "memo bomb",
        "LimitError",
        b"\x80\x04" + P.LONG_BINGET + struct.pack("<I", 1 << 30) + b".",
    )
    add("memo-many.pkl", "memo bomb", "LimitError", b"\x80\x04N" + P.MEMOIZE * 600_000 + b".")
    add("marks-deep.pkl", "recursion", "LimitError", b"\x80\x04" + P.MARK * 300 + b"N.")
    add("stack-deep.pkl", "recursion", "CheckpointError", b"\x80\x04" + P.EMPTY_LIST * 100_000 + b".")
    add("opcodes-many.pkl", "opcode count", "LimitError", b"\x80\x04" + (P.NONE + P.POP) * 600_000 + b"N.")
    add(
        "bytes8-declared-8tib.pkl",
        "declared TiB sizes",
        "CheckpointError",
        b"\x80\x04" + P.BINBYTES8 + struct.pack("<Q", 8 << 40) + bytes(10),
    )
    add(
        "unicode8-declared-1tib.pkl",
        "declared TiB sizes",
        "CheckpointError",
        b"\x80\x04" + P.BINUNICODE8 + struct.pack("<Q", 1 << 40) + b"abc",
    )
    add(
        "frame-declared-1tib.pkl",
        "declared TiB sizes",
        "CheckpointError",
        b"\x80\x04" + P.FRAME + struct.pack("<Q", 1 << 40) + b"N.",
    )
    add(
        "bytearray8-declared-2tib.pkl",
        "declared TiB sizes",
        "CheckpointError",
        b"\x80\x05" + P.BYTEARRAY8 + struct.pack("<Q", 2 << 40) + bytes(4),
    )
    huge_src = pickle.dumps(1 << (8 * 1_000_000 - 1), protocol=4)[2:-1]  # a LONG4 of 1 MB, memoised once
    first = s("module_src") + huge_src + P.MEMOIZE
    items = s("type") + s("class") + s("version") + P.BININT1 + b"\x06" + s("class_name") + s("EDMPrecond")
    items += s("state") + P.EMPTY_DICT
    again = s("module_src") + P.BINGET + b"\x00"
    add(
        "huge-integer-module-src.pkl",
        "huge-integer module source",
        "LimitError",
        proto(
            P.EMPTY_LIST + persistent(first + items) + P.APPEND + (persistent(again + items) + P.APPEND) * 63
        ),
    )
    small_int = (
        s("type") + s("class") + s("version") + P.BININT1 + b"\x06" + s("module_src") + P.BININT1 + b"\x05"
    )
    small_int += s("class_name") + s("EDMPrecond") + s("state") + P.EMPTY_DICT
    add("integer-module-src.pkl", "wrong types", "CheckpointError", ema(persistent(small_int)))
    # huge network configs (pickle)
    for key, value, expect in (
        ("model_channels", 2048, "LimitError"),
        ("num_blocks", 10**6, "LimitError"),
        ("model_channels", 10**100, "LimitError"),
        ("channel_mult", [1] * 10**4, "LimitError"),
        ("model_channels", 32, "CheckpointError"),
    ):
        big = tiny_net()
        big.init_kwargs = dict(cfg, **{key: value})
        tag = f"{key}-{value if isinstance(value, int) and value < 10**7 else 'huge'}"
        add(f"config-{tag}.pkl", "huge network config (pickle)", expect, EDM.edm_pickle_bytes(big))
    from edmbench.denoisers.precond import iDDPMPrecond

    torch.manual_seed(0)
    iddpm = iDDPMPrecond(img_resolution=8, img_channels=3, label_dim=0, **SONG)
    iddpm.init_kwargs = dict(iddpm.init_kwargs, M=10**9)
    add("config-iddpm-M-1e9.pkl", "huge network config (pickle)", "LimitError", EDM.edm_pickle_bytes(iddpm))
    # wrong types, truncation, garbage
    add("truncated-half.pkl", "malformed", "CheckpointError", good[: len(good) // 2])
    add("truncated-100.pkl", "malformed", "CheckpointError", good[:100])
    add("empty.pkl", "malformed", "CheckpointError", b"")
    add("garbage.pkl", "malformed", "CheckpointError", b"\x80\x04" + bytes(range(256)) * 8)
    add("not-a-network.pkl", "wrong types", "CheckpointError", pickle.dumps({"ema": 5}, protocol=4))
    add("ema-list.pkl", "wrong types", "CheckpointError", pickle.dumps([1, 2, 3], protocol=4))
    bad_meta = s("type") + s("class") + s("version") + s("6")
    add("version-str.pkl", "wrong types", "CheckpointError", ema(persistent(bad_meta)))
    wrong_state = s("type") + s("class") + s("version") + P.BININT1 + b"\x06" + s("module_src") + s("#")
    wrong_state += (
        s("class_name") + s("EDMPrecond") + s("state") + P.EMPTY_DICT + s("_modules") + P.BININT1 + b"\x05"
    )
    wrong_state += s("_init_kwargs") + P.EMPTY_DICT + P.SETITEM + P.SETITEM
    add("modules-int.pkl", "wrong types", "CheckpointError", ema(persistent(wrong_state)))
    cyc = s("type") + s("class") + s("version") + P.BININT1 + b"\x06" + s("module_src") + s("#")
    cyc += s("class_name") + s("EDMPrecond") + s("state") + P.EMPTY_DICT + P.MEMOIZE
    cyc += (
        s("_init_kwargs") + P.EMPTY_DICT + s("x") + P.EMPTY_LIST + P.MEMOIZE + P.BINGET + b"\x01" + P.APPEND
    )
    cyc += P.SETITEM + P.SETITEM
    add("kwargs-self-referencing.pkl", "recursion", "LimitError", ema(persistent(cyc)))
    cyc_mod = s("type") + s("class") + s("version") + P.BININT1 + b"\x06" + s("module_src") + s("#")
    cyc_mod += s("class_name") + s("EDMPrecond") + s("state") + P.EMPTY_DICT + P.MEMOIZE
    cyc_mod += s("_modules") + P.EMPTY_DICT + s("m") + glob("torch.nn.modules.container", "ModuleDict")
    cyc_mod += P.EMPTY_TUPLE + P.NEWOBJ + P.BINGET + b"\x00" + P.BUILD + P.SETITEM + P.SETITEM
    cyc_mod += s("_init_kwargs") + P.EMPTY_DICT + P.SETITEM
    add("modules-self-referencing.pkl", "recursion", "CheckpointError", ema(persistent(cyc_mod)))
    record_ok = small_int.replace(s("module_src") + P.BININT1 + b"\x05", s("module_src") + s("#"))
    add(
        "build-on-record.pkl",
        "wrong types",
        "UnsafePickleError",
        ema(persistent(record_ok) + P.EMPTY_DICT + P.BUILD),
    )
    # non-finite weights
    nan_net = tiny_net()
    with torch.no_grad():
        nan_net.model.enc["8x8_conv"].weight[0, 0, 0, 0] = float("nan")
    add("nan-weights.pkl", "NaN weights", "NonFiniteWeightsError", EDM.edm_pickle_bytes(nan_net))
    # directories
    add("a-directory.pkl", "directory", "CheckpointError", None)
    add("a-directory.safetensors", "directory", "CheckpointError", None, via=("load",))
    add("a-directory.npz", "directory", "CheckpointError", None, via=("load", "reference"))

    # native files
    add(
        "native-nan-weights.safetensors",
        "NaN weights",
        "NonFiniteWeightsError",
        native_with(net, poison=nan_poison),
        via=("load",),
    )
    add(
        "native-model-channels-2048.safetensors",
        "huge network config (native)",
        "LimitError",
        native_with(net, init_kwargs=dict(cfg, model_channels=2048)),
        via=("load",),
    )
    add(
        "native-num-blocks-1e6.safetensors",
        "huge network config (native)",
        "LimitError",
        native_with(net, init_kwargs=dict(cfg, num_blocks=10**6)),
        via=("load",),
    )
    add(
        "native-huge-int.safetensors",
        "huge network config (native)",
        "LimitError",
        native_with(net, init_kwargs=dict(cfg, model_channels=10**100)),
        via=("load",),
    )
    add(
        "native-wrong-type.safetensors",
        "wrong types",
        "CheckpointError",
        native_with(net, init_kwargs=dict(cfg, model_channels="wide")),
        via=("load",),
    )
    add(
        "native-unknown-class.safetensors",
        "wrong types",
        "CheckpointError",
        native_with(net, class_name="FuturePrecond"),
        via=("load",),
    )
    add(
        "native-header-len-1tib.safetensors",
        "declared TiB sizes",
        "LimitError",
        safetensors_bytes({}, declared_len=1 << 40),
        via=("load",),
    )
    add(
        "native-header-not-json.safetensors",
        "malformed JSON header",
        "CheckpointError",
        safetensors_bytes(None, raw_header=b"{not json"),
        via=("load",),
    )
    add(
        "native-header-deep-json.safetensors",
        "malformed JSON header",
        "CheckpointError",
        safetensors_bytes(None, raw_header=b"{" + b'"a":[' * 1 + b"[" * 200_000 + b"]" * 200_000 + b"]}"),
        via=("load",),
    )
    add(
        "native-config-not-json.safetensors",
        "malformed JSON header",
        "CheckpointError",
        safetensors_bytes({"__metadata__": {"edmbench": "{oops"}}),
        via=("load",),
    )
    add(
        "native-config-list.safetensors",
        "wrong types",
        "CheckpointError",
        safetensors_bytes({"__metadata__": {"edmbench": "[1, 2]"}}),
        via=("load",),
    )
    add(
        "native-tensor-declared-tib.safetensors",
        "declared TiB sizes",
        "CheckpointError",
        safetensors_bytes(
            {"w": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}, bytes(16)
        ),
        via=("load",),
    )
    add(
        "native-tensor-object-dtype.safetensors",
        "dtype abuse",
        "CheckpointError",
        safetensors_bytes({"w": {"dtype": "O", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)),
        via=("load",),
    )
    add(
        "native-truncated.safetensors", "malformed", "CheckpointError", native_with(net)[:-100], via=("load",)
    )

    # mixture .npz
    add(
        "mixture-zip-bomb-4gib.npz",
        "zip bomb (mixture npz)",
        "LimitError",
        zip_bomb_bytes("covs.npy", npy_header((1 << 29,)), 1 << 22, declared=(4 << 30) + 128),
        via=("load",),
    )
    add(
        "mixture-zip-bomb-real.npz",
        "zip bomb (mixture npz)",
        "LimitError",
        zip_bomb_bytes("covs.npy", npy_header((144 << 20,)), 1152 << 20),
        via=("load",),
    )
    add(
        "mixture-component-classes-1e9.npz",
        "huge component_classes",
        "CheckpointError",
        npz(mixture(component_classes=np.array([0, 10**9]))),
        via=("load",),
    )
    add(
        "mixture-component-classes-negative.npz",
        "wrong types",
        "CheckpointError",
        npz(mixture(component_classes=np.array([0, -1]))),
        via=("load",),
    )
    add(
        "mixture-component-classes-float.npz",
        "wrong types",
        "CheckpointError",
        npz(mixture(component_classes=np.array([0.0, 1.0]))),
        via=("load",),
    )
    add(
        "mixture-object-dtype.npz",
        "dtype abuse",
        "CheckpointError",
        npz(mixture(means=np.array([[os.getcwd]] * 2, dtype=object))),
        via=("load",),
    )
    add(
        "mixture-structured-dtype.npz",
        "dtype abuse",
        "CheckpointError",
        npz(mixture(weights=np.zeros(2, dtype=[("a", "<f8"), ("b", "<i4")]))),
        via=("load",),
    )
    add(
        "mixture-header-shape-lie.npz",
        "declared TiB sizes",
        "CheckpointError",
        npz({}, {"weights.npy": npy_header((1 << 40,)) + bytes(16)}),
        via=("load",),
    )
    add(
        "mixture-nan-means.npz",
        "NaN weights",
        "CheckpointError",
        npz(mixture(means=np.full((2, 4), np.nan))),
        via=("load",),
    )
    add(
        "mixture-huge-dim.npz",
        "huge network config (mixture)",
        "CheckpointError",
        npz(
            mixture(
                means=np.zeros((1, 100_000)),
                weights=np.ones(1),
                covs=np.zeros((1, 1, 1)),
                component_classes=None,
            )
        ),
        via=("load",),
    )
    add(
        "mixture-image-shape-huge.npz",
        "wrong types",
        "CheckpointError",
        npz(mixture(image_shape=np.array([1 << 62, 1 << 62, 4]))),
        via=("load",),
    )
    add(
        "mixture-many-members.npz",
        "malformed",
        "LimitError",
        npz({f"a{i}": np.zeros(1) for i in range(100)}),
        via=("load",),
    )
    add("mixture-truncated.npz", "malformed", "CheckpointError", npz(mixture())[:200], via=("load",))

    # reference .npz
    add(
        "reference-zip-bomb-4gib.npz",
        "zip bomb (reference npz)",
        "LimitError",
        zip_bomb_bytes("sigma.npy", npy_header((1 << 29,)), 1 << 22, declared=(4 << 30) + 128),
        via=("reference",),
    )
    add(
        "reference-zip-bomb-real.npz",
        "zip bomb (reference npz)",
        "LimitError",
        zip_bomb_bytes("sigma.npy", npy_header((272 << 20,)), 2176 << 20),
        via=("reference",),
    )
    add(
        "reference-object-dtype.npz",
        "dtype abuse",
        "CheckpointError",
        npz(reference(mu=np.array([os.getcwd] * 8, dtype=object))),
        via=("reference",),
    )
    add(
        "reference-bad-provenance.npz",
        "malformed JSON header",
        "CheckpointError",
        npz(reference(provenance=np.array("{not json"))),
        via=("reference",),
    )
    add(
        "reference-dimension-mismatch.npz",
        "wrong types",
        "CheckpointError",
        npz(reference(sigma=np.eye(7))),
        via=("reference",),
    )
    add(
        "reference-nonfinite.npz",
        "NaN weights",
        "CheckpointError",
        npz(reference(sigma=np.full((8, 8), np.inf))),
        via=("reference",),
    )
    add(
        "reference-n-huge.npz",
        "wrong types",
        "CheckpointError",
        npz(reference(n=np.array([1.5e300]))),
        via=("reference",),
    )
    add("reference-not-zip.npz", "malformed", "CheckpointError", b"PK\x03\x04garbage", via=("reference",))

    (out / "corpus.json").write_text(json.dumps({"marker": str(marker), "entries": entries}, indent=1))
    return entries


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    built = build(target)
    total = sum((target / e["file"]).stat().st_size for e in built if (target / e["file"]).is_file())
    print(
        f"wrote {len(built)} hostile files ({total / 2**20:.1f} MiB) to {target}; "
        f"{len({e['class'] for e in built})} classes"
    )
