"""``edmbench compare``: identical settings differ by exactly 0 ("not distinguishable"), a 2-step Heun is
"worse" than a 4-step one on the exact GMM companion; bad input is one line, exit 2, before any work."""

from __future__ import annotations

import json

from edmbench.cli import main

ARGS = ["compare", "--denoiser", "digits-gmm", "--ref", "pretrained/digits-train-stats.npz",
        "--extractor", "digits-classifier", "--class", "none", "--seeds", "0-59"]


def test_compare_table_and_json(tmp_path, capsys, monkeypatch):
    from edmbench.resources import data_root

    monkeypatch.chdir(data_root())
    out = tmp_path / "rows.json"
    rc = main([*ARGS, "--setting", "sampler=heun,num_steps=4", "--setting", "sampler=heun,num_steps=4",
               "--setting", "sampler=heun,num_steps=2", "--json", str(out)])
    assert rc == 0
    base, same, coarse = json.loads(out.read_text())
    assert same["difference"] == 0 and same["verdict"] == "not distinguishable at n = 60"
    assert coarse["verdict"] == "worse" and coarse["nfe"] == 3 and base["num_images"] == 60
    assert "| paired SE |" in capsys.readouterr().out


def test_compare_bad_input(capsys):
    assert main([*ARGS, "--setting", "sampler=heun"]) == 2
    assert "at least two --setting" in capsys.readouterr().err
    assert main([*ARGS, "--setting", "sampler=heun", "--setting", "num_stepz=3"]) == 2
    assert "num_stepz" in capsys.readouterr().err


def test_compare_kid_paired(tmp_path, monkeypatch):
    """--objective kid: the jackknife of KID_u over the same seed groups; identical settings differ by 0,
    Heun 2 steps is worse than Heun 4 (digits-gmm, 60 images against the 1,438 reference rows)."""
    from edmbench.resources import data_root

    monkeypatch.chdir(data_root())
    out = tmp_path / "rows.json"
    rc = main([*ARGS, "--objective", "kid", "--setting", "sampler=heun,num_steps=4", "--setting",
               "sampler=heun,num_steps=4", "--setting", "sampler=heun,num_steps=2", "--json", str(out)])
    assert rc == 0
    base, same, coarse = json.loads(out.read_text())
    assert same["difference"] == 0 and same["verdict"] == "not distinguishable at n = 60"
    assert coarse["verdict"] == "worse" and coarse["kid"] > base["kid"] and coarse["paired_se"] > 0
