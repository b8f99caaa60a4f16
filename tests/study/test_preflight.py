"""Bad specs that used to pass validation are refused by ``run_study.py`` before any file is created: one
clear problem line, exit 2, and the output folder stays empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edmbench.study.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).parent))
from conftest import PYTHON, REPO, spec_text, write_spec  # noqa: E402


def _bad_reference(tmp_path: Path) -> tuple[str, str]:
    wrong_dim = tmp_path / "ref-7d.npz"
    np.savez(wrong_dim, mu=np.zeros(7), sigma=np.eye(7))
    malformed = tmp_path / "ref-broken.npz"
    malformed.write_bytes(b"PK\x03\x04 this is not a zip archive")
    return str(wrong_dim), str(malformed)


def _cases(assets: dict[str, str], tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (spec text, a fragment the error must contain)."""
    wrong_dim, malformed = _bad_reference(tmp_path)
    hostile = tmp_path / "model.pkl"
    hostile.write_bytes(b"\x80\x04cos\nsystem\n(S'touch pwned'\ntR.")
    base = spec_text(assets, "bad")
    return {
        "rung of 1": (spec_text(assets, "bad", rungs="[1, 16]"), "rungs [1]"),
        "class 99 on an unconditional model": (
            base.replace(f'model = "{assets["model"]}"', f'model = "{assets["model"]}"\nclass_policy = 99'),
            "unconditional"),
        "reference of the wrong dimension": (base.replace(assets["reference"], wrong_dim), "7-d"),
        "malformed reference": (base.replace(assets["reference"], malformed), "cannot be read"),
        "hostile model file": (base.replace(assets["model"], str(hostile)), "cannot be loaded"),
        "num_images 9.2e18": (spec_text(assets, "bad", num_images=9_200_000_000_000_000_000, rungs="[8]"),
                              "EDMBENCH_MAX_NUM_IMAGES"),
        "num_steps 1e9": (base.replace("high = 12", "high = 1000000000"), "EDMBENCH_MAX_NUM_STEPS"),
    }


CASES = ["rung of 1", "class 99 on an unconditional model", "reference of the wrong dimension",
         "malformed reference", "hostile model file", "num_images 9.2e18", "num_steps 1e9"]


@pytest.mark.parametrize("case", CASES)
def test_bad_spec_refused_before_any_file(assets, tmp_path, monkeypatch, capsys, case):
    text, fragment = _cases(assets, tmp_path)[case]
    path = write_spec(tmp_path, text)
    runs = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    assert cli_main([str(path), "--no-progress", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))
    assert not (tmp_path / "pwned").exists()


def test_good_spec_passes_preflight(assets):
    from edmbench.study.preflight import input_problems, plan_problems
    from edmbench.study.spec import parse_spec

    spec = parse_spec(spec_text(assets, "good"))
    assert plan_problems(spec) == [] and input_problems(spec) == []


def _study_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("EDMBENCH_DEBUG", None)
    return subprocess.run([PYTHON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_error_is_one_line_and_debug_shows_the_traceback(assets, tmp_path):
    """The CLI convention (issue 14): a bad spec is one line on stderr, exit 2; ``--debug`` on the line (or
    ``edmbench --debug study``) shows the traceback instead; several problems are one line each."""
    path = write_spec(tmp_path, spec_text(assets, "bad", rungs="[1, 16]"))
    plain = _study_cli(str(REPO / "run_study.py"), str(path), "--no-progress", cwd=tmp_path)
    lines = plain.stderr.strip().splitlines()
    assert plain.returncode == 2 and len(lines) == 1, plain.stderr
    assert lines[0].startswith("error: invalid study ") and "rungs [1]" in lines[0] and "--debug" in lines[0]
    for args in ((str(REPO / "run_study.py"), str(path), "--no-progress", "--debug"),
                 ("-m", "edmbench", "--debug", "study", str(path), "--no-progress")):
        debug = _study_cli(*args, cwd=tmp_path)
        assert debug.returncode == 1, debug.stderr
        assert "Traceback (most recent call last)" in debug.stderr, debug.stderr
        assert "SpecError" in debug.stderr, debug.stderr
    typos = spec_text(assets, "bad").replace("[budget]", "[budget]\nn_trialz = 3\ntimeout_z = 1")
    several = write_spec(tmp_path, typos, "typos.toml")
    many = _study_cli(str(REPO / "run_study.py"), str(several), "--no-progress", cwd=tmp_path)
    lines = many.stderr.strip().splitlines()
    assert many.returncode == 2 and lines[0].endswith("2 problems (--debug for the traceback)"), many.stderr
    assert len(lines) == 3 and all(line.startswith("  - [") for line in lines[1:]), many.stderr
    assert not (tmp_path / "runs").exists()
