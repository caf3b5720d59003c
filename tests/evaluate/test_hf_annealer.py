"""The annealer protocol with a Hugging Face model: exact checkpoint restore between runs,
optimiser restore/reset, the Trainer engine, and evaluate() end to end on a tiny Llama."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from direct_opt.evaluate import AnnealSchedule, evaluate  # noqa: E402
from direct_opt.evaluate.annealer import Annealer, TinyGPTAnnealer, as_annealer  # noqa: E402
from direct_opt.evaluate.hf_annealer import HFAnnealer, own_loss  # noqa: E402
from direct_opt.extract import ExtractConfig, hf_causal_lm_loss  # noqa: E402
from direct_opt.extract.hf import pad_collate  # noqa: E402
from direct_opt.extract.hf_tiny import tiny_causal_lm  # noqa: E402

V = 64


def token_samples(n, seed, lo=6, hi=12):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        L = int(torch.randint(lo, hi + 1, (1,), generator=g))
        ids = torch.randint(1, V, (L,), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones(L, dtype=torch.long)})
    return out


def trained_optimizer_state(model, data):
    """AdamW state after two steps (non-zero moments), as a stable phase would leave it."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        own_loss(model, pad_collate(data[:4])).backward()
        opt.step()
    return opt.state_dict()


def test_hf_annealer_restores_the_checkpoint_exactly_between_runs():
    model = tiny_causal_lm("llama", vocab=V)
    data, ev = token_samples(12, 0), token_samples(4, 1)
    state = trained_optimizer_state(model, data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ann = HFAnnealer(model, optim_state=state)
    assert isinstance(ann, Annealer) and isinstance(as_annealer(model), HFAnnealer)
    sched = AnnealSchedule(steps=4, batch_size=4, eval_every=2)
    kw = dict(schedule=sched, peak_lr=1e-2, eval_sets={"val": ev}, eval_batch_size=8)
    first = ann.anneal(data, seed=0, **kw)
    ann.anneal(data, seed=1, **kw)  # another run in between must leave no trace
    again = ann.anneal(data, seed=0, **kw)
    assert first.curves == again.curves and first.train_losses == again.train_losses
    assert first.curves["val"][0][1] == pytest.approx(ann.eval_loss(ann.model(), ev, 8), abs=0)  # step 0 = checkpoint
    assert first.final["val"] != first.curves["val"][0][1]  # it did train
    assert first.lrs == pytest.approx([1e-2, 7.5e-3, 5e-3, 2.5e-3])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # caller's model untouched
    fresh = HFAnnealer(model, optim_state=state).anneal(data, seed=0, **kw)
    assert fresh.curves == first.curves
    reset = ann.anneal(data, seed=0, **{**kw, "schedule": AnnealSchedule(steps=4, batch_size=4, eval_every=2,
                                                                          optimizer_state="reset")})
    assert reset.final != first.final  # the restored AdamW moments are really used


def test_trainer_engine_follows_the_same_decay():
    model = tiny_causal_lm("gpt2", vocab=V)
    data = token_samples(8, 2)
    ev = data[:3]  # a training subset: its loss must fall
    ann = HFAnnealer(model, engine="trainer")
    sched = AnnealSchedule(steps=3, batch_size=4, eval_every=1, optimizer_state="reset")
    a = ann.anneal(data, schedule=sched, peak_lr=5e-3, seed=0, eval_sets={"val": ev}, eval_batch_size=8)
    b = ann.anneal(data, schedule=sched, peak_lr=5e-3, seed=0, eval_sets={"val": ev}, eval_batch_size=8)
    assert [s for s, _ in a.curves["val"]] == [0, 1, 2, 3] and a.curves == b.curves
    assert a.final["val"] < a.curves["val"][0][1]


# no optimizer state and a kronecker sketch: faithful LESS's scores on plain gradients
LESS_SGD = {"name": "less", "options": {"features": "sgd"}, "label": "less"}


def test_evaluate_runs_on_a_hugging_face_model(tmp_path):
    model = tiny_causal_lm("llama", vocab=V)
    pool, val, test = token_samples(20, 4), token_samples(5, 5), token_samples(5, 6)
    rep = evaluate(model, hf_causal_lm_loss(), pool, val, test, [LESS_SGD, "direct"], k=5, seeds=[0, 1],
                   schedule=AnnealSchedule(steps=3, batch_size=4, eval_every=3, optimizer_state="reset", peak_lr=5e-3),
                   extract_config=ExtractConfig(k_sketch=32, projector="kronecker", batch_size=8, verbose=False),
                   out_dir=tmp_path / "eval", progress=False, plot=False)
    assert set(rep.labels) == {"less", "direct", "random"} and len(rep.runs) == 6
    assert rep.config["core"]["model_class"] == "LlamaForCausalLM"
    # resume: the same call reuses every run
    again = evaluate(model, hf_causal_lm_loss(), pool, val, test, [LESS_SGD, "direct"], k=5, seeds=[0, 1],
                     schedule=AnnealSchedule(steps=3, batch_size=4, eval_every=3, optimizer_state="reset",
                                             peak_lr=5e-3),
                     extract_config=ExtractConfig(k_sketch=32, projector="kronecker", batch_size=8, verbose=False),
                     out_dir=tmp_path / "eval", progress=False, plot=False)
    assert [r["final"] for r in again.runs] == [r["final"] for r in rep.runs]


def test_tinygpt_annealer_is_one_implementation(state):
    ann = as_annealer(state)
    assert isinstance(ann, TinyGPTAnnealer) and isinstance(ann, Annealer)


def test_cli_evaluate_on_a_hugging_face_checkpoint(tmp_path, capsys):
    from direct_opt.cli import main
    from direct_opt.extract.hf_tiny import word_tokenizer

    words = "the a cat dog sat ran on under mat log red blue".split()
    texts = [" ".join(words[(i * 5 + j) % len(words)] for j in range(3 + i % 6)) + f" {i}" for i in range(30)]
    tok = word_tokenizer(texts, max_vocab=V)
    tiny_causal_lm("gpt2", vocab=V).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    for name, rows in (("pool", texts[:18]), ("val", texts[18:24]), ("test", texts[24:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(rows) + "\n")
    code = main(["evaluate", "--hf-model", str(tmp_path / "model"), "--pool", str(tmp_path / "pool.txt"),
                 "--val-data", str(tmp_path / "val.txt"), "--test-data", str(tmp_path / "test.txt"),
                 "--selectors", "less:features=sgd", "direct", "-k", "4", "--seeds", "0,1", "--anneal-steps", "2",
                 "--k-sketch", "32", "--projector", "kronecker", "--out", str(tmp_path / "eval"), "--no-plot",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "N=18" in out and "| direct |" in out and "nats/token" in out
    assert (tmp_path / "eval" / "results.json").exists()
