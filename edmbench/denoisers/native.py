"""edmbench's native checkpoint format: one safetensors file whose header carries a JSON config.

The tensors are the preconditioner's state dict (EDM key names); the header's ``__metadata__`` holds
``{"edmbench": JSON}`` with ``format``, ``version``, ``class_name``, ``init_kwargs`` and ``provenance``.
Reading it needs no pickle at all: safetensors cannot carry code. The header is parsed and checked here
(bounded size, allow-listed dtypes, byte ranges that match the shapes) before any tensor is read.

``instantiate`` (shared with the EDM-pickle reader) checks the recorded constructor config against bounds,
counts its parameters from three tiny builds (nothing of its size allocated) against ``max_parameters`` and
the file's own tensor sizes, compares every
tensor shape with the file, and only then builds the network and loads it; non-finite weights are refused
unless ``allow_nonfinite``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from edmbench.denoisers.layers import skip_init
from edmbench.denoisers.precond import Precond, build_precond
from edmbench.errors import (
    CheckpointError,
    EdmbenchError,
    LimitError,
    NonFiniteWeightsError,
    describe,
    env_int,
)

__all__ = [
    "CheckpointError",
    "DEFAULT_MAX_PARAMETERS",
    "instantiate",
    "load_native",
    "read_native_config",
    "save_native",
]

FORMAT = "edmbench-native"
VERSION = 1
METADATA_KEY = "edmbench"
DEFAULT_MAX_PARAMETERS = 2_000_000_000  # > EDM2-XXL (1.5e9); $EDMBENCH_MAX_PARAMETERS or max_parameters=
MAX_HEADER_BYTES = 16 << 20
DEFAULT_MAX_FILE_BYTES = 16 << 30  # $EDMBENCH_MAX_CHECKPOINT_BYTES
SAFETENSORS_DTYPES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
# bounds on the recorded constructor config, checked before any build (so the probe builds stay cheap)
MAX_CONFIG_INT = 1 << 20
CONFIG_INT_LIMITS = {"num_blocks": 64, "M": 100_000, "img_channels": 4096, "logvar_channels": 65536}
MAX_CONFIG_LIST = 64

# foreign exceptions a malformed file can raise inside a reader; converted to CheckpointError at the boundary
FOREIGN_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    OverflowError,
    RecursionError,
    UnicodeError,
    EOFError,
    zipfile.BadZipFile,
    MemoryError,
    RuntimeError,
    OSError,
    NotImplementedError,
    AssertionError,
)


def check_readable_file(path: str | os.PathLike, max_bytes: int) -> Path:
    """``path`` as a ``Path`` if it is a regular file of at most ``max_bytes``; else ``CheckpointError``."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; expected a checkpoint file")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file; expected a checkpoint file")
    size = path.stat().st_size
    if size > max_bytes:
        raise LimitError(
            f"{path}: {size:,} bytes exceeds the file-size limit of {max_bytes:,} "
            "($EDMBENCH_MAX_CHECKPOINT_BYTES)"
        )
    return path


@contextlib.contextmanager
def reader_boundary(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn any error raised while reading ``path`` into a ``CheckpointError`` that names the file.

    edmbench errors get the path prefixed (once); foreign ones (KeyError, RecursionError, MemoryError, the
    allocator's RuntimeError...) become "<path>: malformed <what> (<type>: <first line, bounded>)".
    """
    prefix = f"{path}: "
    try:
        yield
    except EdmbenchError as exc:
        if str(exc).startswith(prefix):
            raise
        raise type(exc)(prefix + str(exc)) from None
    except FileNotFoundError:
        raise
    except FOREIGN_ERRORS as exc:
        text = "".join(c if c.isprintable() else "?" for c in (str(exc).splitlines() or [""])[0])[:160]
        raise CheckpointError(f"{prefix}malformed {what} ({type(exc).__name__}: {text})") from None


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


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, checked: bounded size, dtypes, shapes and byte ranges within the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError("not a readable safetensors file (shorter than its 8-byte header length)")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise LimitError(
                f"not a readable safetensors file (header declares {n:,} bytes; the limit is "
                f"{MAX_HEADER_BYTES:,} and the file holds {size - 8:,})"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(
            f"not a readable safetensors file (header is not JSON: {type(exc).__name__})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError("not a readable safetensors file (header is not a JSON object)")
    data_size = size - 8 - n
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(
                    "not a readable safetensors file (__metadata__ must map names to strings)"
                )
            continue
        _check_entry(key, entry, data_size)
    return header


def _check_entry(key: str, entry: Any, data_size: int) -> None:
    ok = isinstance(entry, dict) and entry.get("dtype") in SAFETENSORS_DTYPES
    shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
    ok = (
        ok
        and isinstance(shape, list)
        and len(shape) <= 8
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < (1 << 40) for s in shape)
    )
    ok = (
        ok
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    )
    if not ok:
        raise CheckpointError(
            f"tensor {describe(key)}: expected dtype in {sorted(SAFETENSORS_DTYPES)}, a shape "
            "of at most 8 sizes and data_offsets [begin, end]"
        )
    begin, end = offsets
    need = math.prod(shape) * SAFETENSORS_DTYPES[entry["dtype"]]
    if not 0 <= begin <= end <= data_size or end - begin != need:
        raise CheckpointError(
            f"tensor {describe(key)}: shape {shape} needs {need:,} bytes, its data_offsets "
            f"{offsets} do not fit the file's {data_size:,} data bytes"
        )


def read_native_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config stored in a native file's header (class name, constructor keywords, provenance)."""
    path = check_readable_file(path, env_int("EDMBENCH_MAX_CHECKPOINT_BYTES", DEFAULT_MAX_FILE_BYTES))
    with reader_boundary(path, "native checkpoint"):
        return _native_config(read_safetensors_header(path))


def _native_config(header: dict[str, Any]) -> dict[str, Any]:
    metadata = header.get("__metadata__") or {}
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"safetensors file without an edmbench config (header key {METADATA_KEY!r})")
    try:
        config = json.loads(metadata[METADATA_KEY])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(
            f"edmbench config in the header is not valid JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("version") != VERSION:
        got = (config.get("format"), config.get("version")) if isinstance(config, dict) else (config, None)
        raise CheckpointError(
            f"unsupported native format {describe(got[0])} version {describe(got[1])}; this edmbench "
            f"reads {FORMAT!r} version {VERSION}"
        )
    if not isinstance(config.get("class_name"), str) or not isinstance(config.get("init_kwargs"), dict):
        raise CheckpointError("edmbench config needs a string 'class_name' and a dict 'init_kwargs'")
    if not isinstance(config.get("provenance", {}), dict):
        raise CheckpointError("edmbench config: 'provenance' must be a dict")
    return config


def load_native(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    max_parameters: int | None = None,
    allow_nonfinite: bool = False,
) -> Precond:
    """Rebuild the network from a native file: config from the header, weights loaded strictly.

    ``max_parameters`` and ``allow_nonfinite`` as in ``instantiate``.
    """
    from safetensors.torch import load_file

    path = check_readable_file(path, env_int("EDMBENCH_MAX_CHECKPOINT_BYTES", DEFAULT_MAX_FILE_BYTES))
    with reader_boundary(path, "native checkpoint"):
        header = read_safetensors_header(path)
        config = _native_config(header)
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        model = instantiate(
            config["class_name"],
            config["init_kwargs"],
            shapes,
            lambda: load_file(str(path), device="cpu"),
            device=device,
            max_parameters=max_parameters,
            allow_nonfinite=allow_nonfinite,
        )
    model.provenance = config.get("provenance", {})
    return model


def check_config(init_kwargs: Mapping[str, Any], depth: int = 0, where: str = "init_kwargs") -> None:
    """Bounds on a recorded constructor config: plain data, ints within ``CONFIG_INT_LIMITS`` /
    ``MAX_CONFIG_INT``, lists of at most ``MAX_CONFIG_LIST`` items (so the probe builds stay cheap)."""
    if depth > 4:
        raise LimitError(f"{where}: nested deeper than 4 levels")
    for key, value in init_kwargs.items():
        _check_value(value, CONFIG_INT_LIMITS.get(key, MAX_CONFIG_INT), f"{where}.{key}", depth)


def _check_value(value: Any, int_limit: int, where: str, depth: int) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str) and len(value) <= 256:
        return
    if isinstance(value, int):
        if abs(value) > int_limit:
            raise LimitError(f"{where} = {describe(value)} exceeds the limit of {int_limit:,}")
    elif isinstance(value, float):
        return
    elif isinstance(value, list | tuple):
        if len(value) > MAX_CONFIG_LIST:
            raise LimitError(f"{where} has {len(value):,} items; limit {MAX_CONFIG_LIST}")
        for item in value:
            _check_value(item, int_limit, where, depth + 1)
    elif isinstance(value, dict):
        check_config(value, depth + 1, where)
    else:
        raise CheckpointError(f"{where} is a {type(value).__name__}, expected plain data")


PROBE_WIDTHS = (4, 8, 12)  # model_channels of the three tiny builds that fix the quadratic P(c)


def _count(class_name: str, init_kwargs: Mapping[str, Any]) -> int:
    with skip_init():
        model = build_precond(class_name, dict(init_kwargs))
    return sum(v.numel() for v in model.state_dict().values())


def estimate_parameters(class_name: str, init_kwargs: Mapping[str, Any]) -> int:
    """Parameter + buffer count of ``class_name(**init_kwargs)`` without building it at its size.

    Every width in EDM's and EDM2's backbones is ``model_channels`` times a config multiplier, so the count
    is a quadratic P(c) in c = model_channels with everything else fixed (convolutions and linear layers
    C_in x C_out, biases and norms C): three tiny builds at ``PROBE_WIDTHS`` (attention heads kept by
    ``channels_per_head=1`` where the config has it) give P exactly, then P(c) is evaluated. Attention
    blocks that vanish at tiny widths (heads = width // 64) make this an underestimate by at most the
    attention weights; ``instantiate`` allows for that.
    """
    check_config(init_kwargs)
    width = init_kwargs.get("model_channels")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        return _count(class_name, init_kwargs)  # no width knob: a fixed-size network (tests, adapters)
    probe = dict(init_kwargs)
    if class_name == "Precond":  # EDM2: Block(channels_per_head=...) from the config
        probe["channels_per_head"] = 1
    n0, n1, n2 = (_count(class_name, dict(probe, model_channels=c)) for c in PROBE_WIDTHS)
    step = PROBE_WIDTHS[1] - PROBE_WIDTHS[0]
    t = Fraction(width - PROBE_WIDTHS[0], step)  # P(c) by Newton's forward differences in t
    total = n0 + t * (n1 - n0) + t * (t - 1) / 2 * (n2 - 2 * n1 + n0)
    return max(int(total), 0)


def instantiate(
    class_name: str,
    init_kwargs: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, ...]],
    materialize: Callable[[], Mapping[str, Tensor]],
    device: str | torch.device = "cpu",
    *,
    max_parameters: int | None = None,
    allow_nonfinite: bool = False,
) -> Precond:
    """Build a preconditioner and load the file's tensors into it strictly, as float32.

    Before anything of the network's size is allocated: the config is bounded (``check_config``), its
    parameter count is computed (``estimate_parameters``) and compared with ``max_parameters`` (default
    ``$EDMBENCH_MAX_PARAMETERS`` or ``DEFAULT_MAX_PARAMETERS``) and with the element count of the file's
    tensors (``shapes``), which the file's bytes back; a config more than twice the file's size is refused.
    Then the network is built (weights uninitialised), missing, unexpected or wrongly shaped entries raise
    ``CheckpointError`` naming them, ``materialize()`` reads the tensors, and non-finite weights raise
    ``NonFiniteWeightsError`` unless ``allow_nonfinite`` (or ``$EDMBENCH_ALLOW_NONFINITE=1``), which loads
    them with a warning. Returns the network in eval mode with gradients off.
    """
    cap = max_parameters or env_int("EDMBENCH_MAX_PARAMETERS", DEFAULT_MAX_PARAMETERS)
    in_file = sum(math.prod(s) for s in shapes.values())
    if in_file > cap:
        raise LimitError(
            f"the file holds {in_file:,} tensor elements, above the limit of {cap:,} "
            "(raise it with max_parameters= or $EDMBENCH_MAX_PARAMETERS)"
        )
    try:
        total = estimate_parameters(class_name, init_kwargs)
        if total > cap:
            raise LimitError(
                f"{class_name} config describes {total:,} parameters, above the limit of "
                f"{cap:,} (raise it with max_parameters= or $EDMBENCH_MAX_PARAMETERS)"
            )
        if total > 2 * in_file + 1_000_000:
            raise CheckpointError(
                f"{class_name} config describes {total:,} parameters but the file holds "
                f"{in_file:,} tensor elements; the config does not match the weights"
            )
        with torch.device("cpu"), skip_init():
            model = build_precond(class_name, dict(init_kwargs))
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        if isinstance(exc, EdmbenchError):
            raise
        raise CheckpointError(f"cannot rebuild {class_name} from its recorded config: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{class_name} state dict does not match its config: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}"
        )
    bad = [k for k, v in expected.items() if tuple(v) != tuple(shapes[k])]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{class_name}: {len(bad)} tensors have the wrong shape, e.g. {k} is "
            f"{tuple(shapes[k])}, expected {tuple(expected[k])}"
        )
    state = materialize()
    _check_finite(state, allow_nonfinite or os.environ.get("EDMBENCH_ALLOW_NONFINITE") == "1")
    model.load_state_dict(state, strict=True)  # copies (and casts to float32) into the module's tensors
    return model.to(device).eval().requires_grad_(False)


def _check_finite(state: Mapping[str, Tensor], allow: bool) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not _all_finite(v)]
    if not bad:
        return
    message = (
        f"{len(bad)} weight tensors hold NaN or infinity, e.g. {bad[0]}; a network with non-finite "
        "weights makes every sampler setting look divergent"
    )
    if not allow:
        raise NonFiniteWeightsError(
            message + " (load anyway with allow_nonfinite=True or $EDMBENCH_ALLOW_NONFINITE=1)"
        )
    warnings.warn(message, stacklevel=3)


def _all_finite(v: Tensor) -> bool:
    """True if every element is finite: a NaN/inf always makes the sum non-finite (one fast reduction);
    only a non-finite sum (or an overflow of huge finite values) needs the element-wise check."""
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())


def _few(keys: list[str], n: int = 8) -> str:
    return str([k[:80] for k in keys[:n]])[:-1] + (", ...]" if len(keys) > n else "]")
