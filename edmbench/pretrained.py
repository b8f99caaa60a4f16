"""Pretrained denoisers: the manifest, the download cache with sha256 checks, and ``load``.

``load(name_or_path_or_url)`` accepts a manifest name (``pretrained/manifest.toml``), a local file (EDM
pickle, native safetensors, Gaussian-mixture ``.npz``) or a URL. Downloads go to ``$EDMBENCH_CACHE``
(default ``~/.cache/edmbench``), are written atomically, and are checked against a sha256 (the manifest's,
else the one recorded on first download). See docs/checkpoints.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tomllib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edmbench.errors import CheckpointError, ChecksumError, EdmbenchError
from edmbench.registry import Registry, close_match
from edmbench.resources import pretrained_dir

if TYPE_CHECKING:
    import torch

PRETRAINED_DIR = pretrained_dir()  # checkout: top-level pretrained/; wheel: packaged copy
MANIFEST_PATH = PRETRAINED_DIR / "manifest.toml"
CACHE_ENV = "EDMBENCH_CACHE"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelEntry:
    """One ``[models.<name>]`` block of the manifest; ``extra`` keeps the descriptive fields verbatim."""

    name: str
    format: str
    url: str | None = None
    file: str | None = None
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.url if self.url is not None else str(PRETRAINED_DIR / self.file)


def read_manifest(path: str | os.PathLike | None = None) -> dict[str, ModelEntry]:
    """Parse the manifest; each entry needs exactly one of ``url`` / ``file`` and a known ``format``."""
    path = Path(path) if path is not None else MANIFEST_PATH
    with open(path, "rb") as f:
        models = tomllib.load(f).get("models", {})
    return {name: _entry(name, block, path) for name, block in models.items()}


def _entry(name: str, block: dict[str, Any], path: Path) -> ModelEntry:
    if ("url" in block) == ("file" in block):
        raise EdmbenchError(f"{path}: [models.{name}] needs exactly one of 'url' or 'file'")
    fmt = block.get("format")
    if fmt not in FORMATS:
        raise EdmbenchError(f"{path}: [models.{name}] has format {fmt!r}; valid: {', '.join(FORMATS)}")
    known = {"url", "file", "format", "sha256"}
    return ModelEntry(
        name=name,
        format=fmt,
        url=block.get("url"),
        file=block.get("file"),
        sha256=block.get("sha256") or None,
        extra={k: v for k, v in block.items() if k not in known},
    )


def cache_dir() -> Path:
    """``$EDMBENCH_CACHE`` or ``~/.cache/edmbench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edmbench")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DownloadError(EdmbenchError, OSError):
    """A file could not be downloaded; the message names the URL and where to place the file by hand."""


def url_key(url: str) -> str:
    """Cache key of a URL: sha256 of the full URL (scheme, host, port, path, query), 32 hex digits."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def cached_path(url: str, directory: Path | None = None) -> Path:
    """Where ``url`` lives in the cache: ``<cache>/<url_key(url)>/<file name of the URL>``.

    Keyed by the whole URL, so two URLs with the same last component never share a file, and the data
    file always sits one folder down while hash records sit at the top (``<key>.record.json``): no URL can
    name, and so write, a hash record.
    """
    name = Path(urllib.parse.urlparse(url).path).name
    if not name or name in (".", ".."):
        raise EdmbenchError(f"cannot derive a file name from URL {url[:200]!r}; expected a URL to a file")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]
    return (directory or cache_dir()) / url_key(url) / safe


def _hash_record(target: Path) -> Path:
    """The hash record of a cached file: ``<cache>/<key>.record.json`` (outside every data folder)."""
    return target.parent.with_name(target.parent.name + ".record.json")


def _read_record(record: Path, url: str) -> str | None:
    """The sha256 recorded for ``url``; refuses a record made for another URL or one that is malformed."""
    if not record.exists():
        return None
    try:
        data = json.loads(record.read_text())
        recorded_url, digest = data["url"], data["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ChecksumError(
            f"hash record {record} is unreadable; delete it and the file beside it to download again"
        ) from None
    if recorded_url != url:
        raise ChecksumError(
            f"hash record {record} was made for {str(recorded_url)[:200]!r}, not {url!r}; "
            "refusing the cached file (delete the record and the file to download again)"
        )
    if not (isinstance(digest, str) and len(digest) == 64):
        raise ChecksumError(f"hash record {record} holds no sha256; delete it to download again")
    return digest


def _write_record(record: Path, url: str, digest: str) -> None:
    part = record.with_name(record.name + ".part")
    part.write_text(json.dumps({"url": url, "sha256": digest}, indent=1) + "\n")
    os.replace(part, record)


def fetch(url: str, sha256: str | None = None, directory: Path | None = None, progress: bool = True) -> Path:
    """Return the cached copy of ``url``, downloading it first if needed; verify its sha256 on every call.

    The expected hash is ``sha256`` (the manifest's) if given, else the one recorded at first download
    (``<cache>/<key>.record.json``, which also holds the URL and is compared with it on every load). A
    mismatch raises ``ChecksumError``; a freshly downloaded file that fails the check is deleted, a cached
    one is left for the user to inspect.
    """
    target = cached_path(url, directory)
    record = _hash_record(target)
    recorded = _read_record(record, url)
    if target.exists():
        actual = sha256_file(target)
        _check_hash(
            target, actual, sha256 or recorded, "manifest" if sha256 else "recorded at first download"
        )
        if sha256 and recorded and recorded != actual:
            _write_record(record, url, actual)
    else:
        actual = _download(url, target, progress, expected=sha256)
    if recorded is None or recorded != actual:
        _write_record(record, url, actual)
    return target


def _check_hash(path: Path, actual: str, expected: str | None, origin: str) -> None:
    if expected is not None and actual != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch for {path}: expected {expected} ({origin}), got {actual}; refusing to use it. "
            f"Delete the file to download it again, or replace it with the right one"
        )


def _download(
    url: str, target: Path, progress: bool, expected: str | None = None, timeout: float = 30
) -> str:
    """Stream ``url`` into ``<target>.part`` with a progress bar, check the sha256, then rename into place.

    A killed download leaves only ``.part``, which is never taken for a complete file. Returns the sha256.
    """
    import http.client  # network modules only when a download starts (spec validation stays light)
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise DownloadError(f"download of {url} stopped at {out.tell()} of {total} bytes")
        _check_hash(target, digest.hexdigest(), expected, "manifest")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ChecksumError) as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, DownloadError | ChecksumError):
            raise
        raise DownloadError(
            f"cannot download {url} ({type(exc).__name__}: {exc}). If this machine is offline, download "
            f"the file elsewhere and place it at {target} (the cache directory is set by ${CACHE_ENV})"
        ) from exc
    os.replace(part, target)
    return digest.hexdigest()


def resolve(name_or_path_or_url: str | os.PathLike) -> tuple[Path, str | None]:
    """Local file for a manifest name, a path or a URL, and its format if the manifest states it."""
    text = str(name_or_path_or_url)
    manifest = read_manifest() if MANIFEST_PATH.exists() else {}
    if text in manifest:
        entry = manifest[text]
        if entry.url is not None:
            return fetch(entry.url, entry.sha256), entry.format
        path = PRETRAINED_DIR / entry.file
        if not path.exists():
            raise FileNotFoundError(f"manifest entry {text!r} names {path}, which does not exist")
        if entry.sha256 and (actual := sha256_file(path)) != entry.sha256.lower():
            raise ChecksumError(
                f"sha256 mismatch for {path} (manifest entry {text!r}): expected {entry.sha256}, got {actual}"
            )
        return path, entry.format
    if urllib.parse.urlparse(text).scheme in ("http", "https", "file"):
        return fetch(text), None
    path = Path(text).expanduser()
    if path.is_dir():
        raise CheckpointError(
            f"{path}: is a directory; expected a checkpoint file (EDM .pkl, edmbench "
            ".safetensors or mixture .npz)"
        )
    if path.is_file():
        return path, None
    close = close_match(text, manifest)
    hint = f" Did you mean {close}?" if close else f" Manifest names: {', '.join(manifest)}"
    if not manifest:
        hint = f" (no manifest found at {MANIFEST_PATH})"
    raise FileNotFoundError(f"{text!r} is neither a manifest name, an existing file nor a URL.{hint}")


def detect_format(path: Path) -> str:
    """Format of a checkpoint file from its first bytes: safetensors, zip/npz or pickle."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return "native"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: a corrupt zip archive ({type(exc).__name__}); expected a mixture .npz"
            ) from None
        if names and all(n.endswith(".npy") for n in names):
            return "gmm-npz"
        raise CheckpointError(
            f"{path}: a zip archive that is not a .npz (torch.save files are not accepted; convert "
            f"with `edmbench convert`)"
        )
    if head.startswith(b"\x80"):
        return "edm-pickle"
    raise CheckpointError(
        f"{path}: unknown checkpoint format; valid: {', '.join(FORMATS)} (EDM .pkl, edmbench .safetensors, "
        "mixture .npz)"
    )


def _load_gmm(path: Path, device: torch.device, dtype: torch.dtype, channels_last: bool, **_: Any):
    import torch

    from edmbench.denoisers.analytic import GaussianMixtureDenoiser

    if dtype != torch.float32 or channels_last:
        raise EdmbenchError(
            "the analytic Gaussian-mixture denoiser runs in float64/float32 only; drop dtype/channels_last"
        )
    return GaussianMixtureDenoiser.from_npz(path)


def _load_native(path: Path, device: torch.device, dtype: torch.dtype, channels_last: bool, **limits: Any):
    from edmbench.denoisers.native import load_native

    model = load_native(path, device=device, **limits)
    model.set_precision(dtype, channels_last=channels_last)  # explicit fp32 default, even for use_fp16 nets
    return model


def _load_pickle(path: Path, device: torch.device, dtype: torch.dtype, channels_last: bool, **limits: Any):
    from edmbench.denoisers.pickles import load_edm_pickle

    model = load_edm_pickle(path, device=device, **limits)
    model.set_precision(dtype, channels_last=channels_last)
    return model


@dataclass(frozen=True)
class CheckpointFormat:
    """A checkpoint format: its manifest/``detect_format`` name and ``reader(path, device, dtype,
    channels_last, **limits)`` returning a Denoiser."""

    name: str
    reader: Callable[..., Any]
    description: str
    limits: bool = True  # the reader takes max_parameters / allow_nonfinite


READERS: Registry[CheckpointFormat] = Registry(
    "checkpoint format",
    [
        (f.name, f)
        for f in (
            CheckpointFormat(
                "edm-pickle", _load_pickle, "NVIDIA EDM/EDM2 .pkl, read by the restricted unpickler"
            ),
            CheckpointFormat(
                "native", _load_native, "edmbench .safetensors with its JSON config in the header"
            ),
            CheckpointFormat("gmm-npz", _load_gmm, "analytic Gaussian mixture .npz", limits=False),
        )
    ],
)
FORMATS = READERS.names()


def load(
    name_or_path_or_url: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    *,
    max_parameters: int | None = None,
    allow_nonfinite: bool = False,
):
    """Load a Denoiser by manifest name, path or URL (EDM pickles are read without running their code).

    ``dtype`` is the backbone's compute precision: float32 (default, also for networks trained in fp16),
    bfloat16, or float16 for networks trained with it; reduced precision on CUDA only. Outputs are float32.
    ``max_parameters`` caps the network size read from a file's config (default 2e9,
    ``$EDMBENCH_MAX_PARAMETERS``); non-finite weights are refused unless ``allow_nonfinite``. Every refusal
    is a ``CheckpointError`` naming the file and the rule (docs/checkpoints.md).
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdmbenchError(
            f"device {str(device)!r} requested but CUDA is not available here; use device='cpu'"
        )
    path, fmt = resolve(name_or_path_or_url)
    fmt = fmt or detect_format(path)
    reader = READERS.get(fmt)
    limits = {"max_parameters": max_parameters, "allow_nonfinite": allow_nonfinite} if reader.limits else {}
    return reader.reader(path, device, dtype, channels_last, **limits)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    max_parameters: int | None = None,
    allow_nonfinite: bool = False,
) -> Path:
    """EDM pickle -> native safetensors + JSON config (provenance: source, sha256, module-source hashes)."""
    from edmbench.denoisers.native import save_native
    from edmbench.denoisers.pickles import load_edm_pickle

    path, fmt = resolve(src)
    fmt = fmt or detect_format(path)
    if fmt != "edm-pickle":
        raise EdmbenchError(f"{src}: is a {fmt} file; `edmbench convert` reads EDM pickles (.pkl)")
    model = load_edm_pickle(path, max_parameters=max_parameters, allow_nonfinite=allow_nonfinite)
    provenance = {"source": str(src), "source_sha256": sha256_file(path), **getattr(model, "provenance", {})}
    return save_native(model, dst, provenance=provenance)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``edmbench convert IN OUT``: EDM .pkl (path, URL or manifest name) -> native .safetensors."""
    p = subparsers.add_parser(
        "convert",
        help="convert an EDM .pkl into edmbench's native safetensors format",
        description=convert.__doc__,
    )
    p.add_argument("input", help="EDM pickle: path, URL or manifest name")
    p.add_argument("output", help="output .safetensors file (the JSON config travels in its header)")
    p.add_argument(
        "--max-parameters",
        type=int,
        default=None,
        help="refuse networks larger than this (default 2e9, $EDMBENCH_MAX_PARAMETERS)",
    )
    p.add_argument("--allow-nonfinite", action="store_true", help="convert even if weights hold NaN/inf")
    p.set_defaults(func=_convert_command)


def _convert_command(args: argparse.Namespace) -> int:
    out = convert(
        args.input, args.output, max_parameters=args.max_parameters, allow_nonfinite=args.allow_nonfinite
    )
    print(f"wrote {out}")
    return 0
