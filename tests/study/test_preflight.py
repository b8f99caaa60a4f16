"""Bad specs that used to pass validation are refused by ``run_study.py`` before any file is created: one
clear problem line, exit 2, and the output folder stays empty."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edmbench.study.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).parent))
from conftest import spec_text, write_spec  # noqa: E402


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
    assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))
    assert not (tmp_path / "pwned").exists()


def test_good_spec_passes_preflight(assets):
    from edmbench.study.preflight import input_problems, plan_problems
    from edmbench.study.spec import parse_spec

    spec = parse_spec(spec_text(assets, "good"))
    assert plan_problems(spec) == [] and input_problems(spec) == []
