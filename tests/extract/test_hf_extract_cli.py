"""`direct-opt extract` on a local Hugging Face model: every input format (index = row / line),
ids and token counts in the stats, TOML config, and the input errors raised before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from direct_opt.cli import main  # noqa: E402
from direct_opt.errors import ExtractionError  # noqa: E402
from direct_opt.extract.hf_tiny import tiny_causal_lm, word_tokenizer  # noqa: E402
from direct_opt.extract.inputs import read_rows  # noqa: E402
from direct_opt.stats import GradientStats  # noqa: E402

WORDS = "the a cat dog sat ran on under mat log red blue big small old new".split()
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 5)) for i in range(10)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    tiny_causal_lm("llama", vocab=64).save_pretrained(d)
    word_tokenizer(TEXTS, max_vocab=64).save_pretrained(d)
    return d


def write_formats(d):
    ds = datasets.Dataset.from_dict({"text": TEXTS, "doc": [f"d{i}" for i in range(len(TEXTS))]})
    paths = {"text": d / "pool.txt", "jsonl": d / "pool.jsonl", "json": d / "pool.json",
             "parquet": d / "pool.parquet", "save_to_disk": d / "pool_ds"}
    paths["text"].write_text("\n".join(TEXTS) + "\n")
    paths["jsonl"].write_text("".join(json.dumps({"text": t, "doc": f"d{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    ds.to_json(str(paths["json"]))
    ds.to_parquet(str(paths["parquet"]))
    ds.save_to_disk(str(paths["save_to_disk"]))
    return paths


def test_every_format_reads_rows_in_order(tmp_path):
    for fmt, path in write_formats(tmp_path).items():
        rows = read_rows(path)
        assert rows.texts == TEXTS and list(rows.ids) == list(range(len(TEXTS))), fmt
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"text": t, "doc": i} for i, t in enumerate(TEXTS)]))
    assert read_rows(arr, id_field="doc").ids.tolist() == list(range(len(TEXTS)))


@pytest.mark.parametrize("fmt", ["text", "jsonl", "parquet", "save_to_disk"])
def test_cli_extract_each_format(fmt, model_dir, tmp_path, capsys):
    paths = write_formats(tmp_path)
    val = tmp_path / "val.txt"
    val.write_text("the cat sat\nthe dog ran on the log\n")
    id_args = [] if fmt == "text" else ["--id-field", "doc"]
    code = main(["extract", "--model", str(model_dir), "--train", str(paths[fmt]), "--val", str(val),
                 "--out", str(tmp_path / "run"), "--k-sketch", "32", "--projector", "kronecker", "--batch-size", "4",
                 "--max-length", "6", "--quiet", *id_args])
    out = capsys.readouterr().out
    assert code == 0, out
    st = GradientStats.load(tmp_path / "run" / "stats")
    ids = list(range(10)) if fmt == "text" else [f"d{i}" for i in range(10)]
    assert st.sample_ids.tolist() == ids
    lengths = [1 + len(t.split()) for t in TEXTS]  # <s> + words
    assert st.token_counts.tolist() == [min(n, 6) for n in lengths]
    assert f"truncated samples (pool/val)={sum(n > 6 for n in lengths)}/1" in out


def test_toml_config_and_command_line_override(model_dir, tmp_path, capsys):
    paths = write_formats(tmp_path)
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'model = "{model_dir}"\ntrain = "{paths["jsonl"]}"\nval = "{paths["text"]}"\n'
                   f'out_dir = "{tmp_path / "run"}"\nk_sketch = 48\nprojector = "sjlt"\nbatch_size = 5\n'
                   'projector_options = {s = 2}\nparam_filter = ["model.layers.1.*"]\nverbose = false\n'
                   'reduction = "token-weighted"\nlog_level = "info"\n')
    assert main(["extract", "--config", str(cfg), "--k-sketch", "40"]) == 0
    st = GradientStats.load(tmp_path / "run" / "stats")
    ext = st.config["extract"]
    assert ext["k_sketch"] == 40 and ext["projector"] == "sjlt" and ext["projector_options"] == {"s": 2}
    assert all(n.startswith("model.layers.1.") for n in st.config["model"]["selected"])
    cfg.write_text(cfg.read_text() + "kk_sketch = 3\n")
    assert main(["extract", "--config", str(cfg)]) == 2
    assert "unknown key(s) ['kk_sketch']" in capsys.readouterr().err


def _bad_inputs(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("the cat\n")
    cases = {
        "blank line": ("a.txt", "the cat\n\nthe dog\n", "a.txt:2: blank line"),
        "number line": ("b.jsonl", '{"text": "x"}\n42\n', r"b.jsonl:2: expected an object .* got int 42"),
        "malformed": ("c.jsonl", '{"text": "x"}\n{"text": \n', r"c.jsonl:2: not valid JSON"),
        "empty pool": ("d.txt", "", r"d.txt holds no samples"),
        "no field": ("e.jsonl", '{"body": "x"}\n', r"no field 'text'"),
    }
    for name, (fname, text, msg) in cases.items():
        (tmp_path / fname).write_text(text)
        yield name, ["--train", str(tmp_path / fname), "--val", str(good)], msg
    (tmp_path / "f.txt").write_bytes(b"ok\n\xff\xfe bad\n")
    yield "non-utf8", ["--train", str(tmp_path / "f.txt"), "--val", str(good)], r"f.txt: not UTF-8 text .*line 2"


def test_input_errors_name_the_problem_before_loading(model_dir, tmp_path, capsys):
    for name, files, msg in _bad_inputs(tmp_path):
        code = main(["extract", "--model", str(model_dir), *files, "--out", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 1 and pytest.importorskip("re").search(msg, err), (name, err)
        assert not (tmp_path / name).exists()  # nothing written
    good = str(tmp_path / "good.txt")
    base = ["extract", "--train", good, "--val", good, "--out", str(tmp_path / "o")]
    for extra, msg in ((["--model", "/nonexistent/model"], "--model /nonexistent/model: no such model directory"),
                       (["--model", str(model_dir), "--max-length", "0"], "max-length=0 must be a positive"),
                       (["--model", str(model_dir), "--device", "cuda"], "CUDA is not available"),
                       (["--model", str(model_dir), "--k-sketch", "-1"], "k-sketch=-1"),
                       (["--train", good], "missing --model")):
        import torch

        if "cuda" in extra and torch.cuda.is_available():
            continue
        assert main([*base, *extra]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(ExtractionError, match="repeats"):
        p = tmp_path / "dup.jsonl"
        p.write_text('{"text": "a", "id": 1}\n{"text": "b", "id": 1}\n')
        read_rows(p, id_field="id")


def test_truncation_refuse(model_dir, tmp_path, capsys):
    paths = write_formats(tmp_path)
    code = main(["extract", "--model", str(model_dir), "--train", str(paths["text"]), "--val", str(paths["text"]),
                 "--out", str(tmp_path / "run"), "--max-length", "4", "--truncation", "refuse", "--quiet"])
    assert code == 1 and "longer than --max-length 4" in capsys.readouterr().err
    assert not np.any([p.name == "stats" for p in tmp_path.glob("run/*")])


def test_select_write_back_every_format(model_dir, tmp_path, capsys):
    paths = write_formats(tmp_path)
    assert main(["extract", "--model", str(model_dir), "--train", str(paths["jsonl"]), "--val", str(paths["text"]),
                 "--out", str(tmp_path / "run"), "--k-sketch", "32", "--projector", "kronecker", "--quiet",
                 "--id-field", "doc"]) == 0
    stats_dir = str(tmp_path / "run" / "stats")
    st = GradientStats.load(stats_dir)
    for out in ("chosen.jsonl", "chosen.parquet", "chosen_ds"):
        target = tmp_path / out
        # direct with the default budget: feasible on a real extraction
        assert main(["select", "--stats", stats_dir, "-k", "4", "--selector", "direct", "--write-back", str(target),
                     "--data", str(paths["jsonl"]), "--id-field", "doc", "--out", str(tmp_path / "sel.json")]) == 0, \
            capsys.readouterr().err
        index = json.loads((tmp_path / f"{out}.index.json").read_text())
        rows, _ = __import__("direct_opt.extract.inputs", fromlist=["read_records"]).read_records(target)
        assert [r["doc"] for r in rows] == index["sample_ids"] == st.sample_ids[index["indices"]].tolist()
        assert [r["text"] for r in rows] == [TEXTS[int(d[1:])] for d in index["sample_ids"]]
        assert index["tokens"] == int(st.token_counts[index["indices"]].sum())
    # an existing output is never clobbered
    assert main(["select", "--stats", stats_dir, "-k", "4", "--write-back", str(tmp_path / "chosen.jsonl"),
                 "--data", str(paths["jsonl"]), "--id-field", "doc"]) == 2  # a bad argument: exit 2
    assert "exists" in capsys.readouterr().err
