"""Every ```python block in README.md and docs/**/*.md runs (see tests/docs/snippets.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .snippets import ROOT, Snippet, cli_commands, collect, doc_files

HERE = Path(__file__).resolve().parent
MAX_SKIPPED_FRACTION = 0.25  # no-test blocks must stay rare (one in four at most)


def _all() -> list[Snippet]:
    return [s for f in doc_files() for s in collect(f)]


def test_collect_finds_blocks_and_markers(tmp_path):
    md = tmp_path / "page.md"
    md.write_text("text\n```python\nx = 1\n```\n<!-- no-test: needs a GPU -->\n```python\nimport cuda\n```\n"
                  "```bash\nls\n```\n  ```python\n  y = x + 1\n  ```\n")
    got = collect(md, root=tmp_path)
    assert [(s.line, s.code, s.skip) for s in got] == [(2, "x = 1", None), (6, "import cuda", "needs a GPU"),
                                                       (12, "y = x + 1", None)]
    for bad in ("<!-- no-test: -->\n```python\nx\n```\n", "<!-- no-test: why -->\n\ntext\n```python\nx\n```\n",
                "<!-- no-test: why -->\n```bash\nls\n```\n", "x\n<!-- no-test: why -->\n"):
        md.write_text(bad)
        with pytest.raises(ValueError, match="no-test marker"):
            collect(md, root=tmp_path)


def test_docs_have_snippets_and_few_skips():
    snippets = _all()
    files = {s.path for s in snippets}
    skipped = [s for s in snippets if s.skip]
    print(f"{len(snippets)} python blocks in {len(files)} files; {len(skipped)} marked no-test:")
    for s in skipped:
        print(f"  {s.path}:{s.line}: {s.skip}")
    for page in ("docs/getting-started.md", "docs/guides/writing-constraints.md", "docs/guides/own-model.md"):
        assert any(s.path == page and not s.skip for s in snippets), f"{page} has no runnable python block"
    assert len(skipped) <= MAX_SKIPPED_FRACTION * len(snippets), "too many no-test blocks; make them runnable"


def test_snippets_run(tmp_path):
    """All runnable blocks, one subprocess (fresh registries), each file in its own namespace."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(HERE / "snippets.py"), *map(str, doc_files())], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"path"')]
    assert proc.returncode == 0, proc.stderr[-4000:]
    expected = [s for s in _all()]
    assert [(r["path"], r["line"]) for r in records] == [(s.path, s.line) for s in expected]
    failed = [r for r in records if r["ok"] is False]
    ran = [r for r in records if r["ok"]]
    slow = sorted(ran, key=lambda r: -r["time_s"])[:3]
    print(f"ran {len(ran)} blocks, skipped {sum(1 for r in records if r['skip'])}; slowest: "
          + ", ".join(f"{r['path']}:{r['line']} {r['time_s']:.1f}s" for r in slow))
    assert not failed, "\n\n".join(f"{r['path']}:{r['line']}\n{r['error']}" for r in failed)
    assert len(ran) >= 10


def test_cli_commands_in_docs_parse():
    """Every ``direct-opt ...`` line in a bash block names a real subcommand with real flags."""
    from direct_opt.cli import build_parser

    cmds = [c for f in doc_files() for c in cli_commands(f)]
    assert len(cmds) >= 5 and {"demo", "solve", "compare"} <= {argv[0] for _, _, argv in cmds if argv}
    parser = build_parser()
    bad = []
    for path, line, argv in cmds:
        try:
            parser.parse_args(argv)
        except BaseException as exc:  # argparse exits; our parser may raise UsageError
            bad.append(f"{path}:{line}: direct-opt {' '.join(argv)}  ->  {type(exc).__name__}: {exc}")
    assert not bad, "\n".join(bad)


def test_cli_commands_extraction(tmp_path):
    md = tmp_path / "p.md"
    md.write_text("```bash\npip install x && direct-opt solve --stats D -k 3  # comment\n"
                  "torchrun --nproc-per-node 2 --no-python direct-opt extract --model m \\\n    --out o\n```\n"
                  "```python\n# direct-opt demo (not a shell block)\n```\n")
    assert cli_commands(md, root=tmp_path) == [("p.md", 2, ["solve", "--stats", "D", "-k", "3"]),
                                               ("p.md", 3, ["extract", "--model", "m", "--out", "o"])]
    md.write_text("```bash\ndirect-opt solve 'unclosed\n```\n")
    with pytest.raises(ValueError, match="p.md:2: cannot parse"):
        cli_commands(md, root=tmp_path)
