"""examples/hf_end_to_end.py runs end to end (tiny sizes): extract -> select -> write back -> anneal -> evaluate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hf_end_to_end.py"


def test_hf_end_to_end_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("hf_end_to_end", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(tmp_path, [0, 1])
    out = capsys.readouterr().out
    stats, report = res["stats"], res["report"]
    assert stats.n == 96 and stats.sample_ids.tolist() == list(range(96)) and stats.token_counts.sum() > 0
    assert {len(s.indices) for s in res["picks"].values()} == {16}
    rows = [json.loads(line) for line in (tmp_path / "direct.jsonl").read_text().splitlines()]
    index = json.loads((tmp_path / "direct.jsonl.index.json").read_text())
    assert len(rows) == 16 and index["indices"] == res["picks"]["direct"].indices.tolist()
    assert set(report.labels) == {"less", "direct", "random"} and len(report.runs) == 6
    assert "losses in nats/token" in out and "| direct |" in out
    assert (tmp_path / "eval" / "results.json").exists()
