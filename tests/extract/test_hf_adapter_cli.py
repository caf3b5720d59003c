"""`--adapter`: a PEFT/LoRA adapter directory on top of a base model, on `direct-opt extract` and
`direct-opt evaluate --hf-model`; only the adapter weights are differentiated; bad adapter
directories are refused before any model is loaded."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from direct_opt.cli import main  # noqa: E402
from direct_opt.extract.hf_tiny import tiny_causal_lm, word_tokenizer  # noqa: E402
from direct_opt.stats import GradientStats  # noqa: E402

WORDS = "the a cat dog sat ran on under mat log red blue big small old new".split()
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 5)) for i in range(12)]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A base model directory, a LoRA adapter directory for it (both save_pretrained), text files,
    and the adapter's trainable parameter count."""
    d = tmp_path_factory.mktemp("lora")
    tiny_causal_lm("llama", vocab=64, seed=0).save_pretrained(d / "base")
    word_tokenizer(TEXTS, max_vocab=64).save_pretrained(d / "base")
    lora = tiny_causal_lm("llama", vocab=64, seed=0, lora=True)  # same base weights, LoRA on q/v
    lora.save_pretrained(d / "adapter")
    n_trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    for name, rows in (("pool", TEXTS[:8]), ("val", TEXTS[8:10]), ("test", TEXTS[10:])):
        (d / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return d, n_trainable


def extract(d, out, *extra):
    return main(["extract", "--model", str(d / "base"), "--train", str(d / "pool.txt"), "--val", str(d / "val.txt"),
                 "--out", str(out), "--k-sketch", "32", "--batch-size", "4", "--max-length", "8", "--quiet", *extra])


@pytest.mark.parametrize("projector", ["kronecker", "sjlt"])
def test_cli_extract_differentiates_only_the_adapter(dirs, tmp_path, projector, capsys):
    d, n_trainable = dirs
    assert extract(d, tmp_path / "run", "--adapter", str(d / "adapter"), "--projector", projector) == 0, \
        capsys.readouterr().err
    st = GradientStats.load(tmp_path / "run" / "stats")
    model = st.config["model"]
    assert model["n_selected"] == n_trainable < 5000  # the adapters, not the ~30 k frozen base weights
    assert model["selected"] and all("lora_" in name for name in model["selected"])
    assert st.n == 8 and st.sample_ids.tolist() == list(range(8))


def test_bad_adapter_directories_are_refused_before_loading(dirs, tmp_path, capsys, monkeypatch):
    d, _ = dirs
    assert extract(d, tmp_path / "a", "--adapter", str(tmp_path / "missing")) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert extract(d, tmp_path / "b", "--adapter", str(tmp_path / "empty")) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    (tmp_path / "run.toml").write_text(f'adapter = "{tmp_path / "empty"}"\n')  # the TOML key, same check
    assert extract(d, tmp_path / "b", "--config", str(tmp_path / "run.toml")) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    code = main(["extract", "--model", str(d / "adapter"), "--train", str(d / "pool.txt"), "--val",
                 str(d / "val.txt"), "--out", str(tmp_path / "c")])
    assert code == 2 and "--adapter" in capsys.readouterr().err  # an adapter passed as --model: say what to do
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    assert extract(d, tmp_path / "d", "--adapter", str(d / "adapter")) == 1  # a missing package, not a bad argument
    assert "pip install peft" in capsys.readouterr().err
    assert not any((tmp_path / x).exists() for x in "abcd")  # nothing written


def test_cli_evaluate_anneals_the_adapter(dirs, tmp_path, capsys):
    d, _ = dirs
    common = ["evaluate", "--hf-model", str(d / "base"), "--pool", str(d / "pool.txt"), "--val-data",
              str(d / "val.txt"), "--test-data", str(d / "test.txt"), "--no-plot", "--no-progress"]
    assert main([*common, "--adapter", str(tmp_path / "missing")]) == 2  # a bad argument (exit 2)
    assert "no such directory" in capsys.readouterr().err
    assert main(["evaluate", "--adapter", str(d / "adapter")]) == 2
    assert "pass --hf-model too" in capsys.readouterr().err
    code = main([*common, "--adapter", str(d / "adapter"), "--selectors", "less:features=sgd", "-k", "3", "--seeds", "0",
                 "--anneal-steps", "2", "--k-sketch", "16", "--projector", "kronecker", "--max-length", "8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| less[features=sgd] |" in out and "N=8" in out
