"""``direct-opt evaluate``: a tiny end-to-end run from a config file, resume, and one-line errors."""

from __future__ import annotations

import json

import pytest

from direct_opt.cli import main

TINY = {"corpus": "stdlib", "quick": True, "n_pool": 24, "n_val": 4, "n_test": 8, "n_pretrain": 32,
        "pretrain_steps": 2, "model": {"n_layer": 1, "d_model": 16, "n_head": 2}, "selectors": ["random", "less"],
        "seeds": [0], "k": 4, "schedule": {"steps": 2, "batch_size": 4, "eval_every": 1},
        "extract": {"k_sketch": 8, "batch_size": 32}, "progress": False, "plot": False}


def test_config_file_run_and_resume(tmp_path, capsys):
    cfg = tmp_path / "eval.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    assert main(["evaluate", "--config", str(cfg), "--out", str(out), "--seeds", "0,1"]) == 0
    printed = capsys.readouterr().out
    assert "| random |" in printed and "| less |" in printed and "pretraining TinyGPT" in printed
    assert "Δ test vs less [95% CI]" in printed  # by default the table also compares with less
    res = json.loads((out / "results.json").read_text())
    assert res["labels"] == ["random", "less"] and res["seeds"] == [0, 1]  # the flag overrode the file
    assert res["config"]["core"]["schedule"]["n_steps"] == 2 and res["k"] == 4
    first = (out / "runs" / "less__seed1.json").read_text()
    # second call: checkpoint and every run are reused
    assert main(["evaluate", "--config", str(cfg), "--out", str(out), "--seeds", "0,1"]) == 0
    assert "checkpoint reused" in capsys.readouterr().out
    assert (out / "runs" / "less__seed1.json").read_text() == first
    # the same out_dir with another K is refused in one line
    assert main(["evaluate", "--config", str(cfg), "--out", str(out), "-k", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("direct-opt: error: ResumeMismatchError:") and "--overwrite" in err[0]


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "--bogus"], "unrecognized arguments: --bogus"),
    (["evaluate", "--seeds", "a,b"], "seeds must look like 0,1,2 or 0-4"),
    (["evaluate", "--shape", "exp"], "invalid choice: 'exp'"),
    (["evaluate", "--anneal-steps", "5", "--anneal-epochs", "2"], "not allowed with argument"),
    (["evaluate", "--selectors", "random,direct", "--compare-to", "less"], "--compare-to less: no selector"),
])
def test_bad_flags_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("direct-opt: error:") and needle in err[0]
    assert captured.out == ""


def test_bad_config_file_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"corpus": "stdlib", "n_pols": 10}))
    assert main(["evaluate", "--config", str(cfg)]) == 2  # a bad argument: exit 2, before any work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key(s) ['n_pols']" in err[0]
