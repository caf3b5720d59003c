"""MkDocs hook: drop nav entries whose page does not exist (yet), so the strict build keeps working
while pages are being written. Every dropped entry is logged at INFO level."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.nav")


def _keep(item: Any, docs: Path) -> Any:
    if isinstance(item, str):
        if item.endswith(".ipynb"):  # notebooks live in ../notebooks (docs/hooks/notebooks.py adds them)
            return item if (docs.parent / item).is_file() else None
        return item if item.startswith(("http://", "https://")) or (docs / item).is_file() else None
    if isinstance(item, dict):
        out = {}
        for title, value in item.items():
            if isinstance(value, list):
                kept = [k for k in (_keep(v, docs) for v in value) if k is not None]
                if kept:
                    out[title] = kept
            else:
                kept = _keep(value, docs)
                if kept is None:
                    log.info("nav: %r -> %s does not exist yet; left out of the nav", title, value)
                else:
                    out[title] = kept
        return out or None
    return item


def on_config(config: Any, **kwargs: Any) -> Any:
    docs = Path(config["docs_dir"])
    if config.get("nav"):
        config["nav"] = [k for k in (_keep(i, docs) for i in config["nav"]) if k is not None]
    return config
