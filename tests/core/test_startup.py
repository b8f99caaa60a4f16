"""Light start-up: ``edmbench --help`` and ``run_study.py --help`` import neither torch nor torchvision
(checked in a fresh interpreter through ``sys.modules``); the heavy imports happen when work starts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "torch_fidelity")


def _imported_after(code: str) -> list[str]:
    probe = (f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
             f"import json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_edmbench_help_imports_no_torch():
    assert _imported_after("from edmbench.cli import main; main(['--help'])") == []


def test_a_bad_sub_command_is_refused_without_torch():
    assert _imported_after("from edmbench.cli import main; main(['no-such-command'])") == []


def test_run_study_help_imports_no_torch():
    assert _imported_after("import runpy; sys.argv = ['run_study.py', '--help']; "
                           "runpy.run_path('run_study.py', run_name='__main__')") == []


@pytest.mark.xfail(reason="spec validation imports edmbench.sampling, whose modules import torch at module "
                          "level (sampling/__init__ -> lownfe, discretizations); owners told (coord notes)",
                   strict=False)
def test_spec_validation_imports_no_torch():
    assert _imported_after("from edmbench.study.spec import load_spec; "
                           "load_spec('studies/quickstart.toml')") == []
