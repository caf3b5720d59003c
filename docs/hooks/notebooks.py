"""MkDocs hook: the notebooks in ``notebooks/`` become site pages under ``notebooks/``.

They are stored with the outputs of a complete run (``python notebooks/execute.py``), and the
mkdocs-jupyter plugin renders those outputs (figures included) without executing anything at
build time. The hook runs before the plugin so that the plugin sees the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File(f"notebooks/{nb.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
