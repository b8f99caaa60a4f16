"""Pretrained denoisers: the manifest, the download cache with sha256 checks, and ``load``.

``load(name_or_path_or_url)`` accepts a manifest name (``pretrained/manifest.toml``), a local file (EDM
pickle, native safetensors, Gaussian-mixture ``.npz``) or a URL. Downloads go to ``$EDMBENCH_CACHE``
(default ``~/.cache/edmbench``), are written atomically, and are checked against a sha256 (the manifest's,
else the one recorded on first download). See docs/checkpoints.md.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import http.client
import json
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edmbench.resources import pretrained_dir

PRETRAINED_DIR = pretrained_dir()  # checkout: top-level pretrained/; wheel: packaged copy
MANIFEST_PATH = PRETRAINED_DIR / "manifest.toml"
CACHE_ENV = "EDMBENCH_CACHE"
FORMATS = ("edm-pickle", "native", "gmm-npz")
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
        raise ValueError(f"{path}: [models.{name}] needs exactly one of 'url' or 'file'")
    fmt = block.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: [models.{name}] has format {fmt!r}; valid: {', '.join(FORMATS)}")
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


class ChecksumError(ValueError):
    """A file's sha256 differs from the expected (manifest or recorded) value."""


class DownloadError(OSError):
    """A file could not be downloaded; the message names the URL and where to place the file by hand."""


def cached_path(url: str, directory: Path | None = None) -> Path:
    """Where ``url`` lives in the cache: ``<cache>/<file name of the URL>``."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot derive a file name from URL {url!r}")
    return (directory or cache_dir()) / name


def _hash_record(target: Path) -> Path:
    return target.with_name(target.name + ".sha256.json")


def fetch(url: str, sha256: str | None = None, directory: Path | None = None, progress: bool = True) -> Path:
    """Return the cached copy of ``url``, downloading it first if needed; verify its sha256.

    The expected hash is ``sha256`` (the manifest's) if given, else the one recorded next to the file at
    first download (``<file>.sha256.json``). A mismatch raises ``ChecksumError``; a freshly downloaded
    file that fails the check is deleted, a cached one is left for the user to inspect.
    """
    target = cached_path(url, directory)
    record = _hash_record(target)
    if target.exists():
        recorded = json.loads(record.read_text())["sha256"] if record.exists() else None
        actual = sha256_file(target)
        _check_hash(
            target, actual, sha256 or recorded, "manifest" if sha256 else "recorded at first download"
        )
    else:
        actual = _download(url, target, progress, expected=sha256)
    if not record.exists():
        record.write_text(json.dumps({"url": url, "sha256": actual}, indent=1) + "\n")
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
        if entry.sha256 and sha256_file(path) != entry.sha256.lower():
            raise ChecksumError(f"sha256 mismatch for {path} (manifest entry {text!r})")
        return path, entry.format
    if urllib.parse.urlparse(text).scheme in ("http", "https", "file"):
        return fetch(text), None
    path = Path(text).expanduser()
    if path.is_file():
        return path, None
    close = difflib.get_close_matches(text, list(manifest), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Manifest names: {', '.join(manifest)}"
    if not manifest:
        hint = f" (no manifest found at {MANIFEST_PATH})"
    raise FileNotFoundError(f"{text!r} is neither a manifest name, an existing file nor a URL.{hint}")


def detect_format(path: Path) -> str:
    """Format of a checkpoint file from its first bytes: safetensors, zip/npz or pickle."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":
        return "native"
    if head.startswith(b"PK"):
        import zipfile

        with zipfile.ZipFile(path) as z:
            if all(n.endswith(".npy") for n in z.namelist()):
                return "gmm-npz"
        raise ValueError(
            f"{path}: a zip archive that is not a .npz (torch.save files are not accepted; convert "
            f"with `edmbench convert`)"
        )
    if head.startswith(b"\x80"):
        return "edm-pickle"
    raise ValueError(
        f"{path}: unknown checkpoint format; valid: EDM .pkl, edmbench .safetensors, mixture .npz"
    )


def load(
    name_or_path_or_url: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
):
    """Load a Denoiser by manifest name, path or URL (EDM pickles are read without running their code).

    ``dtype`` is the backbone's compute precision: float32 (default, also for networks trained in fp16),
    bfloat16, or float16 for networks trained with it; reduced precision on CUDA only. Outputs are float32.
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available here; use device='cpu'")
    path, fmt = resolve(name_or_path_or_url)
    fmt = fmt or detect_format(path)
    if fmt == "gmm-npz":
        from edmbench.denoisers.analytic import GaussianMixtureDenoiser

        if dtype != torch.float32 or channels_last:
            raise ValueError(
                "the analytic Gaussian-mixture denoiser runs in float64/float32 only; "
                "drop dtype/channels_last"
            )
        return GaussianMixtureDenoiser.from_npz(path)
    if fmt == "native":
        from edmbench.denoisers.native import load_native

        model = load_native(path, device=device)
    else:
        from edmbench.denoisers.pickles import load_edm_pickle

        model = load_edm_pickle(path, device=device)
    model.set_precision(dtype, channels_last=channels_last)  # explicit fp32 default, even for use_fp16 nets
    return model


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """EDM pickle -> native safetensors + JSON config (provenance: source, sha256, module-source hashes)."""
    from edmbench.denoisers.native import save_native
    from edmbench.denoisers.pickles import load_edm_pickle

    path, _ = resolve(src)
    model = load_edm_pickle(path)
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
    p.set_defaults(func=_convert_command)


def _convert_command(args: argparse.Namespace) -> int:
    out = convert(args.input, args.output)
    print(f"wrote {out}")
    return 0
