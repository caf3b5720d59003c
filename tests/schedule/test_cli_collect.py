"""`direct-opt schedule`: a tiny collect -> fit -> predict -> optimize chain, one-line exit-2
errors, and collect's branching giving exactly the numbers of a run trained from scratch."""

import json

import numpy as np
import pytest

from direct_opt.cli import main
from direct_opt.schedule import WSD, Constant, collect, load_curves

TINY = dict(batch_size=4, eval_every=4, n_eval=8, n_train=128, model=dict(d_model=16, n_layer=1, n_head=2))


def test_branched_runs_equal_runs_from_scratch():
    scheds = [Constant(24, 3e-3, 4), WSD(24, 3e-3, 0.25, "linear", 4), WSD(24, 3e-3, 0.5, "cosine", 4)]
    together = collect(scheds, **TINY)
    alone = collect(scheds[2:], **TINY)
    assert [c.name for c in together] == ["constant", "wsd-linear-0.25", "wsd-cosine-0.5"]
    assert np.array_equal(together[2].losses, alone[0].losses)
    assert together[1].steps.tolist() == [4, 8, 12, 16, 20, 24]
    assert together[0].model_size == together[1].model_size > 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("sched")
    args = ["schedule", "collect", "--out", str(d / "c"), "--steps", "24", "--warmup", "4", "--ratios", "0.25,0.5",
            "--shapes", "linear", "--batch-size", "4", "--eval-every", "4", "--n-eval", "8", "--n-train", "128",
            "--d-model", "16", "--n-layer", "1", "--n-head", "2", "--quiet"]
    assert main(args) == 0
    assert main(["schedule", "fit", "--curves", str(d / "c" / "curves.json"), "--law", "momentum",
                 "--fit-on", "constant,cosine,wsd-linear-0.5", "--bootstrap", "2", "--starts", "2",
                 "--out", str(d / "law.json"), "--plot", str(d / "fit.png")]) == 0
    return d


def test_cli_chain(chain, capsys):
    d = chain
    assert len(load_curves(d / "c" / "curves.json")) == 4 and (d / "c" / "curves.png").exists()
    law = json.loads((d / "law.json").read_text())
    assert law["law"] == "momentum" and "wsd-linear-0.25" in law["fit"]["heldout"]
    assert main(["schedule", "predict", "--law", str(d / "law.json"), "--schedule", "wsd:ratio=0.3,shape=step",
                 "--total-steps", "24", "--warmup", "4", "--out", str(d / "p.json"), "--plot", str(d / "p.png")]) == 0
    pred = json.loads((d / "p.json").read_text())["predictions"]["wsd:ratio=0.3,shape=step"]
    assert len(pred["loss"]) == 24 and pred["final_interval"][0] <= pred["final_interval"][1]
    assert main(["schedule", "optimize", "--law", str(d / "law.json"), "--total-steps", "24", "--warmup", "4",
                 "--knots", "8", "--out", str(d / "o.json"), "--plot", str(d / "o.png")]) == 0
    opt = json.loads((d / "o.json").read_text())
    grid = [v for g in opt["grid"] for row in g for v in row if v is not None]
    assert opt["best_loss"] <= min(grid) + 1e-12 and (d / "o.png").exists()
    assert "best WSD" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["schedule"], "needs an action"),
    (["schedule", "fit", "--curves", "nope.csv"], "does not exist"),
    (["schedule", "fit", "--curves", "{c}", "--law", "power"], "unknown loss law"),
    (["schedule", "fit", "--curves", "{c}", "--fit-on", "cosine,zzz"], "zzz"),
    (["schedule", "predict", "--law", "{law}"], "--schedule"),
    (["schedule", "predict", "--law", "{law}", "--schedule", "wsd:ratio=2", "--total-steps", "10"], "decay_ratio"),
    (["schedule", "predict", "--law", "{law}", "--schedule", "constant", "--total-steps", "10", "--peak-lr", "-1"],
     "peak_lr"),
    (["schedule", "optimize", "--law", "{law}", "--total-steps", "24", "--shapes", "zigzag"], "zigzag"),
    (["schedule", "optimize", "--law", "{law}"], "--total-steps"),
    (["schedule", "collect", "--out", "x", "--d-model", "30", "--n-head", "4"], "divisible"),
])
def test_cli_errors_are_one_line_exit_2(chain, argv, msg, capsys):
    argv = [a.format(c=chain / "c" / "curves.json", law=chain / "law.json") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("direct-opt: error:") and msg in err
