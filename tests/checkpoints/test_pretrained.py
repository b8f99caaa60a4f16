"""Manifest, download cache, sha256 checks, offline errors, ``edmbench.load`` dispatch and ``convert``.

No test touches the network: downloads come from a ``file://`` URL or an ``http.server`` on 127.0.0.1,
and the offline case uses a refused port (127.0.0.1:9).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from pathlib import Path

import pytest
import torch

import edmbench
from edmbench import pretrained
from edmbench.cli import main as cli_main
from edmbench.denoisers.native import read_native_config, save_native
from edmbench.denoisers.precond import EDMPrecond
from edmbench.errors import CheckpointError
from edmbench.pretrained import ChecksumError, DownloadError, cached_path, fetch, read_manifest

UNREACHABLE = "http://127.0.0.1:9/models/edm-unreachable.pkl"  # port 9 (discard) refuses at once


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("EDMBENCH_CACHE", str(directory))
    return directory


@pytest.fixture
def server(tmp_path):
    """HTTP server on 127.0.0.1 serving tmp_path/www; ``.requests`` counts GETs, ``.truncate`` cuts bodies."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            srv.requests += 1
            if srv.truncate:
                body = (root / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])  # then the connection closes
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.requests, srv.truncate, srv.root = 0, False, root
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    """Point the loader at a temporary manifest + pretrained/ directory; returns a writer for its text."""
    directory = tmp_path / "pretrained"
    directory.mkdir()
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", directory)
    monkeypatch.setattr(pretrained, "MANIFEST_PATH", directory / "manifest.toml")

    def write(text: str) -> Path:
        (directory / "manifest.toml").write_text(text)
        return directory

    return write


def tiny_network(kit):
    return kit.make_network(EDMPrecond, kit.DDPMPP)


def test_real_manifest_lists_every_release_with_required_fields() -> None:
    models = read_manifest()
    edm = [n for n in models if n.startswith("edm-")]
    assert len(edm) == 9  # the nine edm-* releases (edm-facts 7.1)
    for name in edm + [n for n in models if n.startswith("baseline-")]:
        e = models[name]
        assert e.format == "edm-pickle" and e.url.endswith(f"/{name}.pkl")
        for key in (
            "dataset",
            "resolution",
            "channels",
            "label_dim",
            "precond",
            "architecture",
            "ref_url",
            "config",
            "published",
            "license",
        ):
            assert key in e.extra, f"{name} lacks {key}"
        for row in e.extra["published"]:
            assert {"fid", "sampler", "source", "confidence"} <= set(row), name
    # EDM README headline numbers (edm-facts 7.2)
    row = models["edm-imagenet-64x64-cond-adm"].extra["published"][0]
    assert (row["fid"], row["nfe"], row["s_churn"], row["s_tmin"], row["s_tmax"], row["s_noise"]) == (
        1.36,
        511,
        40.0,
        0.05,
        50.0,
        1.003,
    )


def _record(path: Path) -> Path:
    return path.parent.with_name(path.parent.name + ".record.json")


def test_download_cache_and_recorded_hash(server, cache) -> None:
    payload = b"edm weights" * 1000
    (server.root / "m.pkl").write_bytes(payload)
    url = f"{server.url}/m.pkl"
    path = fetch(url, progress=False)
    assert path == cached_path(url, cache) and path.parent.parent == cache and path.name == "m.pkl"
    assert path.read_bytes() == payload and not path.with_name("m.pkl.part").exists()
    record = json.loads(_record(path).read_text())
    assert record == {"url": url, "sha256": hashlib.sha256(payload).hexdigest()}
    assert fetch(url, progress=False) == path and server.requests == 1  # cached
    path.write_bytes(payload[:-1] + b"X")  # the cached file changes under us
    with pytest.raises(ChecksumError, match="recorded at first download"):
        fetch(url, progress=False)


def test_manifest_hash_mismatch_is_refused_and_nothing_is_kept(server, cache) -> None:
    (server.root / "m.pkl").write_bytes(b"tampered")
    url = f"{server.url}/m.pkl"
    with pytest.raises(ChecksumError, match="expected 0{64} \\(manifest\\)"):
        fetch(url, sha256="0" * 64, progress=False)
    target = cached_path(url, cache)
    assert not target.exists() and not target.with_name("m.pkl.part").exists()


def test_interrupted_download_leaves_no_complete_looking_file(server, cache) -> None:
    (server.root / "m.pkl").write_bytes(b"x" * 10000)
    url = f"{server.url}/m.pkl"
    target = cached_path(url, cache)
    server.truncate = True
    with pytest.raises(DownloadError):
        fetch(url, progress=False)
    assert not target.exists() and not target.with_name("m.pkl.part").exists()
    target.with_name("m.pkl.part").write_bytes(b"x" * 10)  # as left by a killed process
    server.truncate = False
    assert fetch(url, progress=False).read_bytes() == b"x" * 10000


def test_offline_manifest_name_fails_fast_naming_url_and_path(manifest, cache) -> None:
    manifest(f'[models.edm-offline]\nurl = "{UNREACHABLE}"\nformat = "edm-pickle"\n')
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        edmbench.load("edm-offline")
    assert time.monotonic() - start < 5
    assert UNREACHABLE in str(err.value) and str(cached_path(UNREACHABLE, cache)) in str(err.value)
    assert not any(cache.rglob("*.pkl*"))


def test_cache_is_keyed_by_the_full_url_not_its_last_component(kit, server, manifest, cache) -> None:
    """Issue 14 cache poisoning: a file fetched from another URL with an official file name is never
    taken for the official model."""
    official = f"{server.url}/official/edm-tiny.pkl"
    (server.root / "official").mkdir()
    (server.root / "official" / "edm-tiny.pkl").write_bytes(kit.edm_pickle_bytes(tiny_network(kit)))
    (server.root / "edm-tiny.pkl").write_bytes(b"\x80\x04poisoned")
    manifest(f'[models.edm-tiny]\nurl = "{official}"\nformat = "edm-pickle"\n')
    with pytest.raises(CheckpointError):
        edmbench.load(f"{server.url}/edm-tiny.pkl")  # the attacker's file, same last component
    assert cached_path(official, cache) != cached_path(f"{server.url}/edm-tiny.pkl", cache)
    assert isinstance(edmbench.load("edm-tiny"), EDMPrecond)  # downloads the official one
    assert server.requests == 2


def test_no_url_can_write_a_hash_record(server, cache) -> None:
    (server.root / "m.pkl").write_bytes(b"good")
    url = f"{server.url}/m.pkl"
    target = fetch(url, progress=False)
    forged = json.dumps({"url": url, "sha256": hashlib.sha256(b"evil").hexdigest()}).encode()
    for name in ("m.pkl.sha256.json", f"{target.parent.name}.record.json"):
        (server.root / name).write_bytes(forged)
        planted = fetch(f"{server.url}/{name}", progress=False)
        assert planted.parent.parent == cache and planted != _record(target)  # a data file, one folder down
    assert json.loads(_record(target).read_text())["sha256"] == hashlib.sha256(b"good").hexdigest()
    assert fetch(url, progress=False).read_bytes() == b"good"


def test_a_record_made_for_another_url_is_refused(server, cache) -> None:
    (server.root / "m.pkl").write_bytes(b"good")
    url = f"{server.url}/m.pkl"
    target = fetch(url, progress=False)
    _record(target).write_text(json.dumps({"url": "http://elsewhere/m.pkl", "sha256": "0" * 64}))
    with pytest.raises(ChecksumError, match="was made for 'http://elsewhere/m.pkl'"):
        fetch(url, progress=False)


def test_load_pickle_by_file_url_and_by_name(kit, manifest, tmp_path, cache) -> None:
    net = tiny_network(kit)
    src = tmp_path / "edm-tiny.pkl"
    src.write_bytes(kit.edm_pickle_bytes(net))
    x, sigma, labels = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 5.0]), torch.eye(10)[:2]
    loaded = edmbench.load(src.as_uri())
    assert torch.equal(loaded(x, sigma, labels), net(x, sigma, labels))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    manifest(f'[models.edm-tiny]\nurl = "{src.as_uri()}"\nformat = "edm-pickle"\nsha256 = "{digest}"\n')
    assert torch.equal(edmbench.load("edm-tiny")(x, sigma, labels), net(x, sigma, labels))


def test_shipped_native_and_mixture_entries(kit, manifest, tmp_path) -> None:
    from edmbench.denoisers.analytic import GaussianMixtureDenoiser

    directory = manifest("")
    net = tiny_network(kit)
    save_native(net, directory / "tiny.safetensors")
    gmm = GaussianMixtureDenoiser(
        [0.3, 0.7],
        torch.randn(2, 4, dtype=torch.float64),
        torch.eye(4, dtype=torch.float64).expand(2, 4, 4) * 0.5,
        image_shape=(1, 2, 2),
    )
    gmm.save_npz(directory / "gmm.npz")
    good = hashlib.sha256((directory / "tiny.safetensors").read_bytes()).hexdigest()
    manifest(
        f'[models.tiny]\nfile = "tiny.safetensors"\nformat = "native"\nsha256 = "{good}"\n'
        '[models.bad-hash]\nfile = "tiny.safetensors"\nformat = "native"\nsha256 = "' + "1" * 64 + '"\n'
        '[models.mix]\nfile = "gmm.npz"\nformat = "gmm-npz"\n'
    )
    x, sigma, labels = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 5.0]), torch.eye(10)[:2]
    assert torch.equal(edmbench.load("tiny")(x, sigma, labels), net(x, sigma, labels))
    with pytest.raises(ChecksumError, match="bad-hash"):
        edmbench.load("bad-hash")
    mix = edmbench.load("mix")
    assert isinstance(mix, GaussianMixtureDenoiser)
    xm = torch.randn(3, 1, 2, 2)
    torch.testing.assert_close(mix(xm, 0.7), gmm(xm, 0.7), rtol=0, atol=0)
    assert isinstance(edmbench.load(directory / "gmm.npz"), GaussianMixtureDenoiser)  # detected by content


def test_bad_manifest_entries_and_unknown_names_are_explained(manifest, tmp_path) -> None:
    manifest('[models.a]\nformat = "native"\n')
    with pytest.raises(ValueError, match=r"\[models.a\] needs exactly one of 'url' or 'file'"):
        read_manifest()
    manifest('[models.edm-tiny]\nfile = "x"\nformat = "onnx"\n')
    with pytest.raises(ValueError, match="format 'onnx'; valid: edm-pickle, gmm-npz, native"):
        read_manifest()
    manifest('[models.edm-tiny]\nfile = "x.safetensors"\nformat = "native"\n')
    with pytest.raises(FileNotFoundError, match="Did you mean edm-tiny"):
        edmbench.load("edm-tiyn")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        edmbench.load(junk)


def test_convert_cli_round_trip(kit, tmp_path, capsys) -> None:
    net = tiny_network(kit)
    src, out = tmp_path / "edm-tiny.pkl", tmp_path / "edm-tiny.safetensors"
    src.write_bytes(kit.edm_pickle_bytes(net, module_src="# networks.py of the run\n"))
    assert cli_main(["convert", str(src), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    x, sigma, labels = torch.randn(2, 3, 8, 8), torch.tensor([0.02, 20.0]), torch.eye(10)[:2]
    from_pickle = edmbench.load(src)
    from_native = edmbench.load(out)
    assert torch.equal(from_native(x, sigma, labels), from_pickle(x, sigma, labels))
    assert torch.equal(from_native(x, sigma, labels), net(x, sigma, labels))
    provenance = read_native_config(out)["provenance"]
    assert provenance["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert provenance["module_src_sha256"] == [hashlib.sha256(b"# networks.py of the run\n").hexdigest()]


SHIPPED = [name for name, e in read_manifest().items() if e.file is not None]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_load_and_denoise(name) -> None:
    entry = read_manifest()[name]
    path = pretrained.PRETRAINED_DIR / entry.file
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout yet")
    net = edmbench.load(name)
    c, h, w = net.image_shape
    assert (c, h, w) == (
        entry.extra.get("channels", c),
        entry.extra.get("resolution", h),
        entry.extra.get("resolution", w),
    )
    assert net.label_dim == entry.extra.get("label_dim", net.label_dim)
    x = torch.randn(4, c, h, w)
    labels = torch.eye(net.label_dim)[:4] if net.label_dim else None
    out = net(x, torch.tensor([0.01, 0.5, 2.0, 80.0]), labels)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
