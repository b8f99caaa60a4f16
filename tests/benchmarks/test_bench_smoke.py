"""The GPU benchmark's ``--smoke`` mode runs every code path on the CPU, so the script cannot rot."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_smoke_runs_on_cpu(capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "Algorithm 2 img/s" in out and "jackknife" in out
