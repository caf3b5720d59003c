import argparse
import importlib.util
import json
import sys

import pytest
import torch

from direct_opt.extract import ExtractConfig, extract_stats, hf_causal_lm_loss
from direct_opt.extract import cli
from direct_opt.extract.hf import load_causal_lm

HAS_TF = importlib.util.find_spec("transformers") is not None


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        return self.head(torch.tanh(self.emb(input_ids)))


def test_hf_loss_matches_manual_and_masks_padding():
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.randint(0, 11, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0
    loss = hf_causal_lm_loss()(model, {"input_ids": ids, "attention_mask": mask})
    assert loss.shape == (3,)
    logits = model(ids)
    ref = torch.nn.functional.cross_entropy(logits[1, :3], ids[1, 1:4])
    assert loss[1].item() == pytest.approx(ref.item(), rel=1e-5)
    # one sample's loss does not depend on the others (per-sample contract)
    alone = hf_causal_lm_loss()(model, {"input_ids": ids[1:2], "attention_mask": mask[1:2]})
    assert alone[0].item() == pytest.approx(loss[1].item(), rel=1e-5)


@pytest.mark.parametrize("projector", ["gaussian", "kronecker"])
def test_hf_loss_through_extract(projector):
    torch.manual_seed(0)
    model = TinyLM()
    samples = [{"input_ids": torch.randint(0, 11, (5,)), "attention_mask": torch.ones(5, dtype=torch.long)}
               for _ in range(10)]
    st = extract_stats(model, hf_causal_lm_loss(), samples[:6], samples[6:],
                       ExtractConfig(k_sketch=8, batch_size=4, projector=projector, verbose=False))
    assert st.n == 6
    if projector == "kronecker":
        # the embedding is a Kronecker block too (row lookup); nothing falls back
        assert st.config["projector"]["fallback_params"] == []
        assert [l["weight"] for l in st.config["projector"]["layers"]] == ["emb.weight", "head.weight"]


def test_missing_transformers_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails as if absent
    with pytest.raises(ImportError, match=r"pip install direct_opt\[hf\]"):
        load_causal_lm("gpt2")


def test_cli_parser_and_run_without_transformers(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="direct-opt")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    train = tmp_path / "pool.jsonl"
    train.write_text("\n".join(json.dumps({"text": f"sample {i}"}) for i in range(3)) + "\n")
    val = tmp_path / "val.txt"
    val.write_text("a line\nanother line\n")
    args = parser.parse_args(["extract", "--model", "gpt2", "--train", str(train), "--val", str(val),
                              "--out", str(tmp_path / "run"), "--projector", "sjlt", "--k-sketch", "64",
                              "--params", "transformer.h.*"])
    assert args.func is cli.run and args.k_sketch == 64 and args.projector == "sjlt"
    assert cli.resolve_options(args)["param_filter"] == ["transformer.h.*"]
    assert cli.read_texts(train) == ["sample 0", "sample 1", "sample 2"]
    assert cli.read_texts(val) == ["a line", "another line"]
    if not HAS_TF:
        assert cli.run(args) == 2
        assert "pip install direct_opt[hf]" in capsys.readouterr().err
