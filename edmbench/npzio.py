"""Bounded ``.npz`` reading for files edmbench does not trust (mixtures, reference statistics).

``read_npz`` checks the archive before inflating anything: member names, count, declared (uncompressed)
sizes against ``max_bytes``, each ``.npy`` header (numeric dtype from an allow-list, shape of at most
``MAX_NDIM`` sizes) and that the declared size is exactly header + shape x itemsize. Data is then
stream-read into a buffer of that exact size (the zip reader never yields more than the declared size).
No pickles (``allow_pickle`` is never on), no object or structured dtypes. Refusals are ``CheckpointError``s
naming the file, the member and the rule; ``LimitError`` for sizes over a limit.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from edmbench.errors import CheckpointError, LimitError, env_int

DEFAULT_MAX_NPZ_BYTES = 2 << 30  # $EDMBENCH_MAX_NPZ_BYTES: total declared (uncompressed) size
MAX_MEMBERS = 64
MAX_NDIM = 8
NUMERIC_KINDS = "biuf"  # bool, signed/unsigned integers, floats
UNICODE_KIND = "U"  # short strings (reference provenance JSON)
_CHUNK = 1 << 20


def max_npz_bytes() -> int:
    return env_int("EDMBENCH_MAX_NPZ_BYTES", DEFAULT_MAX_NPZ_BYTES)


def read_npz(
    path: str | os.PathLike, what: str, *, max_bytes: int | None = None, allow_unicode: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``path`` (keys without ``.npy``), bounded as the module doc says.

    ``allow_unicode`` names keys that may hold a small unicode string array (at most 1 MiB).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; expected a {what} .npz file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    limit = max_bytes or max_npz_bytes()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = _check_members(zf, path, what, limit)
            return {name[:-4]: _read_member(zf, info, path, allow_unicode) for name, info in infos.items()}
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: not a readable {what} .npz ({_line(exc)})") from None
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, OverflowError) as exc:
        if isinstance(exc, CheckpointError | FileNotFoundError):
            raise
        raise CheckpointError(f"{path}: corrupt {what} .npz ({type(exc).__name__}: {_line(exc)})") from None


def _line(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [""])[0]
    return "".join(c if c.isprintable() else "?" for c in text)[:160]


def _check_members(zf: zipfile.ZipFile, path: Path, what: str, limit: int) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise LimitError(f"{path}: {len(infos)} members; a {what} .npz holds at most {MAX_MEMBERS}")
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or "/" in name or name in out:
            raise CheckpointError(f"{path}: member {name[:80]!r} is not a unique top-level .npy array")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(
                f"{path}: member {name!r} uses an unsupported compression; expected stored or deflated"
            )
        out[name] = info
    total = sum(i.file_size for i in infos)
    if total > limit:
        raise LimitError(
            f"{path}: declares {total:,} uncompressed bytes, above the limit of {limit:,} for a "
            f"{what} ($EDMBENCH_MAX_NPZ_BYTES)"
        )
    return out


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, allow_unicode: tuple[str, ...]
) -> np.ndarray:
    key, where = info.filename[:-4], f"{path}: array {info.filename[:-4]!r}"
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise CheckpointError(f"{where}: unsupported .npy version {version}")
            shape, fortran, dtype = read_header(f, max_header_size=10000)
        except CheckpointError:
            raise
        except (ValueError, SyntaxError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{where}: malformed .npy header ({_line(exc)})") from None
        numeric = dtype.kind in NUMERIC_KINDS and dtype.names is None and dtype.subdtype is None
        text = dtype.kind == UNICODE_KIND and key in allow_unicode and dtype.itemsize <= (1 << 20)
        if not (numeric or text) or dtype.hasobject:
            raise CheckpointError(
                f"{where}: dtype {str(dtype)[:40]} refused; expected a plain numeric array "
                "(bool, integer or float)"
            )
        if len(shape) > MAX_NDIM:
            raise CheckpointError(f"{where}: {len(shape)} dimensions; at most {MAX_NDIM}")
        need = math.prod(shape) * dtype.itemsize
        if info.file_size - f.tell() != need:
            raise CheckpointError(
                f"{where}: shape {shape} x {dtype.itemsize} bytes needs {need:,} bytes, the "
                f"archive declares {info.file_size - f.tell():,}"
            )
        buf = bytearray(need)
        view, got = memoryview(buf), 0
        while got < need:
            n = f.readinto(view[got : got + _CHUNK])
            if not n:
                raise CheckpointError(f"{where}: truncated ({got:,} of {need:,} bytes)")
            got += n
    array = np.frombuffer(buf, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")
