"""Study trials sharded over ranks (``edmbench.study.distributed``): a study run by two gloo processes on CPU
(rank 0 alone asks and tells Optuna; both ranks score their share of each trial's seeds) finds the same trials
with the same values, rung values and error bars as the same study in one process, and a rank that dies
mid-trial fails rank 0 with a clear error within the collective timeout, the trial retired with a retry.
The ranks are started as torchrun does (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("shard_study_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(out: Path, world_size: int, mode: str, reference: Path) -> list[dict]:
    """Start ``world_size`` ranks and return each rank's JSON report (missing for a rank that died)."""
    out.mkdir(parents=True, exist_ok=True)
    port, procs = str(_free_port()), []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1",
               "EDMBENCH_SHARD_TIMEOUT_S": "60"}
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out), mode, str(reference)], env=env))
    for proc in procs:
        proc.wait(timeout=300)  # generous bound; the ranks' own collectives time out after 60 s
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world_size)
            if (out / f"rank{r}.json").exists()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sharded-ref") / "ref.npz"
    subprocess.run([sys.executable, str(WORKER), str(path.parent), "reference", str(path)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "1"}, timeout=300)
    return path


@pytest.mark.slow
def test_two_gloo_ranks_run_the_same_study_as_one_process(tmp_path, reference):
    (one,) = _run(tmp_path / "one", 1, "run", reference)
    lead, follower = _run(tmp_path / "two", 2, "run", reference)
    assert follower == {"exit": 0, "followed": [3]}  # rank 1 scored every trial, then left the process
    assert len(one["trials"]) == len(lead["trials"]) == 3
    values = set()
    for a, b in zip(one["trials"], lead["trials"], strict=True):
        assert a["params"] == b["params"] and a["state"] == b["state"] == "COMPLETE"
        assert b["value"] == pytest.approx(a["value"], rel=1e-10)
        assert b["intermediate"].keys() == a["intermediate"].keys() == {"80"}
        assert b["intermediate"]["80"] == pytest.approx(a["intermediate"]["80"], rel=1e-10)
        assert b["result"]["fid_err"] == pytest.approx(a["result"]["fid_err"], rel=1e-8)
        assert b["result"]["num_images"] == a["result"]["num_images"] == 120
        values.add(round(a["value"], 6))
    assert len(values) == 3  # three different trials: a mix-up of configurations would show


@pytest.mark.slow
def test_a_dead_rank_fails_the_study_with_a_clear_error_and_the_trial_is_retried(tmp_path, reference):
    reports = _run(tmp_path / "die", 2, "die", reference)
    assert len(reports) == 1  # rank 1 vanished mid-trial
    (lead,) = reports
    assert "rank 0 of 2 failed" in lead["error"] and "another rank died" in lead["error"]
    first, retry = lead["trials"]
    assert first["state"] == "FAIL" and first["intermediate"].keys() == {"80"}  # it got as far as the rung
    assert first["result"]["num_images"] == 80  # the merged count, not rank 0's share
    assert retry["state"] == "WAITING"  # re-running the same command redoes it


class _Channel:
    """A stand-in for a Shard's broadcast: rank 0's messages, in order, as the followers receive them."""

    def __init__(self, messages: list) -> None:
        self.messages, self.is_main, self.device = list(messages), False, "cpu"

    def broadcast_object(self, obj):
        return self.messages.pop(0)


class _Scorer:
    def __init__(self) -> None:
        self.calls = []

    def rungs(self, config, seeds, rungs):
        self.calls.append((config.num_steps, seeds, rungs))
        return iter([1, 2])


def test_a_follower_scores_each_announced_trial_until_the_end_is_announced():
    from edmbench.sampling import SamplerConfig
    from edmbench.study.distributed import TrialWork, follow

    works = [TrialWork(SamplerConfig(num_steps=n).to_dict(), (10, 50), (20,)) for n in (3, 7)]
    scorer = _Scorer()
    assert follow(scorer, _Channel([*works, None])) == 2
    assert scorer.calls == [(3, range(10, 50), (20,)), (7, range(10, 50), (20,))]


def test_torchrun_refuses_several_workers_per_rank():
    from edmbench.study.distributed import check_options
    from edmbench.study.runner import DEFAULT_EVALUATOR, RunOptions

    with pytest.raises(ValueError, match="already split over the ranks"):
        check_options(RunOptions(workers=2), DEFAULT_EVALUATOR)
    with pytest.raises(ValueError, match="only the default evaluator"):
        check_options(RunOptions(evaluator="my.module:factory"), DEFAULT_EVALUATOR)
    check_options(RunOptions(), DEFAULT_EVALUATOR)
