"""The documentation site builds with warnings as errors, and its helpers work."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="the docs build needs the dev extra: pip install -e '.[dev]'")
pytest.importorskip("mkdocstrings", reason="the docs build needs the dev extra: pip install -e '.[dev]'")
pytest.importorskip("mkdocs_jupyter", reason="the docs build needs the dev extra: pip install -e '.[dev]'")


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert "WARNING" not in log, log[-6000:]
    for page in ("index.html", "getting-started.html", "concepts.html", "benchmarks.html",
                 "guides/choosing-a-backend.html", "guides/writing-constraints.html",
                 "guides/own-model.html", "guides/scaling-up.html", "api/core.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"
    core = (site / "api" / "core.html").read_text(encoding="utf-8")
    # the API reference is generated from the docstrings, not written by hand
    assert "SelectionProblem" in core and "from_stats" in core and "tau_rel" in core
    plotting = (site / "api" / "plotting.html").read_text(encoding="utf-8")
    assert "plot_convergence" in plotting and "plot_overlap" in plotting
    concepts = (site / "concepts.html").read_text(encoding="utf-8")
    assert "img/flat_stiff.png" in concepts and (site / "img" / "flat_stiff.png").is_file()
    assert not (site / "hooks").exists() and not (site / "img" / "make_figures.py").exists()
    for name in ("01_compare_backends", "02_custom_constraints", "03_end_to_end"):  # rendered with their figures
        page = (site / "notebooks" / f"{name}.html").read_text(encoding="utf-8")
        assert "data:image/png;base64" in page, name


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_nav_hook_drops_only_missing_pages(tmp_path):
    hook = _load(ROOT / "docs" / "hooks" / "nav.py", "_docs_nav_hook")
    (tmp_path / "a.md").write_text("# a")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "b.md").write_text("# b")
    nav = [{"A": "a.md"}, {"Missing": "nope.md"},
           {"Guides": [{"B": "g/b.md"}, {"Gone": "g/gone.md"}]},
           {"Empty": [{"X": "x.md"}]}, {"Site": "https://example.org"}]
    cfg = hook.on_config({"docs_dir": str(tmp_path), "nav": nav})
    assert cfg["nav"] == [{"A": "a.md"}, {"Guides": [{"B": "g/b.md"}]}, {"Site": "https://example.org"}]


def test_concept_figure_script_writes_png(tmp_path):
    mod = _load(ROOT / "docs" / "img" / "make_figures.py", "_docs_make_figures")
    paths = mod.main(tmp_path)
    assert [p.name for p in paths] == ["flat_stiff.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 10_000
    assert (ROOT / "docs" / "img" / "flat_stiff.png").is_file(), "run python docs/img/make_figures.py"
