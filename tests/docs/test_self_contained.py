"""The docs a user has are self-contained: nothing cites a document outside the repository.

Scanned: README.md, docs/, notebooks/, every module of the package (docstrings, CLI help,
messages) and mkdocs.yml. The mathematics such citations used to point to is in docs/math.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ["README.md", "mkdocs.yml", *(str(p.relative_to(REPO)) for pattern in
           ("docs/**/*.md", "notebooks/*.ipynb", "direct_opt/**/*.py") for p in sorted(REPO.glob(pattern)))]
# a design document that users do not have, or a bare section sign pointing into one
OUTSIDE = re.compile(r"\bDESIGN\b|DESIGN\.md|§")


@pytest.mark.parametrize("path", SCANNED)
def test_no_reference_to_documents_users_do_not_have(path):
    text = (REPO / path).read_text(encoding="utf-8")
    hits = [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not hits, f"{path} cites a document outside the repository ({hits}); put what it needs in docs/"


def test_math_page_holds_what_the_citations_pointed_to():
    math = (REPO / "docs/math.md").read_text(encoding="utf-8")
    for heading in ("## Gradient statistics", "## What the program does not target", "## The selection program",
                    "## Certificates"):
        assert heading in math
