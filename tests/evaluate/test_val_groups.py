"""Validation group labels through the harness and the ``direct-opt evaluate`` flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from direct_opt.cli import main
from direct_opt.errors import DirectOptError
from direct_opt.evaluate import evaluate
from direct_opt.evaluate.harness import extract_phase, plan_runs, validate
from direct_opt.extract import extract_stats
from direct_opt.lm import lm_loss

from .evaluate_testlib import EXTRACT, SCHEDULE

GROUPS = np.array(["man1"] * 5 + ["man3"] * 3)  # one label per validation row of tiny_data (M = 8)


def test_val_groups_reach_stats_and_the_fingerprint(data, state) -> None:
    plan = validate(state, lm_loss, data["pool"], data["val"], data["test"], ["less"], k=4, seeds=[0],
                    schedule=SCHEDULE, extract_config=EXTRACT, val_groups=GROUPS, progress=False)
    core, _, pending = plan_runs(plan)
    extract_phase(plan, pending)
    assert (plan.stats.val_groups == GROUPS).all()
    assert core["data"]["val_groups"]
    plain = plan_runs(validate(state, lm_loss, data["pool"], data["val"], data["test"], ["less"], k=4, seeds=[0],
                               schedule=SCHEDULE, extract_config=EXTRACT, progress=False))[0]
    assert "val_groups" not in plain["data"]  # without groups the fingerprint is as before (old runs resume)


def test_faithful_less_takes_the_max_over_the_groups(data, state) -> None:
    rep = evaluate(state, lm_loss, data["pool"], data["val"], data["test"], ["less"], k=4, seeds=[0],
                   schedule=SCHEDULE, extract_config=EXTRACT, val_groups=GROUPS, baseline=None, progress=False)
    assert rep.runs[0]["diagnostics"]["val_groups"] == ["man1", "man3"]


@pytest.mark.parametrize("groups, needle", [
    (GROUPS[:5], r"val_groups has shape \(5,\); expected one entry per sample \(8,\)"),
    (np.zeros((8, 2)), "val_groups must be a 1-D array of integers or strings"),
])
def test_bad_val_groups_fail_before_any_work(data, state, groups, needle) -> None:
    with pytest.raises(DirectOptError, match=needle):
        validate(state, lm_loss, data["pool"], data["val"], data["test"], ["less"], k=4, seeds=[0],
                 schedule=SCHEDULE, extract_config=EXTRACT, val_groups=groups)


def test_val_groups_must_match_the_stats_given(data, state) -> None:
    from direct_opt.lm import TinyGPT

    model = TinyGPT(state.config)
    model.load_state_dict(state.model_state)
    stats = extract_stats(model, lm_loss, data["pool"], data["val"], EXTRACT)  # no groups
    with pytest.raises(DirectOptError, match="val_groups differ from the val_groups of the stats given"):
        validate(state, lm_loss, data["pool"], data["val"], data["test"], ["random"], k=4, seeds=[0],
                 schedule=SCHEDULE, stats=stats, val_groups=GROUPS)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_val_group_field_missing_is_one_usage_line_before_model_loading(tmp_path, capsys) -> None:
    rows = [{"text": f"sample number {i}", "task": f"t{i % 2}"} for i in range(6)]
    files = {name: _jsonl(tmp_path / f"{name}.jsonl", rows[i * 2:i * 2 + 2])
             for i, name in enumerate(("pool", "val", "test"))}
    argv = ["evaluate", "--hf-model", str(tmp_path / "no-such-model"), "--pool", files["pool"], "--val-data",
            files["val"], "--test-data", files["test"], "--no-progress", "--no-plot"]
    assert main([*argv, "--val-group-field", "topic"]) == 2  # the model directory is never opened
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("direct-opt: error: --val-group-field:")
    assert "has no field 'topic'; fields: ['task', 'text']" in err[0]


def test_val_group_field_needs_hf_data(capsys) -> None:
    assert main(["evaluate", "--corpus", "c-headers", "--val-group-field", "task"]) == 2
    assert "--val-group-field names a field of --val-data" in capsys.readouterr().err


def test_val_group_field_reaches_faithful_less_on_a_hugging_face_checkpoint(tmp_path, capsys) -> None:
    pytest.importorskip("transformers")
    from direct_opt.extract.hf_tiny import tiny_causal_lm, word_tokenizer

    words = "the a cat dog sat ran on under mat log red blue".split()
    texts = [" ".join(words[(i * 5 + j) % len(words)] for j in range(3 + i % 6)) + f" {i}" for i in range(30)]
    tok = word_tokenizer(texts, max_vocab=64)
    tiny_causal_lm("gpt2", vocab=64).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    rows = [{"text": t, "task": "odd" if i % 2 else "even"} for i, t in enumerate(texts)]
    files = {name: _jsonl(tmp_path / f"{name}.jsonl", part)
             for name, part in (("pool", rows[:18]), ("val", rows[18:24]), ("test", rows[24:]))}
    code = main(["evaluate", "--hf-model", str(tmp_path / "model"), "--pool", files["pool"], "--val-data", files["val"],
                 "--test-data", files["test"], "--val-group-field", "task", "--selectors", "less:features=sgd",
                 "-k", "4", "--seeds", "0", "--anneal-steps", "2", "--k-sketch", "16", "--out", str(tmp_path / "eval"),
                 "--no-plot", "--no-progress"])
    assert code == 0, capsys.readouterr()
    run = json.loads(next((tmp_path / "eval" / "runs").glob("less*__seed0.json")).read_text())
    assert run["diagnostics"]["val_groups"] == ["even", "odd"]


@pytest.mark.skipif(not (Path("/usr/include").is_dir() and Path("/usr/share/man/man1").is_dir()),
                    reason="needs /usr/include and /usr/share/man (the c-headers corpus's directories)")
def test_cli_c_headers_corpus_passes_the_man_sections(tmp_path, capsys) -> None:
    cfg = {"corpus": "c-headers", "quick": True, "n_pool": 24, "n_val": 6, "n_test": 8, "n_pretrain": 32,
           "pretrain_steps": 2, "model": {"n_layer": 1, "d_model": 16, "n_head": 2}, "selectors": ["less"],
           "seeds": [0], "k": 4, "schedule": {"steps": 2, "batch_size": 4, "eval_every": 1},
           "extract": {"k_sketch": 8, "batch_size": 32}, "progress": False, "plot": False}
    (tmp_path / "eval.json").write_text(json.dumps(cfg))
    assert main(["evaluate", "--config", str(tmp_path / "eval.json"), "--out", str(tmp_path / "out")]) == 0
    assert "target clean:man" in capsys.readouterr().out
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    groups = res["config"]["meta"]["setup"]["corpus_info"]["val_group_counts"]
    assert sum(groups.values()) == 6 and all(g.startswith("man") for g in groups)
    run = json.loads((tmp_path / "out" / "runs" / "less__seed0.json").read_text())
    assert run["diagnostics"]["val_groups"] == sorted(groups)
    assert res["config"]["core"]["data"]["val_groups"]
