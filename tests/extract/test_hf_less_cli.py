"""`direct-opt extract --optimizer-state FILE --val-groups FIELD`: the features of faithful LESS from
the command line. A checkpoint trained two AdamW steps with transformers Trainer's parameter groups
(decay, then no-decay) gives the Adam directions of the Python API on the same moments; every bad
input exits 2 with a message naming it, and writes nothing."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from direct_opt.cli import main  # noqa: E402
from direct_opt.extract import ExtractConfig, extract_stats  # noqa: E402
from direct_opt.extract.hf import hf_causal_lm_loss, load_causal_lm, tokenize_texts  # noqa: E402
from direct_opt.extract.hf_tiny import tiny_causal_lm, word_tokenizer  # noqa: E402
from direct_opt.stats import GradientStats  # noqa: E402

WORDS = "the a cat dog sat ran on under mat log red blue big small old new".split()
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 5)) for i in range(12)]
TASKS = ["qa", "code", "qa", "math"]
COMMON = ["--k-sketch", "16", "--projector", "sjlt", "--batch-size", "4", "--max-length", "8", "--quiet"]


def train_two_steps(model, tok, groups):
    """Two AdamW steps on the pool texts with the given parameter groups; the optimizer."""
    opt = torch.optim.AdamW(groups, lr=1e-2)
    batch = tok(TEXTS[:4], return_tensors="pt", padding=True)
    loss_fn = hf_causal_lm_loss()
    for _ in range(2):
        opt.zero_grad()
        loss_fn(model, dict(batch)).mean().backward()
        opt.step()
    return opt


def trainer_groups(model):
    """Parameter groups as transformers Trainer.create_optimizer builds them: weight decay on all
    but biases and norms, then the rest."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = [("bias" in n or "norm" in n) for n, _ in named]
    return [{"params": [p for (_, p), nd in zip(named, no_decay) if not nd], "weight_decay": 0.1},
            {"params": [p for (_, p), nd in zip(named, no_decay) if nd], "weight_decay": 0.0}]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint directory (weights, tokenizer, Trainer-layout optimizer.pt), pool/val files, and
    the same moments as a one-group optimizer on model.parameters() (model order)."""
    d = tmp_path_factory.mktemp("less")
    tok = word_tokenizer(TEXTS, max_vocab=64)
    model = tiny_causal_lm("llama", vocab=64).train()
    opt = train_two_steps(model, tok, trainer_groups(model))
    model.eval().save_pretrained(d / "ckpt")
    tok.save_pretrained(d / "ckpt")
    state = opt.state_dict()
    torch.save(state, d / "ckpt" / "optimizer.pt")
    assert [len(g["params"]) for g in state["param_groups"]] == [16, 5]  # decay first: not the model's order
    by_param = {id(p): i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    model_order = {"state": {j: state["state"][by_param[id(p)]] for j, p in enumerate(model.parameters())},
                   "param_groups": [{**state["param_groups"][0], "params": list(range(len(by_param)))}]}
    (d / "pool.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:8]))
    (d / "val.jsonl").write_text("".join(json.dumps({"text": t, "task": g}) + "\n"
                                         for t, g in zip(TEXTS[8:], TASKS)))
    (d / "val.txt").write_text("\n".join(TEXTS[8:]) + "\n")
    return d, model_order


def extract(d, out, *extra, val="val.jsonl"):
    return main(["extract", "--model", str(d / "ckpt"), "--train", str(d / "pool.jsonl"), "--val", str(d / val),
                 "--out", str(out), *COMMON, *extra])


def test_cli_gives_the_adam_features_and_groups_of_the_python_api(ckpt, tmp_path, capsys):
    d, model_order = ckpt
    assert extract(d, tmp_path / "run", "--optimizer-state", str(d / "ckpt" / "optimizer.pt"),
                   "--val-groups", "task") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "adam_coords stored" in out and "step 2" in out and "val_groups stored (3 groups from field 'task')" in out
    cli = GradientStats.load(tmp_path / "run" / "stats")
    assert cli.val_groups.tolist() == TASKS

    model, tok = load_causal_lm(str(d / "ckpt"))
    pool, val = (tokenize_texts(tok, texts, 8).samples for texts in (TEXTS[:8], TEXTS[8:]))
    cfg = ExtractConfig(k_sketch=16, projector="sjlt", batch_size=4, verbose=False, optimizer_state=model_order)
    api = extract_stats(model, hf_causal_lm_loss(), pool, val, cfg, val_groups=TASKS)
    assert cli.adam_coords.shape == (16, 8) and np.abs(cli.adam_coords).max() > 0
    np.testing.assert_array_equal(cli.adam_coords, api.adam_coords)  # Trainer layout = model order, same moments
    np.testing.assert_array_equal(cli.val_coords, api.val_coords)

    assert main(["select", "--stats", str(tmp_path / "run" / "stats"), "-k", "3", "--selector", "less"]) == 0
    dataclasses.replace(cli, adam_coords=None).save(tmp_path / "plain")  # stats extracted without the state
    assert main(["select", "--stats", str(tmp_path / "plain"), "-k", "3", "--selector", "less"]) != 0
    assert "--optimizer-state" in capsys.readouterr().err  # the message names the switch


def test_toml_keys_and_no_less_features(ckpt, tmp_path, capsys):
    d, _ = ckpt
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'optimizer_state = "{tmp_path / "missing.pt"}"\nval_groups = "task"\n')
    assert extract(d, tmp_path / "a", "--config", str(cfg)) == 2
    assert "--optimizer-state" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert extract(d, tmp_path / "b", val="val.txt") == 0  # without the flags: said so, nothing LESS-specific stored
    assert "no adam_coords (pass --optimizer-state" in capsys.readouterr().out
    st = GradientStats.load(tmp_path / "b" / "stats")
    assert st.adam_coords is None and st.val_groups is None


def _bad_state_files(d, tmp):
    import datetime  # a pickled object that is no tensor, number or container: weights_only refuses it

    torch.save({"state": {}, "param_groups": [], "saved": datetime.date(2024, 1, 1)}, tmp / "pickle.pt")
    (tmp / "junk.pt").write_bytes(b"not a torch file")
    lin = torch.nn.Linear(3, 2)
    sgd = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    lin(torch.ones(1, 3)).sum().backward()
    sgd.step()
    torch.save(sgd.state_dict(), tmp / "sgd.pt")
    return {
        "missing": ([str(tmp / "nope.pt")], "nope.pt: no such file"),
        "pickle": ([str(tmp / "pickle.pt")], "(datetime.date) that torch.load(weights_only=True) refuses"),
        "junk": ([str(tmp / "junk.pt")], "junk.pt: not a torch.save file"),
        "sgd": ([str(tmp / "sgd.pt")], "not an Adam/AdamW state"),
        "projector": ([str(d / "ckpt" / "optimizer.pt"), "--projector", "kronecker"], "projector 'kronecker' never forms"),
    }


@pytest.fixture
def no_model_loading(monkeypatch):
    """Within the block, loading a model fails the test (the errors come before it)."""
    import direct_opt.extract.hf as hf

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the option was checked")

    with monkeypatch.context() as m:
        m.setattr(hf, "load_causal_lm", no_loading)
        yield


def test_bad_optimizer_states_exit_2_before_loading_and_write_nothing(ckpt, tmp_path, capsys, no_model_loading):
    d, _ = ckpt
    for name, (args, msg) in _bad_state_files(d, tmp_path).items():
        code = extract(d, tmp_path / name, "--optimizer-state", *args)
        err = capsys.readouterr().err
        assert code == 2 and msg in err and "--optimizer-state" in err, (name, err)
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / name).exists(), name


def test_state_of_another_model_exits_2_before_any_output(ckpt, tmp_path, capsys):
    d, _ = ckpt
    other = tiny_causal_lm("llama", vocab=64, layers=1)  # found after loading the model, before any output
    opt = torch.optim.AdamW(other.parameters())
    for p in other.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "other.pt")
    assert extract(d, tmp_path / "mismatch", "--optimizer-state", str(tmp_path / "other.pt")) == 2
    assert "optimizer_state covers 12 parameters but the model has 21" in capsys.readouterr().err
    assert not (tmp_path / "mismatch").exists()


def test_bad_val_groups_exit_2_naming_the_fields(ckpt, tmp_path, capsys, no_model_loading):
    d, _ = ckpt
    rows = [{"text": t, "task": g} for t, g in zip(TEXTS[8:], TASKS)]
    cases = {
        "absent.jsonl": (rows, "topic", "has no field 'topic'; its fields are ['task', 'text']"),
        "null.jsonl": (rows[:2] + [{"text": "the cat", "task": None}], "task", "null.jsonl:3 has group label None"),
        "empty.jsonl": ([{"text": "the cat", "task": ""}], "task", "group label ''"),
        "mixed.jsonl": ([{"text": "the cat", "task": 1}, {"text": "a dog", "task": "b"}], "task", "mixes integer"),
    }
    for fname, (records, field, msg) in cases.items():
        (d / fname).write_text("".join(json.dumps(r) + "\n" for r in records))
        assert extract(d, tmp_path / fname, "--val-groups", field, val=fname) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (fname, err)
        assert not (tmp_path / fname).exists()
    assert extract(d, tmp_path / "txt", "--val-groups", "task", val="val.txt") == 2
    assert "text file (one sample per line), which has no fields; write the validation set as JSONL" \
        in capsys.readouterr().err
    assert not (tmp_path / "txt").exists()


def test_peft_adapter_with_the_adapters_optimizer_state(tmp_path, capsys):
    pytest.importorskip("peft")
    tok = word_tokenizer(TEXTS, max_vocab=64)
    tiny_causal_lm("llama", vocab=64, seed=0).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    lora = tiny_causal_lm("llama", vocab=64, seed=0, lora=True).train()
    opt = train_two_steps(lora, tok, trainer_groups(lora))  # Trainer on a PeftModel: all adapters decay
    assert [len(g["params"]) for g in opt.param_groups] == [8, 0]
    lora.save_pretrained(tmp_path / "adapter")
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    (tmp_path / "pool.txt").write_text("\n".join(TEXTS[:6]) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(TEXTS[8:]) + "\n")
    args = ["extract", "--model", str(tmp_path / "base"), "--adapter", str(tmp_path / "adapter"), "--train",
            str(tmp_path / "pool.txt"), "--val", str(tmp_path / "val.txt"), *COMMON]
    assert main([*args, "--out", str(tmp_path / "run"), "--optimizer-state", str(tmp_path / "optimizer.pt")]) == 0, \
        capsys.readouterr().err
    st = GradientStats.load(tmp_path / "run" / "stats")
    assert st.adam_coords.shape == (16, 6) and all("lora_" in n for n in st.config["model"]["selected"])
    # the adapter's state does not cover the base weights: --params naming them is refused, nothing written
    code = main([*args, "--out", str(tmp_path / "all"), "--optimizer-state", str(tmp_path / "optimizer.pt"),
                 "--params", "*embed_tokens*"])
    assert code == 2 and "no moments for parameter" in capsys.readouterr().err
    assert not (tmp_path / "all").exists()


def test_check_optimizer_state_finds_the_order_or_names_the_mismatch():
    from direct_opt.errors import InvalidParameterError
    from direct_opt.extract.adam import check_optimizer_state

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    names = [n for n, _ in model.named_parameters()]
    trainer = ["0.weight", "2.weight", "0.bias", "1.weight", "1.bias", "2.bias"]
    for groups, order in ((model.parameters(), names), (trainer_groups_by_module(model), trainer),
                          (reversed(list(model.named_parameters())), names[::-1])):  # the state records the names
        opt = torch.optim.AdamW(groups)
        model(torch.ones(2, 3)).sum().backward()
        opt.step()
        index = check_optimizer_state(opt.state_dict(), model, names)
        assert [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])] == order
    bad = opt.state_dict()
    group = {k: v for k, v in bad["param_groups"][0].items() if k != "param_names"}
    bad["param_groups"] = [group]  # the reversed order without its names: no order tried fits the shapes
    with pytest.raises(InvalidParameterError, match="shapes match the parameters in no order tried"):
        check_optimizer_state(bad, model, names)


def trainer_groups_by_module(model):
    """Trainer's groups for a plain torch model: decay on all but biases and LayerNorm parameters."""
    norm = {f"{m}.{n}" for m, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)
            for n, _ in mod.named_parameters()}
    named = list(model.named_parameters())
    nd = [("bias" in n or n in norm) for n, _ in named]
    return [{"params": [p for (_, p), x in zip(named, nd) if not x], "weight_decay": 0.1},
            {"params": [p for (_, p), x in zip(named, nd) if x], "weight_decay": 0.0}]
