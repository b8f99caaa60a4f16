"""Issue 14: one error convention for every ``edmbench`` command (one line naming the problem and what
is valid, exit status 2, tracebacks only with ``--debug``), and seed ranges of any length for ``fid``."""

from __future__ import annotations

import pytest

from edmbench.cli import main
from edmbench.generate import SeedRanges, format_seeds, parse_seeds, shift_seeds


def test_convert_refusal_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04" + b"N" * 10)  # no STOP
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(junk), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edmbench convert: error: ") and str(junk) in err[0]
    assert "no STOP opcode" in err[0] and not out.exists()
    assert main(["convert", str(tmp_path), str(out)]) == 2
    assert "is a directory; expected a checkpoint file" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path) -> None:
    from edmbench.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is a directory"):
        main(["--debug", "convert", str(tmp_path), str(tmp_path / "out.safetensors")])


def test_missing_input_is_one_line(tmp_path, capsys) -> None:
    assert main(["convert", str(tmp_path / "absent.pkl"), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a manifest name, an existing file nor a URL" in err[0]


def test_seed_ranges_of_any_length_stay_lazy() -> None:
    assert parse_seeds("5") == [5]  # seed 5 only
    assert parse_seeds("1,2,5-7") == [1, 2, 5, 6, 7]
    huge = parse_seeds("0-99999999999")
    assert isinstance(huge, range) and len(huge) == 10**11
    mixed = parse_seeds("0-3,10-99999999999")
    assert isinstance(mixed, SeedRanges) and len(mixed) == 4 + 99999999990
    assert (mixed[3], mixed[4], mixed[-1]) == (3, 10, 99999999999)
    assert list(mixed[2:6]) == [2, 3, 10, 11] and format_seeds(mixed) == "0-3,10-99999999999"
    assert format_seeds(shift_seeds(mixed, 100)) == "100-103,110-100000000099"
    assert shift_seeds(huge, 5) == range(5, 10**11 + 5)
    for bad, why in (("1-x", "bad seed range"), ("9-3", "empty"), ("99999999999999999999", "bad seed range"),
                     ("9223372036854775808", "too large")):
        with pytest.raises(ValueError, match=why):
            parse_seeds(bad)


@pytest.fixture(scope="module")
def fid_files(tmp_path_factory):
    """A 3-component mixture denoiser on 1x8x8 images and ``random-conv`` reference statistics."""
    import numpy as np
    import torch

    from edmbench.denoisers.analytic import GaussianMixtureDenoiser
    from edmbench.generate import quantize
    from edmbench.metrics.features import extract_features, get_extractor
    from edmbench.metrics.stats import ReferenceStats, StreamingStats, save_reference

    root = tmp_path_factory.mktemp("fid-cli")
    gen = np.random.default_rng(0)
    means = gen.uniform(-0.6, 0.6, size=(3, 64))
    GaussianMixtureDenoiser(np.full(3, 1 / 3), means, np.stack([np.eye(64) * 0.02] * 3),
                            image_shape=(1, 8, 8)).save_npz(root / "gmm.npz")
    x = means[gen.choice(3, size=128)] + gen.standard_normal((128, 64)) * np.sqrt(0.02)
    stats = StreamingStats()
    images = quantize(torch.from_numpy(x).reshape(-1, 1, 8, 8))
    stats.update(extract_features(get_extractor("random-conv"), images).numpy())
    save_reference(root / "ref.npz", ReferenceStats(mu=stats.mean, sigma=stats.cov, n=stats.n))
    return ["fid", "--denoiser", str(root / "gmm.npz"), "--ref", str(root / "ref.npz"), "--extractor",
            "random-conv", "--num-steps", "2", "--batch-size", "4"]


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--seeds", "0-15", "--rho", "1e-300"], "rho=1e-300 is too small"),  # was an OverflowError traceback
    (["--seeds", "5"], "--seeds 5 selects 1 seed; FID needs at least 2 images"),  # was a message about rungs
])
def test_fid_refusals_are_one_line(fid_files, capsys, extra, fragment) -> None:
    assert main([*fid_files, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edmbench fid: error: ") and fragment in err[0], err


_FIRST_BATCH = """
import resource, sys
from edmbench.cli import main
from edmbench.metrics import evaluate

real = evaluate.generate_images


class FirstBatch(Exception):
    pass


def first_batch_only(*args, **kwargs):
    for batch in real(*args, **kwargs):
        raise FirstBatch(len(batch.seeds))
    yield from ()


evaluate.generate_images = first_batch_only
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) << 10
limit = vm + (256 << 20)  # 256 MiB above the loaded process
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    main(sys.argv[1:])
except FirstBatch as exc:
    print(f"first batch of {exc}")
"""


def test_fid_streams_a_seed_range_of_any_length(fid_files, tmp_path) -> None:
    """``--seeds 0-99999999999`` (10^11 seeds) reaches its first generated batch within 256 MiB more address
    space (it used to build a Python list and die of memory); the run is stopped there."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _FIRST_BATCH, *fid_files, "--seeds", "0-99999999999"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.stdout.strip() == "first batch of 4", proc.stderr[-2000:]
