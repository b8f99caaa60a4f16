"""Sharded evaluation: two gloo processes on CPU equal one process (FID, its leave-one-out values, KID, rung
sequence), a pruned evaluation stops every rank at the rung, and a dead rank fails the others with a clear
error within the collective timeout (120 s in shard_worker.py) instead of hanging."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("shard_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(tmp_path: Path, world_size: int, mode: str = "full", weights: str | None = None) -> list[dict]:
    """Start ``world_size`` ranks like torchrun does (env://) and return each rank's JSON report."""
    out = tmp_path / f"{mode}-{world_size}-{weights}.json"
    port = str(_free_port())
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        args = [sys.executable, str(WORKER), str(out), mode, *([weights] if weights else [])]
        procs.append(subprocess.Popen(args, env=env))
    for proc in procs:
        proc.wait(timeout=300)  # generous bound; the worker's own collectives time out after 20 s
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(world_size)
            if Path(f"{out}.{rank}").exists()]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    (report,) = _run(tmp_path_factory.mktemp("single"), 1)
    return report


def _same(a: dict, b: dict) -> None:
    assert a["num_images"] == b["num_images"]
    assert a["fid"] == pytest.approx(b["fid"], rel=1e-10)
    assert a["fid_loo"] == pytest.approx(b["fid_loo"], rel=1e-10)
    assert a["kid"] == pytest.approx(b["kid"], rel=1e-10)
    assert a["nfe"] == b["nfe"]


@pytest.mark.parametrize("weights", [None, "1,0"], ids=["uneven-halves", "rank1-no-images"])
def test_two_gloo_ranks_equal_one_process(tmp_path, single, weights):
    reports = _run(tmp_path, 2, weights=weights)
    assert [r["num_images"] for r in single["results"]] == [40, 161, 230]
    for report in reports:  # every rank yields the same merged results
        assert len(report["results"]) == 3
        for mine, one in zip(report["results"], single["results"], strict=True):
            _same(mine, one)
    generated = [set(r["generated"]) for r in reports]
    assert not generated[0] & generated[1] and generated[0] | generated[1] == set(range(100, 330))
    if weights == "1,0":
        assert reports[1]["generated"] == [] and reports[1]["sample_evaluations"] == 0


@pytest.mark.slow
def test_a_pruned_sharded_evaluation_stops_every_rank_at_the_rung(tmp_path):
    reports = _run(tmp_path, 2, mode="prune")
    assert [len(r["results"]) for r in reports] == [1, 1]
    # counted: together the ranks generated exactly the first rung's 40 seeds (Heun, 3 steps: 5 NFE each)
    assert sorted(reports[0]["generated"] + reports[1]["generated"]) == list(range(100, 140))
    assert reports[0]["sample_evaluations"] + reports[1]["sample_evaluations"] == 40 * 5


def test_a_dead_rank_fails_the_others_with_a_clear_error(tmp_path):
    reports = _run(tmp_path, 2, mode="die")
    assert len(reports) == 1  # rank 1 exited without a report
    error = reports[0]["results"][-1]["error"]
    assert "rank 0 of 2 failed" in error and "another rank died" in error
