"""Light start-up: ``edmbench --help``, ``run_study.py --help``, spec validation and ``run_study.py
--dry-run`` import neither torch nor torchvision (checked in a fresh interpreter through ``sys.modules``); the
heavy imports happen when work starts. The sampler, discretisation and knob registries are metadata that
resolve their implementations on first use."""

import json
import subprocess
import sys
from pathlib import Path

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


def test_spec_validation_imports_no_torch():
    assert _imported_after("from edmbench.study.spec import load_spec; "
                           "load_spec('studies/quickstart.toml')") == []


def test_dry_run_imports_no_torch():
    assert _imported_after("import runpy; "
                           "sys.argv = ['run_study.py', 'studies/quickstart.toml', '--dry-run']; "
                           "runpy.run_path('run_study.py', run_name='__main__')") == []


def test_sampler_metadata_imports_no_torch_until_a_solver_is_used():
    code = ("from edmbench.sampling import SamplerConfig, get_sampler; "
            "SamplerConfig(sampler='heun', num_steps=18).nfe; get_sampler('unipc').orders")
    assert _imported_after(code) == []
    assert _imported_after(code + "; get_sampler('heun').fn") == ["torch"]


def test_the_light_extractor_names_are_registered():
    from edmbench.metrics.features import extractor_names
    from edmbench.study.spec import LIGHT_EXTRACTORS

    assert set(extractor_names()) >= LIGHT_EXTRACTORS


def test_every_registered_sampler_resolves_to_its_function():
    from edmbench.sampling import SAMPLERS

    for name, info in SAMPLERS.items():
        assert callable(info.fn) and info.fn.__name__ == name, name
